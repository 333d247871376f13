"""Image data, augmentation, the learned kernel and the CNN experiments."""

import io
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import assert_resume_is_exact, config_path, load_config, run_binary
from dl.data import load_dataset
from dl.data.augment import horizontal_flip, random_crop
from dl.errors import ConfigError
from dl.train import train


def _write_folder(root, sizes=None, mode="L"):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        os.makedirs(root / name)
        for i in range(6):
            h, w = (sizes or {}).get((name, i), (12, 12))
            arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
            arr[..., 0] = 40 + 150 * c
            Image.fromarray(arr).convert(mode).save(root / name / f"{i}.png")


def test_image_folder_loads_classes_in_sorted_order(tmp_path):
    _write_folder(tmp_path)
    ds = load_dataset(
        ml_collections.ConfigDict(
            dict(
                name=f"images:{tmp_path}",
                validation_fraction=0.0,
                test_fraction=0.25,
                standardize="none",
            )
        )
    )
    assert ds.info["classes"] == ["cat", "dog"]
    assert ds.element_shapes["x"] == (12, 12, 1)
    assert sum(ds.size(s) for s in ("train", "validation", "test")) == 12
    assert 0.0 <= ds.splits["train"]["x"].min() and ds.splits["train"]["x"].max() <= 1.0


def test_image_folder_resizes_and_converts_channels(tmp_path):
    _write_folder(tmp_path, sizes={("dog", 3): (20, 16)}, mode="RGB")
    cfg = ml_collections.ConfigDict(
        dict(name=f"images:{tmp_path}", image_size=8, channels=3, standardize="none")
    )
    assert load_dataset(cfg).element_shapes["x"] == (8, 8, 3)


def test_image_folder_errors_name_the_file(tmp_path):
    _write_folder(tmp_path, sizes={("dog", 3): (20, 16)})
    cfg = ml_collections.ConfigDict(dict(name=f"images:{tmp_path}"))
    with pytest.raises(ConfigError, match=r"dog/3.png' has shape \(20, 16, 1\)"):
        load_dataset(cfg)
    os.remove(tmp_path / "dog" / "3.png")
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="cannot read image .*dog/bad.png"):
        load_dataset(cfg)
    os.remove(tmp_path / "dog" / "bad.png")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ConfigError, match="class folder .*empty' holds no images"):
        load_dataset(cfg)


def test_digits_resized_variant():
    ds = load_dataset(ml_collections.ConfigDict(dict(name="digits", image_size=32)))
    assert ds.element_shapes["x"] == (32, 32, 1)


def test_random_crop_is_a_shifted_window_and_flip_a_mirror():
    images = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1) + 1
    out = random_crop(jax.random.PRNGKey(0), images, 2)
    assert out.shape == images.shape
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for b in range(2):
        windows = [padded[b, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        assert any(np.array_equal(np.asarray(out[b]), w) for w in windows)
    flipped = horizontal_flip(jax.random.PRNGKey(1), images)
    for b in range(2):
        assert np.array_equal(flipped[b], images[b]) or np.array_equal(
            flipped[b], images[b, :, ::-1]
        )


def test_augmentation_follows_the_step_so_resume_is_exact(tmp_path):
    c = load_config("cnn_digits")
    c.model.conv_features, c.model.dense_sizes = (4,), (8,)
    c.augment.horizontal_flip = True
    c.schedule.name = "constant"
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
    c.num_train_steps = 30
    assert_resume_is_exact(c, tmp_path, stop=10)


def test_learn_kernel_recovers_an_arbitrary_kernel(tmp_path):
    kernel = "((0.5,-1.0,0.25),(2.0,0.0,-0.75),(1.5,0.3,-2.0))"
    proc = run_binary(
        "experiments.learn_kernel", f"--workdir={tmp_path}", f"--config.dataset.kernel={kernel}"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["max_abs_error"] < 1e-3
    np.testing.assert_allclose(result["learned_kernel"], eval(kernel), atol=1e-3)
    assert os.path.exists(tmp_path / "kernel.png")


@pytest.mark.slow
def test_cnn_digits_reaches_98_5_percent_and_writes_figures(tmp_path):
    proc = run_binary(
        "experiments.train", f"--config={config_path('cnn_digits')}", f"--workdir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("summary ")][-1]
    assert json.loads(line[8:])["test"]["accuracy"] >= 0.985
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "confusion_test.json") as f:
        cm = np.array(json.load(f)["counts"])
    assert cm.shape == (10, 10) and cm.sum() == 359
    for name in ("confusion_test.png", "conv_kernels.png", "conv_feature_maps.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_resnet50_config_has_the_published_size():
    from dl.train import build

    state = build(load_config("resnet50")).abstract_state()
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))
    assert count == 25_557_032  # torchvision's published count
    assert "batch_stats" in state.model_state


@pytest.mark.slow
def test_alexnet_tiny_smoke_run_trains(tmp_path):
    c = load_config("alexnet_tiny")
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 2
    summary = train(c, str(tmp_path), stream=io.StringIO())
    assert summary["step"] == 2 and np.isfinite(summary["train"]["loss"])


def test_wrong_image_rank_for_a_cnn_names_the_shapes():
    c = load_config("cnn_digits")
    c.dataset.name = "wine"
    from dl.train import build

    with pytest.raises(ConfigError, match=r"\(13,\)"):
        build(c)
