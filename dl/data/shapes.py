"""Detection data: a synthetic shapes set generated from a seed, and user `.npz` files.

Every detection Source has fixed-shape per-example fields, so batches can be
gathered by index like any other dataset:

  x: images [examples, height, width, channels], float32 in [0, 1].
  y: class ids [examples, max_objects], int32, padded with -1.
  extra["boxes"]: [examples, max_objects, 4] float32, (x_min, y_min, x_max,
    y_max) normalised by the image width and height to [0, 1]; padding boxes
    are zeros.
  extra["box_mask"]: [examples, max_objects] float32, 1 for a real object.

Training targets (which grid cell and predictor is responsible for an
object) are computed from these by the detection task, so the grid size is a
choice of the model alone.
"""

from __future__ import annotations

import numpy as np

from dl.boxes import box_area, box_intersection
from dl.config import option
from dl.data.source import Source, read_npz
from dl.errors import ConfigError

SHAPE_CLASSES = ("circle", "square", "triangle")


def _shape_mask(kind: int, cx: float, cy: float, size: float, rows, cols) -> np.ndarray:
    """Pixels whose centres fall inside a shape.

    Args:
      kind: 0 circle (diameter `size`), 1 axis-aligned square (side `size`),
        2 upright isosceles triangle (base and height `size`).
      cx, cy: the shape's centre, in pixels.
      size: the shape's extent, in pixels.
      rows, cols: pixel-centre coordinates, broadcastable to [height, width].

    Returns:
      bool [height, width].
    """
    half = size / 2.0
    dx, dy = cols - cx, rows - cy
    if kind == 0:
        return dx**2 + dy**2 <= half**2
    if kind == 1:
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Apex at (cx, cy - half), base at y = cy + half; the half-width grows
    # by 1/2 pixel per pixel of descent.
    depth = dy + half
    return (depth >= 0) & (dy <= half) & (np.abs(dx) <= depth / 2.0)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area, for boxes (x_min, y_min, x_max, y_max)."""
    return float(box_intersection(a, b) / min(box_area(a), box_area(b)))


def _place(rng, placed: list, side: int, sizes: tuple, max_overlap: float, rows, cols):
    """Draws a shape that overlaps the placed boxes by at most `max_overlap` (50 tries).

    Returns:
      (class id, pixel mask [side, side], box (x_min, y_min, x_max, y_max) in
      pixels), or None when every try overlapped too much.
    """
    for _attempt in range(50):
        kind = int(rng.integers(0, len(SHAPE_CLASSES)))
        size = float(rng.uniform(*sizes)) * side
        cx = float(rng.uniform(size / 2, side - size / 2))
        cy = float(rng.uniform(size / 2, side - size / 2))
        mask = _shape_mask(kind, cx, cy, size, rows, cols)  # [side, side]
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        if all(_overlap(box, other) <= max_overlap for other in placed):
            return kind, mask, box
    return None


def _colour(rng, background: np.ndarray, min_contrast: float) -> np.ndarray:
    """An RGB colour at least `min_contrast` from the background (else its far corner)."""
    for _attempt in range(100):
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        if np.linalg.norm(colour - background) >= min_contrast:
            return colour
    return np.where(background < 0.5, 1.0, 0.0).astype(np.float32)


def _check_sizes(min_objects, max_objects, min_size, max_size, image_size) -> None:
    """Refuses object counts and sizes that cannot be drawn, naming the fields."""
    if not 1 <= min_objects <= max_objects:
        raise ConfigError(
            f"dataset needs 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}"
        )
    if not 0.0 < min_size <= max_size <= 1.0:
        raise ConfigError(
            f"dataset needs 0 < min_size <= max_size <= 1 (fractions of the image side), "
            f"got {min_size}, {max_size}"
        )
    if min_size * image_size < 3:
        raise ConfigError(
            f"dataset.min_size={min_size} gives objects of {min_size * image_size:.1f} "
            f"pixels on a {image_size}-pixel image; use at least 3 pixels"
        )


def generate_shapes(
    num_samples: int,
    *,
    image_size: int = 64,
    min_objects: int = 1,
    max_objects: int = 4,
    min_size: float = 0.15,
    max_size: float = 0.4,
    max_overlap: float = 0.2,
    noise: float = 0.03,
    min_contrast: float = 0.5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Generates images of circles, squares and triangles with their boxes.

    Each image has a plain background of a random colour, plus Gaussian pixel
    noise of std `noise` (0 for a plain background). Objects get a random
    class, size, position (fully inside the image) and colour (at least
    `min_contrast` in RGB distance from the background). A placement that
    would cover more than `max_overlap` of the smaller of two boxes is
    redrawn; after 50 failed draws the image keeps fewer objects (never
    fewer than one). Later objects are drawn over earlier ones.

    Each box is the tight box of the pixels the shape covers before any
    occlusion, so every drawn pixel of an object lies inside its box.

    Args:
      num_samples: number of images.
      image_size: side of the square canvas, in pixels.
      min_objects, max_objects: range of objects per image (inclusive).
      min_size, max_size: range of object sizes, as fractions of image_size.
      max_overlap: largest allowed intersection over the smaller box's area.
      noise: std of the background-and-object pixel noise.
      min_contrast: least RGB distance between object and background colours
        (the corner of the colour cube farthest from the background after 100
        failed draws).
      seed: the generator's seed; equal arguments give equal arrays.

    Returns:
      x [N, image_size, image_size, 3] float32 in [0, 1]; y [N, max_objects]
      int32 (-1 padding); boxes [N, max_objects, 4] float32 normalised;
      box_mask [N, max_objects] float32.
    """
    _check_sizes(min_objects, max_objects, min_size, max_size, image_size)
    rng = np.random.default_rng(seed)
    n, side = int(num_samples), int(image_size)
    x = np.empty((n, side, side, 3), np.float32)
    y = np.full((n, max_objects), -1, np.int32)
    boxes = np.zeros((n, max_objects, 4), np.float32)
    box_mask = np.zeros((n, max_objects), np.float32)
    centres = np.arange(side, dtype=np.float32) + 0.5
    rows, cols = centres[:, None], centres[None, :]  # [side, 1], [1, side]
    for i in range(n):
        background = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        image = np.broadcast_to(background, (side, side, 3)).copy()  # [side, side, 3]
        wanted = int(rng.integers(min_objects, max_objects + 1))
        placed: list[np.ndarray] = []
        for _ in range(wanted):
            drawn = _place(rng, placed, side, (min_size, max_size), max_overlap, rows, cols)
            if drawn is None:
                continue
            kind, mask, box = drawn
            colour = _colour(rng, background, min_contrast)
            image[mask] = colour
            k = len(placed)
            placed.append(box)
            y[i, k] = kind
            boxes[i, k] = box / side
            box_mask[i, k] = 1.0
        if noise > 0:
            image += noise * rng.standard_normal(image.shape, dtype=np.float32)
        x[i] = np.clip(image, 0.0, 1.0)
    return {"x": x, "y": y, "boxes": boxes, "box_mask": box_mask}


