"""Pretrained weights imported by the real binary: torchvision's ResNets and AlexNet.

Without PyTorch, hand-written torchvision ResNet-18 state dicts (saved with
safetensors' numpy API) check the names, the layouts and the errors. With
torch and torchvision installed (optional test dependencies, see README.md,
"Pretrained weights"), torchvision models with random weights are imported
from `.pth` and `.safetensors` files and dl's eval-mode outputs must equal
torchvision's within 1e-4.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_binary
from dl.data import Source
from dl.data.preprocessing import Preprocessing
from dl.errors import ConfigError
from dl.tools.import_weights import import_weights
from dl.train import Checkpoints, build
from dl.train.evaluation import evaluate, read_run_config

TOLERANCE = 1e-4


def resnet18_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision's resnet18 state dict, key -> shape, written out from its layout."""

    def bn(prefix, n):
        keys = ("weight", "bias", "running_mean", "running_var")
        return {**{f"{prefix}.{k}": (n,) for k in keys}, f"{prefix}.num_batches_tracked": ()}

    out = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for j in range(2):
            p = f"layer{i}.{j}."
            out[p + "conv1.weight"] = (planes, inplanes, 3, 3)
            out.update(bn(p + "bn1", planes))
            out[p + "conv2.weight"] = (planes, planes, 3, 3)
            out.update(bn(p + "bn2", planes))
            if inplanes != planes:
                out[p + "downsample.0.weight"] = (planes, inplanes, 1, 1)
                out.update(bn(p + "downsample.1", planes))
            inplanes = planes
    return {**out, "fc.weight": (num_classes, 512), "fc.bias": (num_classes,)}


def _he(shape) -> float:
    return float(np.sqrt(2 / np.prod(shape[1:]))) if len(shape) > 1 else 1.0


