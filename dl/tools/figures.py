"""Figures written into workdirs: confusion matrices, conv kernels, feature maps.

Matplotlib runs on the Agg backend: no display is needed.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def save_confusion(cm: np.ndarray, stem: str, class_names=None, title: str = "") -> None:
    """Writes stem.json (counts, per-class recall and precision) and stem.png."""
    names = [str(c) for c in (class_names or range(len(cm)))]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(cm) / cm.sum(1)
        precision = np.diag(cm) / cm.sum(0)
    with open(stem + ".json", "w") as f:
        json.dump(
            {
                "classes": names,
                "counts": cm.tolist(),
                "recall": [None if np.isnan(r) else float(r) for r in recall],
                "precision": [None if np.isnan(p) else float(p) for p in precision],
            },
            f,
            indent=2,
        )
    k = len(cm)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 1.0 + 0.5 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=100)
    plt.close(fig)


def save_kernels(kernel: np.ndarray, path: str, title: str = "first-layer kernels") -> None:
    """Draws conv kernels [kh, kw, in, out] as a grid of images (channel mean for RGB)."""
    kernel = np.asarray(kernel, np.float32)
    tiles = kernel.mean(axis=2) if kernel.shape[2] != 3 else kernel  # [kh, kw, (3,) out]
    n = kernel.shape[-1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            tile = tiles[..., i]
            lo, hi = tile.min(), tile.max()
            ax.imshow(
                (tile - lo) / (hi - lo + 1e-12),
                cmap=None if tile.ndim == 3 else "gray",
                interpolation="nearest",
            )
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_feature_maps(
    image: np.ndarray, maps: np.ndarray, path: str, title: str = "feature maps of the first layer"
) -> None:
    """Draws one input image [H, W, C] and its feature maps [h, w, channels]."""
    n = maps.shape[-1]
    cols = int(np.ceil(np.sqrt(n + 1)))
    rows = int(np.ceil((n + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i == 0:
            shown = image[..., 0] if image.shape[-1] == 1 else image
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            ax.set_title("input", fontsize=7)
        elif i <= n:
            ax.imshow(maps[..., i - 1], cmap="viridis")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_kernel_pair(true_kernel: np.ndarray, learned: np.ndarray, path: str) -> None:
    """The true and the learned 2-D kernel side by side, with their values."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, k, name in zip(axes, (true_kernel, learned), ("true", "learned"), strict=True):
        ax.imshow(
            k,
            cmap="coolwarm",
            vmin=-np.abs(true_kernel).max() - 1e-9,
            vmax=np.abs(true_kernel).max() + 1e-9,
        )
        for (i, j), v in np.ndenumerate(k):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{name} kernel")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def first_conv_kernel(params) -> tuple[tuple[str, ...], np.ndarray] | None:
    """(module path, kernel [kh, kw, in, out]) of the first 4-D kernel in creation order."""

    def walk(tree, path):
        for key, value in tree.items():
            if isinstance(value, dict):
                found = walk(value, (*path, key))
                if found:
                    return found
            elif key == "kernel" and np.ndim(value) == 4:
                return path, np.asarray(value)
        return None

    return walk(dict(params), ())


def save_conv_figures(model, variables, image: np.ndarray, stem: str) -> list[str]:
    """Writes the first conv layer's kernels and its feature maps of one input.

    Args:
      model: a flax module with a conv layer.
      variables: its variables.
      image: one input [H, W, C].
      stem: path prefix; writes STEM_kernels.png and STEM_feature_maps.png.

    Returns:
      The files written (none if the model has no conv layer).
    """
    found = first_conv_kernel(variables["params"])
    if found is None:
        return []
    path, kernel = found
    save_kernels(kernel, stem + "_kernels.png", f"first-layer kernels ({'/'.join(path)})")
    _, state = model.apply(
        variables, image[None], train=False, capture_intermediates=True, mutable=["intermediates"]
    )
    node = state["intermediates"]
    for key in path:
        node = node[key]
    maps = np.asarray(node["__call__"][0][0])  # [h, w, channels]
    save_feature_maps(
        np.asarray(image),
        maps,
        stem + "_feature_maps.png",
        f"{'/'.join(path)} outputs for one input",
    )
    return [stem + "_kernels.png", stem + "_feature_maps.png"]