def make_shapes_source(cfg) -> Source:
    """The synthetic shapes detection set (dataset name "shapes").

    Args:
      cfg: dataset config (dict-like with `.get`): num_samples (2000),
        image_size (64), min_objects (1), max_objects (4), min_size (0.15),
        max_size (0.4), max_overlap (0.2), noise (0.03), min_contrast (0.5),
        seed (0). See `generate_shapes`.

    Returns:
      Source(kind="detection", num_classes=3) with extra fields boxes and
      box_mask; info["class_names"] names the classes.
    """
    fields = dict(
        image_size=int(option(cfg, "image_size", 64)),
        min_objects=int(option(cfg, "min_objects", 1)),
        max_objects=int(option(cfg, "max_objects", 4)),
        min_size=float(option(cfg, "min_size", 0.15)),
        max_size=float(option(cfg, "max_size", 0.4)),
        max_overlap=float(option(cfg, "max_overlap", 0.2)),
        noise=float(option(cfg, "noise", 0.03)),
        min_contrast=float(option(cfg, "min_contrast", 0.5)),
        seed=int(option(cfg, "seed", 0)),
    )
    num_samples = int(option(cfg, "num_samples", 2000))
    if num_samples < 1:
        raise ConfigError(f"dataset.num_samples must be >= 1, got {num_samples}")
    data = generate_shapes(num_samples, **fields)
    info = {
        "source": "generated shapes",
        "class_names": list(SHAPE_CLASSES),
        "box_format": "x_min, y_min, x_max, y_max normalised to [0, 1]",
        **fields,
    }
    return Source(
        data["x"],
        data["y"],
        "detection",
        len(SHAPE_CLASSES),
        info=info,
        extra={"boxes": data["boxes"], "box_mask": data["box_mask"]},
    )


