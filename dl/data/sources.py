"""Where examples come from: built-in datasets, generators and user files.

Every source returns a `Source`: all examples of one dataset as numpy arrays,
before any split. Sources are looked up by name in `SOURCES`; user files are
named `npz:PATH` and `csv:PATH`. Nothing here downloads: the built-in sets are
the ones scikit-learn ships, and the rest are generated from a seed.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable

import numpy as np

from dl.data import sequences
from dl.data.graph_sources import (
    load_citation_synthetic,
    load_digits_grid,
    load_graph_npz,
    load_graphs_synthetic,
    load_karate,
)
from dl.data.shapes import load_detection_npz, make_shapes_source
from dl.data.subproblems import load_subproblems
from dl.errors import ConfigError, unknown_name


@dataclasses.dataclass
class Source:
    """All examples of a dataset, before splitting.

    Attributes:
      x: inputs, [examples, ...features].
      y: targets, [examples] (class ids or values) or [examples, outputs].
      kind: "classification" or "regression".
      num_classes: number of classes for classification, else None.
      fixed_splits: optional mapping split -> example indices, for datasets
        whose splits are part of the data (truth tables use every example for
        every split).
      info: free-form description stored with the run.
      extra: more per-example fields (e.g. boxes and their mask for detection,
        edges for graphs), each with a leading example axis; split with x and y.
    """

    x: np.ndarray
    y: np.ndarray
    kind: str
    num_classes: int | None = None
    fixed_splits: dict[str, np.ndarray] | None = None
    info: dict = dataclasses.field(default_factory=dict)
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _get(cfg, name, default):
    return cfg.get(name, default) if cfg is not None else default


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of images [examples, H, W, C] to [examples, size, size, C]."""
    import jax

    if x.shape[1:3] == (size, size):
        return x
    out = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), method="bilinear")
    return np.asarray(out, np.float32)


def _sklearn_bundled(loader_name: str, kind: str, image: bool = False):
    def load(cfg) -> Source:
        from sklearn import datasets as skd

        bunch = getattr(skd, loader_name)()
        if image:
            x = bunch.images.astype(np.float32)[..., None]  # [examples, 8, 8, 1]
            size = int(_get(cfg, "image_size", 0) or 0)
            if size:
                x = resize_images(x, size)  # [examples, size, size, 1]
        else:
            x = bunch.data.astype(np.float32)
        if kind == "classification":
            y = bunch.target.astype(np.int32)
            return Source(x, y, kind, int(y.max()) + 1, info={"source": f"sklearn.{loader_name}"})
        y = bunch.target.astype(np.float32)
        return Source(x, y, kind, info={"source": f"sklearn.{loader_name}"})

    return load


_TRUTH_TABLES = {
    "and": np.array([0, 0, 0, 1], np.int32),
    "or": np.array([0, 1, 1, 1], np.int32),
    "xor": np.array([0, 1, 1, 0], np.int32),
}


def _logic_gate(gate: str):
    def load(cfg) -> Source:
        corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        table = _TRUTH_TABLES[gate]
        n = int(_get(cfg, "num_samples", 0))
        if n <= 0:
            # The truth table itself: four points, and every split is all four.
            every = np.arange(4)
            splits = {"train": every, "validation": every, "test": every}
            return Source(corners, table, "classification", 2, splits, {"points": "truth table"})
        rng = np.random.default_rng(int(_get(cfg, "seed", 0)))
        corner = rng.integers(0, 4, size=n)
        noise = float(_get(cfg, "noise", 0.1))
        x = corners[corner] + noise * rng.standard_normal((n, 2)).astype(np.float32)
        return Source(
            x.astype(np.float32),
            table[corner],
            "classification",
            2,
            info={"points": f"{n} noisy samples", "noise": noise},
        )

    return load


def _moons(cfg) -> Source:
    from sklearn.datasets import make_moons

    x, y = make_moons(
        n_samples=int(_get(cfg, "num_samples", 1000)),
        noise=float(_get(cfg, "noise", 0.2)),
        random_state=int(_get(cfg, "seed", 0)),
    )
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", 2)


def _circles(cfg) -> Source:
    from sklearn.datasets import make_circles

    x, y = make_circles(
        n_samples=int(_get(cfg, "num_samples", 1000)),
        noise=float(_get(cfg, "noise", 0.1)),
        factor=float(_get(cfg, "factor", 0.5)),
        random_state=int(_get(cfg, "seed", 0)),
    )
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", 2)


def _spirals(cfg) -> Source:
    """Interleaved spirals, one arm per class."""
    n = int(_get(cfg, "num_samples", 1000))
    arms = int(_get(cfg, "num_classes", 2))
    noise = float(_get(cfg, "noise", 0.2))
    rng = np.random.default_rng(int(_get(cfg, "seed", 0)))
    y = np.arange(n) % arms
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi  # angle along the arm
    phase = 2.0 * np.pi * y / arms
    x = np.stack([t * np.cos(t + phase), t * np.sin(t + phase)], axis=1) / (3.0 * np.pi)
    x = x + noise / (3.0 * np.pi) * rng.standard_normal((n, 2))
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", arms)


