"""Pretrained weights from a local file into a dl workdir; nothing is downloaded.

`import_weights("torchvision", "resnet50", "W.safetensors", "runs/resnet50_tv")`
reads torchvision's state dict of ResNet-18/34/50/101/152 or AlexNet (a
`.safetensors` file through safetensors' numpy API, or a `.pth` pickle
through `torch.load` when PyTorch is installed), moves every tensor into dl's
layout and names (`dl.tools.torchvision_names`), and writes a workdir like
any training run's:

    config.json         the model, task "classification", and a synthetic dataset of
                        ImageNet-style inputs (224x224x3, the file's classes)
    checkpoints/0/      a step-0 TrainState: the weights, batch statistics, and the
                        state of the config's optimizer (plain SGD: nothing more)
    preprocessing.npz   torchvision's input normalization, per channel of RGB in [0, 1]
    import.json         the file imported (path, SHA-256), format and architecture

so that `init_from.workdir`, `experiments.evaluate` and `dl.load` read it.
The workdir is written under a temporary name beside it and renamed when
complete, so an interrupted import leaves nothing at the destination.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import jax
import ml_collections
import numpy as np

from dl.config import base_config
from dl.data import Source
from dl.data.preprocessing import FILE as PREPROCESSING_FILE
from dl.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from dl.errors import ConfigError
from dl.tools.torchvision_names import IGNORED_SUFFIX, check_names, convert, num_classes
from dl.train import Checkpoints, TrainState, build
from dl.train.resume import config_to_dict

INPUT_SHAPE = (224, 224, 3)
RECORD = "import.json"
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """The state dict in a `.safetensors` or `.pth` file, as numpy arrays.

    A `.pth` holding a training checkpoint (`{"model": state_dict, ...}` or
    `{"state_dict": ...}`) gives its state dict; a `module.` prefix on every
    key (torch's DataParallel) is dropped.

    Raises:
      ConfigError: a missing file, an unknown suffix, a missing library (naming
        what to install), or a file that is not a state dict.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"weights file not found: {path!r}")
    if path.endswith(SAFETENSORS_SUFFIXES):
        tensors = _read_safetensors(path)
    elif path.endswith(TORCH_SUFFIXES):
        tensors = _read_torch(path)
    else:
        raise ConfigError(
            f"{path!r}: unknown weights file type; expected one of "
            f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}"
        )
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file  # optional: only .safetensors files need it
    except ImportError:
        raise ConfigError(
            f"reading {path!r} needs the safetensors package: pip install -e '.[weights]' "
            "(or pip install safetensors)"
        ) from None
    try:
        return dict(load_file(path))
    except Exception as e:  # noqa: BLE001 -- a damaged or foreign file fails in many ways
        raise ConfigError(f"cannot read {path!r} as safetensors: {_first_line(e)}") from None


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch  # optional and slow to import: only .pth files need it
    except ImportError:
        raise ConfigError(
            f"{path!r} is a PyTorch pickle, and PyTorch is not installed: pip install torch "
            "(a CPU build: --index-url https://download.pytorch.org/whl/cpu), or, where torch "
            "is, save the state dict with safetensors.torch.save_file and import the "
            ".safetensors file, which needs no torch"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- unpickling fails in many ways
        raise ConfigError(
            f"cannot read {path!r} with torch.load(weights_only=True): {_first_line(e)}"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError(
            f"{path!r} does not hold a state dict (a dict of tensors, as "
            f"torch.save(model.state_dict(), path) writes) but {type(obj).__name__}"
        )
    return {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).numpy()
        for k, v in obj.items()
    }


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def file_digest(path: str) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_config(arch: str, classes: int) -> ml_collections.ConfigDict:
    """The config an imported workdir records.

    The dataset is synthetic, of ImageNet-style inputs (224x224x3) and the
    file's classes; replace it with real data through `--config.dataset...` or
    `--dataset...` where a binary takes overrides. `standardize="imagenet"` is
    the normalization the weights expect, as preprocessing.npz records it, so
    that real data given so (`experiments.evaluate --dataset.name=images:DIR`)
    is normalized as `dl.load` and `experiments.predict` normalize it.
    The optimizer is plain SGD, so the checkpoint holds the weights and no
    optimizer moments.
    """
    c = base_config()
    c.name = f"{arch}_torchvision"
    c.dataset.name = "synthetic"
    c.dataset.num_samples = 48
    c.dataset.feature_shape = INPUT_SHAPE
    c.dataset.num_classes = classes
    c.dataset.standardize = "imagenet"
    c.dataset.validation_fraction = 0.1
    c.dataset.test_fraction = 0.1
    c.model = ml_collections.ConfigDict(dict(name=arch, num_outputs=classes))
    c.optimizer.name = "sgd"
    c.batch_size = 8
    c.eval_batch_size = 8
    return c


def _stand_in(classes: int) -> Source:
    """Examples of the shapes of import_config's dataset.

    The synthetic set draws a [150528, classes] teacher matrix (seconds for
    1000 classes); the train state depends on the examples' shapes and the
    class count only, which this has.
    """
    x = np.zeros((10, *INPUT_SHAPE), np.float32)
    return Source(x, np.arange(10, dtype=np.int32) % classes, "classification", classes)


def _check_output(output: str, record: dict) -> bool:
    """True when `output` already holds this import; raises when it holds anything else."""
    if not os.path.exists(output):
        return False
    if not os.path.isdir(output):
        raise ConfigError(f"--output {output!r} exists and is not a directory")
    if not os.listdir(output):
        return False
    try:
        with open(os.path.join(output, RECORD)) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        raise ConfigError(
            f"--output {output!r} exists and is not empty; choose a new directory "
            "(nothing was written)"
        ) from None
    same = all(previous.get(k) == record[k] for k in ("format", "arch", "sha256"))
    if not same:
        raise ConfigError(
            f"--output {output!r} holds an import of another file or architecture "
            f"({previous.get('format')} {previous.get('arch')} from {previous.get('file')}, "
            f"sha256 {str(previous.get('sha256'))[:12]}...); choose a new directory"
        )
    return True


def import_weights(fmt: str, arch: str, file: str, output: str) -> dict:
    """Imports a weights file into a new workdir.

    Args:
      fmt: the file's naming convention, one of dl.tools.torchvision_names.FORMATS.
      arch: the architecture, one of dl.tools.torchvision_names.ARCHS.
      file: the `.safetensors` or `.pth` file.
      output: the workdir to write; it must not exist or be empty, unless it
        holds an import of the same file (then nothing is written).

    Returns:
      What was done: workdir, arch, classes, parameters, tensors used,
      sha256, and "written" (False when the workdir already held this import).

    Raises:
      ConfigError: an unknown format or architecture, an unusable output
        directory, or a file that is not that architecture's state dict
        (nothing is written then).
    """
    check_names(fmt, arch)
    if not os.path.isfile(file):
        raise ConfigError(f"weights file not found: {file!r}")
    record = {
        "format": fmt,
        "arch": arch,
        "file": os.path.abspath(file),
        "sha256": file_digest(file),
    }
    output = os.path.abspath(output)
    result = {"workdir": output, "arch": arch, "sha256": record["sha256"]}
    if _check_output(output, record):
        return {**result, "written": False}
    tensors = read_tensors(file)
    classes = num_classes(arch, tensors)
    config = import_config(arch, classes)
    exp = build(config, dataset=_stand_in(classes))
    abstract = exp.abstract_state()
    variables = convert(
        arch, tensors, {"params": abstract.params, **abstract.model_state}, exp.model
    )
    params = variables.pop("params")
    rng = jax.random.split(jax.random.PRNGKey(int(config.seed)))[1]  # as Steps.init_state
    state = exp.place(TrainState.create(params, variables, exp.steps.tx, rng))
    record["classes"] = classes
    _write(output, config, state, record)
    used = sum(1 for k in tensors if not k.endswith(IGNORED_SUFFIX))
    count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    return {**result, "classes": classes, "parameters": count, "tensors": used, "written": True}


def _write(output: str, config, state: TrainState, record: dict) -> None:
    """Writes the workdir under a temporary name beside `output`, then renames it."""
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(output)}.importing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    config_dict = config_to_dict(config)
    try:
        ckpts = Checkpoints(tmp, keep=int(config.keep_checkpoints))
        try:
            ckpts.save(0, state, {"config": config_dict, "loop": {}, "step": 0, "import": record})
            ckpts.wait()
        finally:
            ckpts.close()
        prep = Preprocessing(
            x_mean=np.asarray(IMAGENET_MEAN, np.float32),
            x_std=np.asarray(IMAGENET_STD, np.float32),
            input_shape=INPUT_SHAPE,
            info={
                "kind": "classification",
                "standardize": "imagenet",
                "dataset": f"{record['format']}:{record['arch']}",
                "num_classes": record["classes"],
                # What dl.load builds the model and the task for, without data.
                "fields": {
                    "x": {"shape": list(INPUT_SHAPE), "dtype": "float32"},
                    "y": {"shape": [], "dtype": "int32"},
                },
                "input_range": "RGB in [0, 1]",
                "source": f"{record['format']} {record['arch']}",
            },
        )
        prep.save(os.path.join(tmp, PREPROCESSING_FILE))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config_dict, f, indent=2)
        with open(os.path.join(tmp, RECORD), "w") as f:
            json.dump(record, f, indent=2)
        if os.path.isdir(output):
            os.rmdir(output)  # empty: _check_output said so
        os.rename(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
