"""YOLO v1 training targets: which grid cell is responsible for which object.

An object belongs to the cell that holds its centre; a cell holds at most one
object (YOLO v1's limit), the largest one whose centre falls in it, and any
other object centred there is not trained on (it still counts as ground truth
for mAP).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def build_targets(boxes, classes, box_mask, grid_size: int, num_classes: int) -> dict:
    """Per-cell YOLO v1 targets from padded ground-truth boxes.

    Args:
      boxes: [batch, M, 4] normalised (x_min, y_min, x_max, y_max).
      classes: [batch, M] int class ids (anything where the mask is 0).
      box_mask: [batch, M], nonzero for real objects.
      grid_size: S.
      num_classes: C.

    Returns:
      has_object [batch, S, S] float32; box [batch, S, S, 4] the cell's
      object in image coordinates; xy [batch, S, S, 2] its centre offset in
      the cell; sqrt_wh [batch, S, S, 2]; class_one_hot [batch, S, S, C].
      Values of cells without an object are meaningless (masked by has_object).
    """
    s = grid_size
    boxes = boxes.astype(jnp.float32)
    n, m = boxes.shape[:2]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # [batch, M, 2] as (x, y)
    size = jnp.maximum(boxes[..., 2:] - boxes[..., :2], 0.0)  # [batch, M, 2] as (w, h)
    cell_xy = jnp.clip(jnp.floor(centre * s), 0, s - 1).astype(jnp.int32)  # [batch, M, 2]
    cell = cell_xy[..., 1] * s + cell_xy[..., 0]  # [batch, M] row-major cell index
    in_cell = (cell[..., None] == jnp.arange(s * s)) & (box_mask[..., None] > 0)  # [b, M, S*S]
    area = size[..., 0] * size[..., 1]  # [batch, M]
    winner = jnp.argmax(jnp.where(in_cell, area[..., None], -1.0), axis=1)  # [batch, S*S]
    has_object = jnp.any(in_cell, axis=1).astype(jnp.float32)  # [batch, S*S]

    def take(v):  # [batch, M, ...] -> [batch, S, S, ...] for each cell's object
        idx = winner.reshape(n, s * s, *([1] * (v.ndim - 2)))
        return jnp.take_along_axis(v, idx, axis=1).reshape(n, s, s, *v.shape[2:])

    grid = jnp.arange(s, dtype=jnp.float32)
    origin = jnp.stack(jnp.broadcast_arrays(grid[None, :], grid[:, None]), -1)  # [S, S, 2]
    safe_classes = jnp.clip(classes.astype(jnp.int32), 0, num_classes - 1)
    return {
        "has_object": has_object.reshape(n, s, s),
        "box": take(boxes),
        "xy": take(centre) * s - origin,
        "sqrt_wh": jnp.sqrt(take(size)),
        "class_one_hot": jax.nn.one_hot(take(safe_classes), num_classes),
    }


__all__ = ["build_targets"]
