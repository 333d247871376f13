"""Box geometry shared by the detection model, task and data.

Boxes are (x_min, y_min, x_max, y_max) along the last axis. Every function
broadcasts over the leading axes and works on numpy arrays on the host and on
jax arrays (traced ones included, under jit): it computes with `jax.numpy`
when any input is a jax array and with numpy otherwise, so the host's float64
metrics and the model's float32 loss share one definition.

>>> import numpy as np
>>> a = np.array([0.0, 0.0, 2.0, 2.0])
>>> float(iou(a, np.array([1.0, 1.0, 3.0, 3.0])))  # 1 / (4 + 4 - 1)
0.14285714285714285
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _array_module(*arrays):
    """jax.numpy if any array is a jax array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jnp.ndarray) for a in arrays) else np


def box_area(boxes):
    """Area of boxes, zero for an empty (inverted) box.

    Args:
      boxes: [..., 4].

    Returns:
      [...] areas.
    """
    xp = _array_module(boxes)
    width = xp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = xp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def box_intersection(a, b):
    """Area of the intersection of two sets of boxes, broadcasting.

    Args:
      a: [..., 4].
      b: [..., 4].

    Returns:
      [...] intersection areas; zero for boxes that only touch or are apart.
    """
    xp = _array_module(a, b)
    width = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), 0.0)
    height = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), 0.0)
    return width * height


def iou(a, b):
    """Intersection over union of two sets of boxes, broadcasting.

    Args:
      a: [..., 4].
      b: [..., 4].

    Returns:
      [...] IoU in [0, 1]; 0 where the union is empty.
    """
    xp = _array_module(a, b)
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1.0), 0.0)


__all__ = ["box_area", "box_intersection", "iou"]