def random_state_dict(shapes, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {
        k: np.asarray(7, np.int64)
        if k.endswith("num_batches_tracked")
        # float32, not float64: what torch.save(model.state_dict()) holds; kernels scaled
        # by their fan-in (He), so that logits stay of a size a loss can be compared at
        else (rng.standard_normal(s) * _he(s)).astype(np.float32)
        for k, s in shapes.items()
    }
    for k in out:
        if k.endswith("running_var"):  # a variance: positive, or batch norm divides by NaN
            out[k] = np.abs(out[k]) + 0.5
    return out


def save_safetensors(tensors, path) -> str:
    st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    st.save_file(tensors, str(path))
    return str(path)


def import_file(arch, file, output, fmt="torchvision"):
    return run_binary(
        "experiments.import_weights",
        f"--format={fmt}",
        f"--arch={arch}",
        f"--file={file}",
        f"--output={output}",
        "--compilation_cache_dir=",
    )


def restore(workdir):
    """(experiment, state) of an imported workdir, restored as init_from would.

    Examples of the shapes of the config's dataset stand in for its synthetic
    set, which takes seconds to draw at 224x224x3 and 1000 classes.
    """
    config = read_run_config(workdir)
    classes = int(config.dataset.num_classes)
    x = np.zeros((10, *config.dataset.feature_shape), np.float32)
    source = Source(x, np.arange(10, dtype=np.int32) % classes, "classification", classes)
    exp = build(config, dataset=source)
    state, _, step = Checkpoints(workdir, read_only=True).restore(exp.abstract_state())
    assert step == 0
    return exp, state


def test_unknown_arch_and_format_exit_2(tmp_path):
    proc = import_file("resnet19", tmp_path / "w.safetensors", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "unknown arch 'resnet19'" in proc.stderr and "resnet18" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = import_file("resnet18", tmp_path / "w.safetensors", tmp_path / "out", fmt="timm")
    assert proc.returncode == 2 and "unknown format 'timm'" in proc.stderr
    assert not os.path.exists(tmp_path / "out")


@pytest.fixture(scope="module")
def imported_resnet18(tmp_path_factory):
    """(state dict, its file, the workdir experiments.import_weights made of it, its output).

    Shared by the tests that read the import (it takes seconds); they leave the
    workdir's checkpoint as it is.
    """
    directory = tmp_path_factory.mktemp("resnet18")
    tensors = random_state_dict(resnet18_shapes())
    file = save_safetensors(tensors, directory / "r18.safetensors")
    output = directory / "imported"
    proc = import_file("resnet18", file, output)
    assert proc.returncode == 0, proc.stderr
    return tensors, file, output, proc


@pytest.mark.slow
def test_resnet18_without_torch_fills_every_variable(imported_resnet18, tmp_path):
    tensors, file, output, proc = imported_resnet18
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["classes"] == 1000 and result["tensors"] == 102 and result["written"]
    assert result["parameters"] == 11_689_512  # torchvision's

    exp, state = restore(output)
    params, stats = state.params, state.model_state["batch_stats"]
    np.testing.assert_array_equal(  # OIHW -> HWIO
        params["stage2_block1"]["proj_conv"]["kernel"],
        tensors["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(params["head"]["kernel"], tensors["fc.weight"].T)
    np.testing.assert_array_equal(params["stem_bn"]["scale"], tensors["bn1.weight"])
    np.testing.assert_array_equal(
        stats["stage4_block2"]["bn2"]["var"], tensors["layer4.1.bn2.running_var"]
    )
    with open(output / "config.json") as f:
        config = json.load(f)
    assert config["model"] == {"name": "resnet18", "num_outputs": 1000}
    assert config["task"]["name"] == "classification"
    assert config["dataset"]["feature_shape"] == [224, 224, 3]
    assert config["dataset"]["num_classes"] == 1000

    prep = Preprocessing.load(str(output / "preprocessing.npz"))
    assert prep.input_shape == (224, 224, 3)
    assert prep.info["standardize"] == "imagenet" and prep.info["num_classes"] == 1000
    np.testing.assert_allclose(prep.x_mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(prep.x_std, [0.229, 0.224, 0.225])

    # dl.load takes raw RGB images in [0, 1] and normalizes them as torchvision does.
    import dl

    raw = np.random.default_rng(1).uniform(size=(2, 224, 224, 3)).astype(np.float32)
    variables = {"params": state.params, **state.model_state}
    expected = exp.model.apply(variables, (raw - prep.x_mean) / prep.x_std, train=False)
    predictor = dl.load(str(output))
    got = np.asarray(predictor.apply(raw))
    # Unscaled random weights give huge logits: compare relative to their size.
    assert np.max(np.abs(got - expected)) <= 1e-5 * np.max(np.abs(expected))
    assert predictor.predict(raw)["labels"].shape == (2,)

    before = sorted(os.listdir(output))
    again = import_weights("torchvision", "resnet18", file, str(output))  # nothing to do
    assert not again["written"] and again["sha256"] == result["sha256"]
    other = dict(tensors, **{"fc.bias": tensors["fc.bias"] + 1})
    other_file = save_safetensors(other, tmp_path / "b.safetensors")
    with pytest.raises(ConfigError, match="holds an import of another file"):
        import_weights("torchvision", "resnet18", other_file, str(output))
    with pytest.raises(ConfigError, match="holds an import of another file or architecture"):
        import_weights("torchvision", "resnet34", file, str(output))
    assert sorted(os.listdir(output)) == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        import_weights("torchvision", "resnet18", file, str(tmp_path / "busy"))

    # The workdir's own config builds and restores (experiments.evaluate on it with real
    # data: test_an_imported_workdir_is_fine_tuned_predicted_and_evaluated); its
    # placeholder data (48 synthetic examples over 1000 classes, split per class) has no
    # test split.
    assert config["dataset"]["standardize"] == "imagenet"  # what preprocessing.npz records
    with pytest.raises(ConfigError, match="the test split .* has no examples"):
        evaluate(str(output), split="test")


def _write_images(folder, classes, per_class, size, seed=0) -> list[str]:
    """RGB PNGs in one sub-folder per class (flat with classes=None); returns their paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for c, name in enumerate(classes or [""]):
        os.makedirs(folder / name, exist_ok=True)
        for i in range(per_class):
            arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            arr[..., 0] = (40 + 150 * c) % 256
            Image.fromarray(arr).save(folder / name / f"{i}.png")
            paths.append(str(folder / name / f"{i}.png"))
    return paths


@pytest.mark.slow
def test_an_imported_workdir_is_fine_tuned_predicted_and_evaluated(imported_resnet18, tmp_path):
    from PIL import Image

    import dl
    from conftest import config_path

    tensors, _, output, _ = imported_resnet18
    # README's fine-tuning example on a folder of 12 images of 2 classes, briefly: every
    # variable but the head starts from the import, the stem stays as imported.
    _write_images(tmp_path / "pets", ["cat", "dog"], 6, 16)
    tuned = tmp_path / "tuned"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('finetune_resnet18')}",
        f"--workdir={tuned}",
        f"--config.dataset.name=images:{tmp_path / 'pets'}",
        "--config.dataset.image_size=16",
        f"--config.init_from.workdir={output}",
        "--config.init_from.exclude=('head/.*',)",
        "--config.freeze=('stem_.*',)",
        "--config.batch_size=4",
        "--config.eval_batch_size=8",
        "--config.num_train_steps=2",
        "--config.log_every_steps=2",
        "--config.eval_every_steps=2",
        "--config.checkpoint_every_steps=2",
    )
    assert proc.returncode == 0, proc.stderr
    state, _, step = Checkpoints(str(tuned), read_only=True).restore(None)
    params = state["params"]
    assert step == 2 and params["head"]["kernel"].shape == (512, 2)  # the folder's classes
    np.testing.assert_array_equal(  # loaded and frozen: bitwise the imported tensor
        params["stem_conv"]["kernel"], tensors["conv1.weight"].transpose(2, 3, 1, 0)
    )
    imported = tensors["layer4.1.conv2.weight"].transpose(2, 3, 1, 0)
    trained = np.asarray(params["stage4_block2"]["conv2"]["kernel"])
    assert not np.array_equal(trained, imported)  # loaded, then trained (not drawn afresh)
    assert np.corrcoef(trained.ravel(), imported.ravel())[0, 1] > 0.9

    # experiments.predict on the import: torchvision's 224x224 RGB inputs, normalized
    # as preprocessing.npz says, give dl.load's predictions.
    files = _write_images(tmp_path / "new", None, 2, 224, seed=1)
    proc = run_binary(
        "experiments.predict",
        f"--workdir={output}",
        f"--input={tmp_path / 'new'}",
        f"--output={tmp_path / 'out.npz'}",
    )
    assert proc.returncode == 0, proc.stderr
    predictor = dl.load(str(output))
    raw = np.stack([np.asarray(Image.open(f), np.float32) / 255 for f in files])
    expected = predictor.predict(raw)
    with np.load(tmp_path / "out.npz") as f:
        np.testing.assert_array_equal(f["labels"], expected["labels"])
        np.testing.assert_allclose(f["probabilities"], expected["probabilities"], atol=1e-6)

    # experiments.evaluate on the import given a folder of its 1000 classes (one 8x8
    # image each, all in the train split): the loss of the model on those images,
    # normalized as the weights expect.
    paths = _write_images(tmp_path / "val", [f"{c:04d}" for c in range(1000)], 1, 8, seed=2)
    proc = run_binary(
        "experiments.evaluate",
        f"--workdir={output}",
        f"--dataset.name=images:{tmp_path / 'val'}",
        "--dataset.image_size=8",
        "--split=train",
        "--nofigures",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 0 and result["dataset"] == f"images:{tmp_path / 'val'}"
    prep = predictor.preprocessing
    x = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in paths])
    apply = jax.jit(lambda v, x: predictor.model.apply(v, x, train=False))
    logits = np.asarray(apply(predictor.variables, (x - prep.x_mean) / prep.x_std), np.float64)
    loss = np.mean(jax.nn.logsumexp(logits, axis=-1) - logits[np.arange(1000), np.arange(1000)])
    assert result["loss"] == pytest.approx(float(loss), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, listed",
    [
        (
            {"drop": ["layer3.0.downsample.1.running_var"], "add": {"layer5.0.conv1.weight": 3}},
            [
                "layer5.0.conv1.weight",
                "layer3.0.downsample.1.running_var (dl batch_stats/stage3_block1/proj_bn/var)",
            ],
        ),
        (
            {"shape": {"conv1.weight": (64, 3, 5, 5), "layer1.1.bn2.bias": (32,)}},
            ["conv1.weight [64, 3, 5, 5] (dl needs [64, 3, 7, 7])", "layer1.1.bn2.bias [32]"],
        ),
    ],
)
def test_keys_and_shapes_that_do_not_fit_exit_2_and_write_nothing(tmp_path, change, listed):
    shapes = resnet18_shapes()
    for key in change.get("drop", []):
        del shapes[key]
    shapes.update({k: (s,) for k, s in change.get("add", {}).items()})
    shapes.update(change.get("shape", {}))
    file = save_safetensors(random_state_dict(shapes), tmp_path / "bad.safetensors")
    proc = import_file("resnet18", file, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message, message
    for text in listed:
        assert text in message, message
    assert "num_batches_tracked" not in message  # ignored, never listed
    assert not os.path.exists(tmp_path / "out") and os.listdir(tmp_path) == ["bad.safetensors"]


def test_pth_without_torch_says_what_to_install(tmp_path):
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch is installed: the message for its absence cannot show")
    (tmp_path / "w.pth").write_bytes(b"not read")
    proc = import_file("resnet18", tmp_path / "w.pth", tmp_path / "out")
    assert proc.returncode == 2 and "pip install torch" in proc.stderr, proc.stderr
    assert ".safetensors" in proc.stderr


# -- with torch and torchvision: dl computes what torchvision computes ---------------------


@pytest.fixture(scope="module")
def tv():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional)")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    torch.manual_seed(0)
    return torch, torchvision


def randomized(tv, arch):
    """A torchvision model in eval mode with random weights, biases and BN statistics."""
    torch, torchvision = tv
    model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
            elif arch == "alexnet" and isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                # torch's default init leaves AlexNet's logits near 0.03, where a
                # tolerance of 1e-4 would prove little; these give logits of about 1.
                m.weight.normal_(0.0, (1.0 / m.weight[0].numel()) ** 0.5)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


def save_both(tv, model, directory, name):
    """The state dict as .pth (torch.save) and .safetensors; returns both paths."""
    torch, _ = tv
    from safetensors.torch import save_file

    state = model.state_dict()
    pth, st = os.path.join(directory, f"{name}.pth"), os.path.join(directory, f"{name}.safetensors")
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, st)
    return pth, st


def max_difference(tv, model, exp, state, size, batch=2):
    """Largest |dl - torchvision| over the logits of the same random images."""
    torch, _ = tv
    x = np.random.default_rng(size).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()  # [batch, classes]
    variables = {"params": state.params, **state.model_state}
    got = exp.model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
    assert np.abs(expected).max() > 0.3  # outputs big enough for the tolerance to mean something
    return float(np.abs(np.asarray(got) - expected).max())


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, files, sizes",
    [
        ("resnet18", ("pth", "safetensors"), (64, 75)),  # 75: odd maps under stride 2
        ("alexnet", ("pth",), (224, 160)),  # 160: 4x4 maps adaptively pooled to 6x6
        ("resnet50", ("safetensors",), (64,)),
    ],
)
def test_outputs_equal_torchvision(tv, tmp_path, arch, files, sizes):
    model = randomized(tv, arch)
    paths = dict(zip(("pth", "safetensors"), save_both(tv, model, tmp_path, arch), strict=True))
    restored = []
    for kind in files:
        proc = import_file(arch, paths[kind], tmp_path / f"from_{kind}")
        assert proc.returncode == 0, proc.stderr
        restored.append(restore(tmp_path / f"from_{kind}"))
    exp, state = restored[0]
    for _, other in restored[1:]:  # both files give the same checkpoint
        for a, b in zip(_leaves(state), _leaves(other), strict=True):
            np.testing.assert_array_equal(a, b)
    for size in sizes:
        difference = max_difference(tv, model, exp, state, size)
        assert difference < TOLERANCE, f"{arch} at {size}x{size}: max |dl - torch| {difference}"


def _leaves(state):
    return jax.tree_util.tree_leaves((state.params, state.model_state))
