"""A figure of images with their predicted and true boxes."""

from __future__ import annotations

import os

import numpy as np

from dl.errors import ConfigError

LINE_WIDTH = 2.0
DASHES = (0, (3, 2))  # true boxes: class-coloured dashes over a white line


def _displayable(image: np.ndarray) -> np.ndarray:
    """One image [H, W, C] as [H, W] or [H, W, 3] in [0, 1] (min-max scaled when outside)."""
    if image.min() < 0 or image.max() > 1:
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    return image[..., 0] if image.shape[-1] == 1 else image


def _true_boxes(true: dict, k: int) -> list[tuple[np.ndarray, int | None]]:
    """(box, class or None) of the real objects of image k."""
    rows = np.flatnonzero(np.asarray(true["box_mask"][k]) > 0)
    classes = [int(true["y"][k][j]) if "y" in true else None for j in rows]
    return [(np.asarray(true["boxes"][k][j]), c) for j, c in zip(rows, classes, strict=True)]


def _predicted_boxes(pred: dict, k: int, min_score: float) -> list[tuple[np.ndarray, int, float]]:
    """(box, class, score) of the valid predictions of image k scoring at least min_score."""
    out = []
    for j in range(len(pred["scores"][k])):
        score = float(pred["scores"][k][j])
        if pred["valid"][k][j] and score >= min_score:
            out.append((np.asarray(pred["boxes"][k][j]), int(pred["classes"][k][j]), score))
    return out


def _add_box(ax, box, size, colour, label: str, *, dashed: bool) -> None:
    """Draws one box (normalised coordinates) and its label.

    A predicted box is a solid line over a wider dark one, labelled above; a
    true box (`dashed`) is dashes over a white line, labelled below.
    """
    from matplotlib import patches  # slow to import: loaded when a figure is drawn

    h, w = size
    x0, y0, x1, y1 = np.asarray(box, np.float64) * [w, h, w, h]

    def rectangle(colour, width, **style):
        ax.add_patch(
            patches.Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor=colour,
                linewidth=width,
                snap=False,
                **style,
            )
        )

    if dashed:
        rectangle("white", LINE_WIDTH)
        rectangle(colour, LINE_WIDTH, linestyle=DASHES)
    else:
        rectangle("black", LINE_WIDTH + 1.2)
        rectangle(colour, LINE_WIDTH)
    ax.text(
        x0,
        y1 if dashed else y0,
        label,
        color="white",
        fontsize=7,
        va="top" if dashed else "bottom",
        bbox={"facecolor": colour, "edgecolor": "white" if dashed else "black", "pad": 1.2},
        clip_on=True,
    )


def _legend(fig, colours, name, classes: list[int]) -> None:
    """Line styles (predicted solid, true dashed) and the colour of every class drawn."""
    from matplotlib.lines import Line2D  # slow to import: loaded when a figure is drawn

    handles = [
        Line2D([], [], color="black", linewidth=LINE_WIDTH, label="predicted (with score)"),
        Line2D(
            [],
            [],
            color="black",
            gapcolor="white",
            linewidth=LINE_WIDTH,
            linestyle=DASHES,
            label="true",
        ),
    ]
    handles += [Line2D([], [], color=colours(c % 10), linewidth=6, label=name(c)) for c in classes]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        frameon=False,
        fontsize=8,
        handlelength=2.6,
    )


def draw_detections(
    images,
    pred: dict,
    true: dict,
    path: str,
    class_names=None,
    *,
    max_images: int = 8,
    min_score: float = 0.2,
    columns: int = 4,
) -> str:
    """Saves a PNG of images with predicted and true boxes.

    Every box has its class's colour (matplotlib's tab10); predictions are
    solid and labelled above with class name and score, true boxes dashed
    and labelled below with their class (white when `true` has no "y").
    A legend under the images names the line styles and the classes.

    Args:
      images: [n, H, W, C] or [n, H, W] (values outside [0, 1], e.g.
        standardized, are min-max scaled per image).
      pred: boxes [n, K, 4], scores [n, K], classes [n, K], valid [n, K]
        (as from `Detection.predictions`).
      true: boxes [n, M, 4] and box_mask [n, M], and optionally y [n, M].
      path: the PNG to write.
      class_names: names of the classes (default: their ids).
      max_images: draws the first this many images.
      min_score: predictions scoring below this are not drawn.
      columns: images per row.

    Returns:
      The path written.
    """
    from matplotlib import colormaps  # slow to import: loaded when a figure is drawn
    from matplotlib.figure import Figure  # slow to import: loaded when a figure is drawn

    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]  # [n, H, W, 1]
    n = min(len(images), max_images)
    if n == 0:
        raise ConfigError("draw_detections needs at least one image")
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3 * cols, 3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    colours = colormaps["tab10"]

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    drawn: set[int] = set()
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = _displayable(images[k])
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        size = image.shape[:2]
        for box, c in _true_boxes(true, k):
            colour = "white" if c is None else colours(c % 10)
            label = "true" if c is None else name(c)
            _add_box(ax, box, size, colour, label, dashed=True)
            drawn.update([] if c is None else [c])
        for box, c, score in _predicted_boxes(pred, k, min_score):
            _add_box(ax, box, size, colours(c % 10), f"{name(c)} {score:.2f}", dashed=False)
            drawn.add(c)
    _legend(fig, colours, name, sorted(drawn))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


__all__ = ["draw_detections"]