def validate_boxes(
    boxes: np.ndarray, box_mask: np.ndarray, image_shape, *, normalized: bool = True
) -> None:
    """Checks that every real box lies inside its image and has positive size.

    Args:
      boxes: [examples, max_objects, 4] as (x_min, y_min, x_max, y_max).
      box_mask: [examples, max_objects], nonzero for real boxes.
      image_shape: (height, width, ...) of one image.
      normalized: boxes are fractions of the image size (else pixels).

    Raises:
      ConfigError: naming the first bad example index and box index.
    """
    boxes = np.asarray(boxes, np.float64)
    box_mask = np.asarray(box_mask)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ConfigError(
            f"boxes must have shape [examples, max_objects, 4], got {tuple(boxes.shape)}"
        )
    if box_mask.shape != boxes.shape[:2]:
        raise ConfigError(
            f"box mask shape {tuple(box_mask.shape)} does not match boxes {tuple(boxes.shape[:2])}"
        )
    height, width = int(image_shape[0]), int(image_shape[1])
    limit = np.array([1.0, 1.0]) if normalized else np.array([width, height], np.float64)
    units = "normalised to [0, 1]" if normalized else "in pixels"
    tol = 1e-6 * limit
    real = box_mask > 0
    finite = np.all(np.isfinite(boxes), axis=-1)
    positive = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    inside = np.all(boxes[..., :2] >= -tol, axis=-1) & np.all(boxes[..., 2:] <= limit + tol, -1)
    for check, problem in (
        (finite, "has non-finite coordinates"),
        (positive, "has non-positive width or height"),
        (inside, f"lies outside the {height}x{width} image"),
    ):
        bad = np.argwhere(real & ~check)
        if len(bad):
            i, j = (int(v) for v in bad[0])
            coords = ", ".join(f"{v:g}" for v in boxes[i, j])
            raise ConfigError(
                f"example {i}, box {j}: (x_min, y_min, x_max, y_max) = ({coords}) {units} "
                f"{problem}" + (f" ({len(bad)} bad boxes in all)" if len(bad) > 1 else "")
            )


def load_detection_npz(path: str, cfg=None) -> Source:
    """Loads a detection set from an `.npz` file.

    The file holds `x` [examples, height, width, channels] (or without the
    channel axis; uint8 images are scaled by 1/255), `boxes` [examples,
    max_objects, 4] as (x_min, y_min, x_max, y_max) and `labels` [examples,
    max_objects] integer class ids, -1 marking padding. It may hold
    `class_names`.

    Args:
      path: the file.
      cfg: dataset config: box_units ("normalized", the default, or
        "pixels"), num_classes (default: the largest label + 1).

    Returns:
      Source(kind="detection") with boxes normalised to [0, 1].

    Raises:
      ConfigError: for a missing or unreadable file, missing arrays, mismatched
        shapes, or boxes outside their image (naming example and box).
    """
    arrays = read_npz(path, "detection_npz", required=("x", "boxes", "labels"))
    x, boxes, labels = (arrays[k] for k in ("x", "boxes", "labels"))
    names = [str(s) for s in arrays["class_names"]] if "class_names" in arrays else None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ConfigError(
            f"detection npz {path!r}: x must be [examples, height, width, channels], got {x.shape}"
        )
    if labels.ndim != 2 or boxes.shape[:2] != labels.shape or len(labels) != len(x):
        raise ConfigError(
            f"detection npz {path!r}: need boxes [examples, max_objects, 4] and labels "
            f"[examples, max_objects] with {len(x)} examples; got boxes {boxes.shape}, "
            f"labels {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"detection npz {path!r}: labels must be integers, got {labels.dtype}")
    box_mask = (labels >= 0).astype(np.float32)
    units = option(cfg, "box_units", "normalized")
    if units not in ("normalized", "pixels"):
        raise ConfigError(f"dataset.box_units must be 'normalized' or 'pixels', got {units!r}")
    validate_boxes(boxes, box_mask, x.shape[1:], normalized=units == "normalized")
    boxes = boxes.astype(np.float32)
    if units == "pixels":
        boxes = boxes / np.array([x.shape[2], x.shape[1]] * 2, np.float32)
    boxes = np.where(box_mask[..., None] > 0, boxes, 0.0).astype(np.float32)
    num_classes = option(cfg, "num_classes", None)
    num_classes = int(num_classes) if num_classes else int(max(labels.max(), 0)) + 1
    if labels.max() >= num_classes:
        raise ConfigError(
            f"detection npz {path!r}: label {int(labels.max())} but dataset.num_classes is "
            f"{num_classes}"
        )
    images = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    info = {"file": path, "class_names": names or [str(c) for c in range(num_classes)]}
    return Source(
        images,
        np.where(labels >= 0, labels, -1).astype(np.int32),
        "detection",
        num_classes,
        info=info,
        extra={"boxes": boxes, "box_mask": box_mask},
    )
