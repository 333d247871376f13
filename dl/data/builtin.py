"""Built-in datasets: scikit-learn's bundled sets, truth tables and seeded generators.

Nothing here downloads: the bundled sets are the ones scikit-learn ships, and
the rest are generated from a seed. Each loader takes the dataset config and
returns a `Source`; `dl.data.sources` names them.
"""

from __future__ import annotations

import jax
import numpy as np

from dl.config import option
from dl.data.bundled import load as load_bundled
from dl.data.source import Source
from dl.errors import ConfigError


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of images [examples, H, W, C] to [examples, size, size, C]."""
    if x.shape[1:3] == (size, size):
        return x
    out = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), method="bilinear")
    return np.asarray(out, np.float32)


def sklearn_bundled(loader_name: str, kind: str, image: bool = False):
    def load(cfg) -> Source:
        data, target = load_bundled(loader_name)
        info = {"source": f"sklearn.{loader_name}"}
        if image:
            x = data.reshape(-1, 8, 8, 1).astype(np.float32)  # [examples, 8, 8, 1]
            size = int(option(cfg, "image_size", 0) or 0)
            if size:
                # New raw images are resized the same way (dl.data.Preprocessing).
                info["resize"] = {"method": "bilinear", "size": size, "from": list(x.shape[1:])}
                x = resize_images(x, size)  # [examples, size, size, 1]
        else:
            x = data.astype(np.float32)
        if kind == "classification":
            y = target.astype(np.int32)
            return Source(x, y, kind, int(y.max()) + 1, info=info)
        y = target.astype(np.float32)
        return Source(x, y, kind, info=info)

    return load


_TRUTH_TABLES = {
    "and": np.array([0, 0, 0, 1], np.int32),
    "or": np.array([0, 1, 1, 1], np.int32),
    "xor": np.array([0, 1, 1, 0], np.int32),
}


def logic_gate(gate: str):
    def load(cfg) -> Source:
        corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        table = _TRUTH_TABLES[gate]
        n = int(option(cfg, "num_samples", 0))
        if n <= 0:
            # The truth table itself: four points, and every split is all four.
            every = np.arange(4)
            splits = {"train": every, "validation": every, "test": every}
            return Source(corners, table, "classification", 2, splits, {"points": "truth table"})
        rng = np.random.default_rng(int(option(cfg, "seed", 0)))
        corner = rng.integers(0, 4, size=n)
        noise = float(option(cfg, "noise", 0.1))
        x = corners[corner] + noise * rng.standard_normal((n, 2)).astype(np.float32)
        return Source(
            x.astype(np.float32),
            table[corner],
            "classification",
            2,
            info={"points": f"{n} noisy samples", "noise": noise},
        )

    return load


def moons(cfg) -> Source:
    from sklearn.datasets import make_moons  # heavy (scipy): imported when used

    x, y = make_moons(
        n_samples=int(option(cfg, "num_samples", 1000)),
        noise=float(option(cfg, "noise", 0.2)),
        random_state=int(option(cfg, "seed", 0)),
    )
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", 2)


def circles(cfg) -> Source:
    from sklearn.datasets import make_circles  # heavy (scipy): imported when used

    x, y = make_circles(
        n_samples=int(option(cfg, "num_samples", 1000)),
        noise=float(option(cfg, "noise", 0.1)),
        factor=float(option(cfg, "factor", 0.5)),
        random_state=int(option(cfg, "seed", 0)),
    )
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", 2)


def spirals(cfg) -> Source:
    """Interleaved spirals, one arm per class."""
    n = int(option(cfg, "num_samples", 1000))
    arms = int(option(cfg, "num_classes", 2))
    noise = float(option(cfg, "noise", 0.2))
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    y = np.arange(n) % arms
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi  # angle along the arm
    phase = 2.0 * np.pi * y / arms
    x = np.stack([t * np.cos(t + phase), t * np.sin(t + phase)], axis=1) / (3.0 * np.pi)
    x = x + noise / (3.0 * np.pi) * rng.standard_normal((n, 2))
    return Source(x.astype(np.float32), y.astype(np.int32), "classification", arms)


def synthetic(cfg) -> Source:
    """Random inputs of any shape with class labels from a random linear teacher.

    Fields: num_samples, feature_shape (e.g. (784,) or (224, 224, 3)),
    num_classes, seed. Used for benchmarks and smoke runs at a model's
    published input size; the labels are learnable but the task is not meant
    to be meaningful.
    """
    n = int(option(cfg, "num_samples", 1024))
    shape = tuple(int(d) for d in option(cfg, "feature_shape", (784,)))
    classes = int(option(cfg, "num_classes", 10))
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    teacher = rng.standard_normal((int(np.prod(shape)), classes), dtype=np.float32)
    y = np.argmax(x.reshape(n, -1) @ teacher, axis=1).astype(np.int32)
    return Source(x, y, "classification", classes, info={"source": "synthetic"})


SEED_KERNEL = ((1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0))  # the lecture's kernel


def conv_pairs(cfg) -> Source:
    """Random binary images and their cross-correlation with a known kernel.

    Fields: num_samples, image_size, kernel (rows of a square kernel; default
    the lecture's [[1,0,1],[0,1,0],[1,0,1]]), noise (std of noise added to the
    outputs), seed. x [N, size, size, 1]; y the VALID output, flattened.
    """
    n = int(option(cfg, "num_samples", 512))
    size = int(option(cfg, "image_size", 10))
    kernel = np.asarray(option(cfg, "kernel", SEED_KERNEL), np.float32)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ConfigError(f"dataset.kernel must be a square matrix, got shape {kernel.shape}")
    k = kernel.shape[0]
    if size <= k:
        raise ConfigError(f"dataset.image_size {size} must exceed the kernel size {k}")
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    x = rng.integers(0, 2, (n, size, size)).astype(np.float32)
    out = size - k + 1
    y = np.zeros((n, out, out), np.float32)
    for i in range(k):
        for j in range(k):
            y += kernel[i, j] * x[:, i : i + out, j : j + out]
    y += float(option(cfg, "noise", 0.0)) * rng.standard_normal(y.shape).astype(np.float32)
    return Source(
        x[..., None],
        y.reshape(n, -1),
        "regression",
        info={"kernel": kernel.tolist(), "source": "conv_pairs"},
    )