def _synthetic(cfg) -> Source:
    """Random inputs of any shape with class labels from a random linear teacher.

    Fields: num_samples, feature_shape (e.g. (784,) or (224, 224, 3)),
    num_classes, seed. Used for benchmarks and smoke runs at a model's
    published input size; the labels are learnable but the task is not meant
    to be meaningful.
    """
    n = int(_get(cfg, "num_samples", 1024))
    shape = tuple(int(d) for d in _get(cfg, "feature_shape", (784,)))
    classes = int(_get(cfg, "num_classes", 10))
    rng = np.random.default_rng(int(_get(cfg, "seed", 0)))
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    teacher = rng.standard_normal((int(np.prod(shape)), classes), dtype=np.float32)
    y = np.argmax(x.reshape(n, -1) @ teacher, axis=1).astype(np.int32)
    return Source(x, y, "classification", classes, info={"source": "synthetic"})


SEED_KERNEL = ((1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0))  # the lecture's kernel


def _conv_pairs(cfg) -> Source:
    """Random binary images and their cross-correlation with a known kernel.

    Fields: num_samples, image_size, kernel (rows of a square kernel; default
    the lecture's [[1,0,1],[0,1,0],[1,0,1]]), noise (std of noise added to the
    outputs), seed. x [N, size, size, 1]; y the VALID output, flattened.
    """
    n = int(_get(cfg, "num_samples", 512))
    size = int(_get(cfg, "image_size", 10))
    kernel = np.asarray(_get(cfg, "kernel", SEED_KERNEL), np.float32)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ConfigError(f"dataset.kernel must be a square matrix, got shape {kernel.shape}")
    k = kernel.shape[0]
    if size <= k:
        raise ConfigError(f"dataset.image_size {size} must exceed the kernel size {k}")
    rng = np.random.default_rng(int(_get(cfg, "seed", 0)))
    x = rng.integers(0, 2, (n, size, size)).astype(np.float32)
    out = size - k + 1
    y = np.zeros((n, out, out), np.float32)
    for i in range(k):
        for j in range(k):
            y += kernel[i, j] * x[:, i : i + out, j : j + out]
    y += float(_get(cfg, "noise", 0.0)) * rng.standard_normal(y.shape).astype(np.float32)
    return Source(
        x[..., None],
        y.reshape(n, -1),
        "regression",
        info={"kernel": kernel.tolist(), "source": "conv_pairs"},
    )


def _check_file(path: str, what: str) -> None:
    if not path:
        raise ConfigError(f"{what} needs a path: use dataset.name='{what}:/path/to/file'")
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file not found: {path!r}")


def _infer_kind(y: np.ndarray, cfg) -> tuple[str, int | None]:
    kind = _get(cfg, "kind", None)
    if kind is None:
        kind = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    if kind not in ("classification", "regression"):
        raise ConfigError(f"dataset.kind must be 'classification' or 'regression', got {kind!r}")
    if kind == "classification":
        if y.ndim != 1:
            raise ConfigError(f"classification labels must have shape [examples], got {y.shape}")
        if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0:
            raise ConfigError("classification labels must be non-negative integers")
        return kind, int(y.max()) + 1
    return kind, None


def load_npz(path: str, cfg=None) -> Source:
    """Loads arrays `x` and `y` from an `.npz` file.

    Args:
      path: the file.
      cfg: dataset config; `kind` overrides the guess from y's dtype.

    Returns:
      The Source.
    """
    _check_file(path, "npz")
    try:
        with np.load(path) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise ConfigError(f"npz file {path!r} lacks arrays {missing}; it has {f.files}")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot read npz file {path!r}: {e}") from e
    if len(x) != len(y):
        raise ConfigError(f"npz file {path!r}: x has {len(x)} examples but y has {len(y)}")
    kind, num_classes = _infer_kind(y, cfg)
    y = y.astype(np.int32) if kind == "classification" else y.astype(np.float32)
    return Source(x.astype(np.float32), y, kind, num_classes, info={"file": path})


