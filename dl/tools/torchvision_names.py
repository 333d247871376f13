"""torchvision's state-dict names and layouts for dl's ResNet-18..152 and AlexNet.

Each dl variable (collection, module path, leaf) has one torchvision key:

    params/stem_conv/kernel                  conv1.weight
    params/stem_bn/{scale,bias}              bn1.{weight,bias}
    batch_stats/stem_bn/{mean,var}           bn1.{running_mean,running_var}
    params/stage2_block1/conv1/kernel        layer2.0.conv1.weight
    params/stage2_block1/proj_conv/kernel    layer2.0.downsample.0.weight
    params/stage2_block1/proj_bn/scale       layer2.0.downsample.1.weight
    params/head/{kernel,bias}                fc.{weight,bias}
    params/conv3/kernel (AlexNet)            features.8.weight
    params/dense0/kernel (AlexNet)           classifier.1.weight

and its array is the torch tensor in dl's layout: convolution weights
[out, in, h, w] (OIHW) become [h, w, in, out] (HWIO), linear weights
[out, in] become [in, out]. The first linear layer after a flattened map is
permuted too: torch flattens [channels, height, width], dl flattens
[height, width, channels]. `num_batches_tracked` has no counterpart in dl
(flax's BatchNorm keeps no counter) and is ignored.
"""

from __future__ import annotations

import math
import re

import numpy as np

from dl.errors import ConfigError, unknown_name

FORMATS = ("torchvision",)  # the naming conventions of weight files dl reads
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCHS = (*RESNETS, "alexnet")
IGNORED_SUFFIX = ".num_batches_tracked"

_LEAVES = {
    "kernel": "weight",
    "bias": "bias",
    "scale": "weight",
    "mean": "running_mean",
    "var": "running_var",
}
_ALEXNET = {
    **{f"conv{i}": f"features.{j}" for i, j in enumerate((0, 3, 6, 8, 10))},
    "dense0": "classifier.1",
    "dense1": "classifier.4",
    "head": "classifier.6",
}
_BLOCK = re.compile(r"stage(\d+)_block(\d+)$")
_RESNET_PARTS = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}


def check_names(fmt: str, arch: str) -> None:
    """Raises ConfigError, listing the known ones, for an unknown format or architecture."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    if arch not in ARCHS:
        raise unknown_name("arch", arch, ARCHS)


def head_key(arch: str) -> str:
    """The torchvision key of the classifier's weight, whose rows count the classes."""
    return "fc.weight" if arch in RESNETS else "classifier.6.weight"


def torch_key(arch: str, path: tuple[str, ...]) -> str | None:
    """The torchvision key of one dl variable, or None where torchvision has none.

    Args:
      arch: a name of ARCHS.
      path: (module, ..., leaf) within its collection, e.g.
        ("stage1_block2", "bn1", "scale").

    Returns:
      The key, e.g. "layer1.1.bn1.weight".

    >>> torch_key("resnet50", ("stage3_block1", "proj_bn", "mean"))
    'layer3.0.downsample.1.running_mean'
    >>> torch_key("alexnet", ("dense0", "kernel"))
    'classifier.1.weight'
    """
    *modules, leaf = path
    if leaf not in _LEAVES:
        return None
    if arch == "alexnet":
        if len(modules) != 1 or modules[0] not in _ALEXNET:
            return None
        return f"{_ALEXNET[modules[0]]}.{_LEAVES[leaf]}"
    names = []
    for m in modules:
        block = _BLOCK.match(m)
        if block:
            names.append(f"layer{block.group(1)}.{int(block.group(2)) - 1}")
        elif m in ("stem_conv", "stem_bn"):
            names.append({"stem_conv": "conv1", "stem_bn": "bn1"}[m])
        elif m == "head":
            names.append("fc")
        else:
            names.append(_RESNET_PARTS.get(m, m))
    return ".".join([*names, _LEAVES[leaf]])


def flattened_input(arch: str, path: tuple[str, ...], model) -> tuple[int, int] | None:
    """(height, width) of the map that a dense layer's input flattens, where torch's
    [channels, height, width] order differs from dl's; None for every other variable."""
    if arch == "alexnet" and path == ("dense0", "kernel"):
        return (model.pooled_size, model.pooled_size)
    return None


