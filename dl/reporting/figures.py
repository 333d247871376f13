"""Figures written into workdirs: confusion matrices, conv kernels, feature maps.

Drawn with `matplotlib.figure.Figure`, which needs no backend (savefig
renders PNGs with Agg) and leaves the backend of a notebook or a script alone.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Inches per character of an 8-point tick label, to leave room for class names.
_CHAR_INCHES = 0.075


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class].

    Example:
      >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
      [[1, 0], [1, 1]]
    """
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def save_confusion(cm: np.ndarray, stem: str, class_names=None, title: str = "") -> None:
    """Writes stem.json (counts, per-class recall and precision) and stem.png.

    The figure grows with the number of classes and the length of their
    names; long names on the x axis are rotated, and each cell shows its
    count while there are at most 30 classes.
    """
    from matplotlib.figure import Figure  # slow to import: loaded when a figure is drawn

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
    cell = 0.5 if k <= 12 else max(0.2, 6.0 / k)  # inches per matrix cell
    label = _CHAR_INCHES * max(len(n) for n in names)
    rotate = label > 0.9 * cell  # x tick labels wider than their cell
    width = max(4.5, cell * k + label + 2.0)  # matrix, y labels, axis label, colour bar
    height = max(3.8, cell * k + (0.75 * label if rotate else 0.2) + 1.3)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    if k <= 30:
        fontsize = 9 if k <= 12 else 7
        for (i, j), count in np.ndenumerate(cm):
            color = "white" if count > cm.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=fontsize, color=color)
    ticks = range(k)
    if rotate:
        ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(ticks, names, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="examples", shrink=0.8)
    fig.savefig(stem + ".png", dpi=100)


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def _tile_figure(n: int, tile: float) -> tuple[Figure, list]:
    """A figure of n square tiles with room for titles and a colour bar on the right."""
    from matplotlib.figure import Figure  # slow to import: loaded when a figure is drawn

    rows, cols = _grid(n)
    fig = Figure(
        figsize=(max(4.0, cols * tile + 1.3), max(3.0, rows * (tile + 0.2) + 0.7)),
        layout="constrained",
    )
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.axis("off")
    return fig, axes


def save_kernels(kernel: np.ndarray, path: str, title: str = "first-layer kernels") -> None:
    """Draws conv kernels [kh, kw, in, out] as a grid of tiles, one per output channel.

    Every tile is on one scale, symmetric about 0, shown by the colour bar:
    kernels over 3 input channels are drawn as RGB (mid-grey is 0 in each
    colour), others as the mean over their input channels (blue negative, red
    positive). Each tile is titled with its output channel's index.
    """
    from matplotlib import colormaps  # slow to import: loaded when a figure is drawn
    from matplotlib.cm import ScalarMappable  # slow to import: loaded when a figure is drawn
    from matplotlib.colors import Normalize  # slow to import: loaded when a figure is drawn

    kernel = np.asarray(kernel, np.float32)
    n, rgb = kernel.shape[-1], kernel.shape[2] == 3
    tiles = kernel if rgb else kernel.mean(axis=2)  # [kh, kw, (3,) out]
    limit = float(np.abs(tiles).max()) or 1.0
    norm = Normalize(-limit, limit)
    fig, axes = _tile_figure(n, 0.9)
    for i in range(n):
        if rgb:
            axes[i].imshow(0.5 + 0.5 * tiles[..., i] / limit, interpolation="nearest")
        else:
            axes[i].imshow(tiles[..., i], cmap="coolwarm", norm=norm, interpolation="nearest")
        axes[i].set_title(str(i), fontsize=7, pad=2)
    if rgb:
        label = "weight (each of R, G, B)"
    elif kernel.shape[2] > 1:
        label = f"weight (mean over {kernel.shape[2]} input channels)"
    else:
        label = "weight"
    mappable = ScalarMappable(norm, colormaps["gray" if rgb else "coolwarm"])
    fig.colorbar(mappable, ax=axes, label=label, shrink=0.8)
    fig.suptitle(f"{title}: output channels")
    fig.savefig(path, dpi=100)


def save_feature_maps(
    image: np.ndarray, maps: np.ndarray, path: str, title: str = "feature maps of the first layer"
) -> None:
    """Draws one input image [H, W, C] and its feature maps [h, w, channels].

    The maps share one colour scale (the colour bar), so the tiles show
    which channels respond most; each is titled with its channel's index.
    """
    from matplotlib import colormaps  # slow to import: loaded when a figure is drawn
    from matplotlib.cm import ScalarMappable  # slow to import: loaded when a figure is drawn
    from matplotlib.colors import Normalize  # slow to import: loaded when a figure is drawn

    maps = np.asarray(maps, np.float32)
    n = maps.shape[-1]
    norm = Normalize(float(maps.min()), float(maps.max()))
    fig, axes = _tile_figure(n + 1, 1.1)
    shown = np.asarray(image, np.float32)
    if shown.shape[-1] == 1:
        axes[0].imshow(shown[..., 0], cmap="gray")
    else:  # RGB on [0, 1], whatever the input's standardization
        axes[0].imshow((shown - shown.min()) / (np.ptp(shown) + 1e-12))
    axes[0].set_title("input", fontsize=7, pad=2)
    for i in range(n):
        axes[i + 1].imshow(maps[..., i], cmap="viridis", norm=norm)
        axes[i + 1].set_title(str(i), fontsize=7, pad=2)
    fig.colorbar(ScalarMappable(norm, colormaps["viridis"]), ax=axes, label="output", shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def save_kernel_pair(true_kernel: np.ndarray, learned: np.ndarray, path: str) -> None:
    """The true and the learned 2-D kernel side by side, with their values."""
    from matplotlib.figure import Figure  # slow to import: loaded when a figure is drawn

    limit = float(np.abs(true_kernel).max()) + 1e-9
    fig = Figure(figsize=(6, 3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, k, name in zip(axes, (true_kernel, learned), ("true", "learned"), strict=True):
        ax.imshow(k, cmap="coolwarm", vmin=-limit, vmax=limit)
        for (i, j), v in np.ndenumerate(k):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{name} kernel")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=100)


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