def load_csv(path: str, cfg=None) -> Source:
    """Loads a CSV file with a header row; `dataset.label_column` names the target.

    Args:
      path: the file.
      cfg: dataset config with `label_column` (default: the last column) and
        optional `kind`.

    Returns:
      The Source. String labels of a classification set are mapped to ids in
      sorted order (stored in info["classes"]).
    """
    _check_file(path, "csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ConfigError(f"csv file {path!r} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    label = _get(cfg, "label_column", None) or header[-1]
    if label not in header:
        raise ConfigError(f"csv file {path!r} has no column {label!r}; columns: {header}")
    col = header.index(label)
    features = [i for i in range(len(header)) if i != col]
    try:
        x = np.array([[float(r[i]) for i in features] for r in body], np.float32)
    except (ValueError, IndexError) as e:
        raise ConfigError(f"csv file {path!r}: feature columns must be numbers ({e})") from e
    raw = [r[col] for r in body]
    info = {"file": path, "label_column": label, "feature_columns": [header[i] for i in features]}
    kind = _get(cfg, "kind", None)
    try:
        values = np.array([float(v) for v in raw])
    except ValueError:
        values = None
    if values is None or kind == "classification":
        if values is not None and np.all(values == np.round(values)):
            y = values.astype(np.int32)
            return Source(x, y, "classification", int(y.max()) + 1, info=info)
        classes = sorted(set(raw))
        y = np.array([classes.index(v) for v in raw], np.int32)
        info["classes"] = classes
        return Source(x, y, "classification", len(classes), info=info)
    if kind is None:
        kind = "classification" if np.all(values == np.round(values)) else "regression"
    if kind == "classification":
        y = values.astype(np.int32)
        return Source(x, y, kind, int(y.max()) + 1, info=info)
    return Source(x, values.astype(np.float32), "regression", info=info)


SOURCES: dict[str, Callable[..., Source]] = {
    "digits": _sklearn_bundled("load_digits", "classification", image=True),
    "iris": _sklearn_bundled("load_iris", "classification"),
    "breast_cancer": _sklearn_bundled("load_breast_cancer", "classification"),
    "wine": _sklearn_bundled("load_wine", "classification"),
    "diabetes": _sklearn_bundled("load_diabetes", "regression"),
    "xor": _logic_gate("xor"),
    "and": _logic_gate("and"),
    "or": _logic_gate("or"),
    "moons": _moons,
    "circles": _circles,
    "spirals": _spirals,
    "synthetic": _synthetic,
    "conv_pairs": _conv_pairs,
    "shapes": make_shapes_source,
    "karate": load_karate,
    "citation_synthetic": load_citation_synthetic,
    "digits_grid": load_digits_grid,
    "graphs_synthetic": load_graphs_synthetic,
    "subproblems": load_subproblems,
    "sine": sequences.sine,
    "addition": sequences.addition,
    "dates": sequences.dates,
    "sequential_digits": sequences.sequential_digits,
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_image_folder(path: str, cfg=None) -> Source:
    """Images in one sub-folder per class, read with Pillow.

    Class ids follow the sorted sub-folder names (stored in info["classes"]).
    `dataset.image_size` resizes every image to a square of that size;
    without it all images must have the same size. `dataset.channels` (1 or
    3) converts to grayscale or RGB; without it the first image decides.

    Args:
      path: the folder.
      cfg: dataset config.

    Returns:
      The Source, x [examples, H, W, C] float32 in [0, 1].
    """
    from PIL import Image, UnidentifiedImageError

    if not path or not os.path.isdir(path):
        raise ConfigError(f"image folder not found: {path!r}")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ConfigError(f"image folder {path!r} has no class sub-folders")
    size = int(_get(cfg, "image_size", 0) or 0)
    channels = int(_get(cfg, "channels", 0) or 0)
    if channels not in (0, 1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {channels}")
    images, labels, shape = [], [], None
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise ConfigError(
                f"class folder {folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        for f in files:
            file = os.path.join(folder, f)
            try:
                with Image.open(file) as im:
                    if not channels:
                        channels = 1 if im.mode in ("L", "1", "I", "F") else 3
                    im = im.convert("L" if channels == 1 else "RGB")
                    if size:
                        im = im.resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as e:
                raise ConfigError(f"cannot read image {file!r}: {e}") from e
            arr = arr.reshape(arr.shape[0], arr.shape[1], channels)
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise ConfigError(
                    f"image {file!r} has shape {arr.shape}, the others {shape}; "
                    "set dataset.image_size to resize them all"
                )
            images.append(arr)
            labels.append(label)
    return Source(
        np.stack(images),
        np.asarray(labels, np.int32),
        "classification",
        len(classes),
        info={"folder": path, "classes": classes},
    )


FILE_SOURCES: dict[str, Callable[..., Source]] = {
    "npz": load_npz,
    "csv": load_csv,
    "images": load_image_folder,
    "detection_npz": load_detection_npz,
    "graph_npz": load_graph_npz,
    "text": sequences.load_text,
}


def load_source(cfg) -> Source:
    """Loads the examples that `cfg.name` names.

    Args:
      cfg: the dataset config; `name` is a key of SOURCES or `npz:PATH` /
        `csv:PATH`.

    Returns:
      The Source.
    """
    name = cfg.name
    if ":" in name:
        prefix, path = name.split(":", 1)
        if prefix not in FILE_SOURCES:
            raise unknown_name("dataset file type", prefix, FILE_SOURCES)
        return FILE_SOURCES[prefix](path, cfg)
    if name not in SOURCES:
        raise unknown_name("dataset", name, list(SOURCES) + [f"{p}:PATH" for p in FILE_SOURCES])
    return SOURCES[name](cfg)