def to_dl_layout(array: np.ndarray, ndim: int, flattened: tuple[int, int] | None) -> np.ndarray:
    """A torch tensor in dl's layout: OIHW -> HWIO, [out, in] -> [in, out], vectors as they are.

    Args:
      array: the tensor as numpy.
      ndim: the rank of the dl variable it fills.
      flattened: (height, width) of a flattened map feeding a linear layer, whose
        input axis torch orders [channels, height, width] and dl [height, width, channels].

    Returns:
      The array, or None when its rank does not fit.

    >>> w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # [out, in, h, w]
    >>> to_dl_layout(w, 4, None).shape
    (4, 5, 3, 2)
    >>> lin = np.arange(2 * 12).reshape(2, 12)  # [out, channels * 2 * 2], channels = 3
    >>> int(to_dl_layout(lin, 2, (2, 2))[1, 0])  # dl input 1 is (h 0, w 0, channel 1)
    4
    """
    if array.ndim != ndim:
        return None
    if ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if ndim == 2 and flattened is not None:
        out, n = array.shape
        h, w = flattened
        if n % (h * w):
            return None
        c = n // (h * w)
        return array.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)
    if ndim == 2:
        return array.T
    return array


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape that fills a dl variable of `shape` (the inverse of to_dl_layout)."""
    if len(shape) == 4:
        h, w, i, o = shape
        return (o, i, h, w)
    if len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape)


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def convert(arch: str, tensors: dict[str, np.ndarray], abstract_variables: dict, model) -> dict:
    """dl's variables of `arch` from a torchvision state dict.

    Every key of the file must fill a dl variable (num_batches_tracked aside)
    and every dl variable must be filled, with a matching shape.

    Args:
      arch: a name of ARCHS.
      tensors: key -> numpy array, as read from the file.
      abstract_variables: collection -> tree of objects with `.shape` (the
        model's params and batch_stats, e.g. from jax.eval_shape).
      model: the flax module (for the size of flattened maps).

    Returns:
      collection -> nested dict of float32 numpy arrays, the tree of
      `abstract_variables`.

    Raises:
      ConfigError: one line naming the file's unused keys, the dl variables
        nothing fills (with the key that would) and the shapes that differ.
    """
    wanted = {}  # torch key -> (collection, path, dl shape)
    unnamed = []
    for collection, tree in abstract_variables.items():
        for path, leaf in _leaves(tree):
            key = torch_key(arch, path)
            if key is None:
                unnamed.append("/".join((collection, *path)))
            else:
                wanted[key] = (collection, path, tuple(leaf.shape))
    unused = sorted(k for k in tensors if k not in wanted and not k.endswith(IGNORED_SUFFIX))
    missing = sorted(k for k in wanted if k not in tensors)
    out: dict = {c: {} for c in abstract_variables}
    bad_shapes = []
    for key, (collection, path, shape) in wanted.items():
        if key not in tensors:
            continue
        array = np.asarray(tensors[key])
        moved = to_dl_layout(array, len(shape), flattened_input(arch, path, model))
        if moved is None or moved.shape != shape:
            bad_shapes.append(f"{key} {list(array.shape)} (dl needs {list(torch_shape(shape))})")
            continue
        node = out[collection]
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = np.ascontiguousarray(moved, dtype=np.float32)
    problems = []
    if unused:
        problems.append(f"keys dl has no place for: {_listed(unused)}")
    if missing:
        problems.append(
            "keys missing from the file: "
            + _listed([f"{k} (dl {'/'.join((wanted[k][0], *wanted[k][1]))})" for k in missing])
        )
    if bad_shapes:
        problems.append(f"shapes that differ: {_listed(sorted(bad_shapes))}")
    if unnamed:
        problems.append(f"dl variables torchvision has no key for: {_listed(unnamed)}")
    if problems:
        hint = " (is --arch right?)" if len(missing) + len(bad_shapes) > len(wanted) // 2 else ""
        raise ConfigError(f"the file is not torchvision's {arch}{hint}: " + "; ".join(problems))
    return out


def _leaves(tree, prefix: tuple[str, ...] = ()):
    """(path, leaf) of a nested dict, in sorted order."""
    for name in sorted(tree):
        value = tree[name]
        if isinstance(value, dict) or hasattr(value, "items"):
            yield from _leaves(dict(value), (*prefix, name))
        else:
            yield (*prefix, name), value


def num_classes(arch: str, tensors: dict[str, np.ndarray]) -> int:
    """The classes a torchvision classifier's state dict predicts: the rows of its last
    weight matrix, or 1000 (ImageNet's) when that is not a matrix (`convert` then says so).

    >>> num_classes("resnet18", {"fc.weight": np.zeros((10, 512))})
    10
    """
    shape = tuple(np.shape(tensors.get(head_key(arch), ())))
    return shape[0] if len(shape) == 2 and math.prod(shape) else 1000
