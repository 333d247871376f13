"""YOLO v1 (Redmon et al. 2016): one network that regresses boxes and classes on a grid.

The image is divided into an S x S grid. For every cell the network predicts
B boxes, each with a confidence, and one set of C class scores, so the head
is a tensor [batch, S, S, B*5 + C]. Along the last axis a cell holds

  [x_1, y_1, w_1, h_1, conf_1, ..., x_B, y_B, w_B, h_B, conf_B, class_1, ..., class_C]

as raw (pre-activation) values. `activate` turns them into what the loss and
`decode` use:

  x, y  -> sigmoid: the box centre's offset inside its cell, in [0, 1].
  w, h  -> sigmoid: the square roots of the box width and height, as
           fractions of the image (the paper regresses sqrt(w), sqrt(h)).
  conf  -> sigmoid: Pr(object) * IoU(pred, truth).
  class -> softmax: Pr(class | object), shared by the cell's B boxes.

The paper's last layer is linear and its outputs are used as they are; the
sigmoids and softmax keep every quantity in its range from the first step,
which matters for small models trained briefly, and do not change what the
loss compares.

Boxes are (x_min, y_min, x_max, y_max) normalised to [0, 1] by the image
width and height. `decode` flattens cells row-major, then boxes within a cell.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.boxes import iou
from dl.errors import unknown_name
from dl.models.cnn import adaptive_avg_pool, to_nhwc
from dl.models.conv import Conv
from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.pool import max_pool

BACKBONES = ("small", "paper")
HEADS = ("conv", "dense")

# The 24 convolutions of the paper's Figure 3, for 448x448 inputs:
# (features, kernel, stride) per conv, "M" for a 2x2 stride-2 max pool.
PAPER_LAYOUT: tuple = (
    (64, 7, 2), "M",
    (192, 3, 1), "M",
    (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), "M",
    *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), "M",
    *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
    (1024, 3, 1), (1024, 3, 1),
)  # fmt: skip


def leaky_relu(x: jax.Array) -> jax.Array:
    """The paper's activation: max(x, 0.1 x)."""
    return nn.leaky_relu(x, negative_slope=0.1)


class YOLOv1(nn.Module):
    """YOLO v1: a conv backbone and a head giving [batch, S, S, B*5 + C].

    Backbones:
      "small" (default): for 64x64 inputs. One stage per entry of `widths`:
        `convs_per_stage` 3x3 convs (batch norm if `batch_norm`, leaky ReLU
        0.1), then a 2x2 max pool after every stage but the last. With the
        default widths (16, 32, 64, 128) a 64x64 image becomes 8x8x128.
      "paper": the 24 conv layers of the paper (`PAPER_LAYOUT`), which turn a
        448x448 image into 7x7x1024; `widths` and `convs_per_stage` are unused.

    Heads:
      "conv": average-pools the features to S x S (`adaptive_avg_pool`), then
        a 3x3 conv of `head_hidden` features with leaky ReLU, dropout and a
        1x1 conv to B*5 + C.
      "dense" (the paper's): flatten, dense `head_hidden` with leaky ReLU,
        dropout, dense S*S*(B*5 + C), reshaped to the grid.

    `YOLOv1Paper` sets the fields that reproduce the paper's network.

    Attributes:
      num_classes: C, the number of classes.
      grid_size: S, cells per side.
      boxes_per_cell: B, boxes predicted per cell.
      backbone: "small" or "paper".
      widths: conv features per stage of the small backbone.
      convs_per_stage: 3x3 convs per stage of the small backbone.
      batch_norm: batch norm after every backbone conv (the paper has none;
        it came with YOLO v2). Its statistics live in 'batch_stats'.
      head: "conv" or "dense".
      head_hidden: features of the head's hidden layer.
      dropout_rate: dropout before the head's last layer (rng 'dropout').
      dtype: compute dtype; parameters and the output stay float32.
    """

    num_classes: int = 20
    grid_size: int = 7
    boxes_per_cell: int = 2
    backbone: str = "small"
    widths: Sequence[int] = (16, 32, 64, 128)
    convs_per_stage: int = 1
    batch_norm: bool = True
    head: str = "conv"
    head_hidden: int = 128
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def _conv_block(self, x, features, kernel, stride, train, name):
        x = Conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding="SAME",
            use_bias=not self.batch_norm,
            dtype=self.dtype,
            name=name,
        )(x)
        if self.batch_norm:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                dtype=self.dtype,
                name=f"{name}_bn",
            )(x)
        return leaky_relu(x)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Computes the raw head tensor.

        Args:
          x: images [batch, height, width, channels] (or [batch, height, width]).
          train: batch statistics for batch norm and dropout on (pass
            `mutable=['batch_stats']` and a 'dropout' rng).

        Returns:
          [batch, S, S, B*5 + C] float32, before any activation (see `activate`).
        """
        if self.backbone not in BACKBONES:
            raise unknown_name("backbone", self.backbone, BACKBONES)
        if self.head not in HEADS:
            raise unknown_name("head", self.head, HEADS)
        s, depth = self.grid_size, self.boxes_per_cell * 5 + self.num_classes
        x = to_nhwc(x).astype(self.dtype)  # [batch, H, W, channels]
        if self.backbone == "paper":
            i = 0
            for layer in PAPER_LAYOUT:
                if layer == "M":
                    x = max_pool(x, (2, 2), strides=(2, 2))
                else:
                    x = self._conv_block(x, *layer, train, f"conv{i}")
                    i += 1
        else:
            for stage, features in enumerate(self.widths):
                for j in range(self.convs_per_stage):
                    x = self._conv_block(x, features, 3, 1, train, f"conv{stage}_{j}")
                if stage < len(self.widths) - 1:
                    if min(x.shape[1:3]) < 2:
                        raise ValueError(
                            f"feature map {x.shape[1:3]} after stage {stage} is too small to "
                            "pool; use larger images or fewer widths"
                        )
                    x = max_pool(x, (2, 2), strides=(2, 2))
        # x: [batch, H', W', features]
        if self.head == "dense":
            x = x.reshape((x.shape[0], -1))  # [batch, H' * W' * features]
            x = leaky_relu(Dense(self.head_hidden, dtype=self.dtype, name="hidden")(x))
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
            x = Dense(s * s * depth, dtype=self.dtype, name="out")(x)
            x = x.reshape((x.shape[0], s, s, depth))
        else:
            x = adaptive_avg_pool(x, (s, s))  # [batch, S, S, features]
            x = Conv(self.head_hidden, (3, 3), padding="SAME", dtype=self.dtype, name="hidden")(x)
            x = leaky_relu(x)
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
            x = Conv(depth, (1, 1), dtype=self.dtype, name="out")(x)
        return x.astype(jnp.float32)  # [batch, S, S, B*5 + C]


YOLOv1Paper = functools.partial(
    YOLOv1,
    num_classes=20,
    grid_size=7,
    boxes_per_cell=2,
    backbone="paper",
    batch_norm=False,
    head="dense",
    head_hidden=4096,
    dropout_rate=0.5,
)
"""The paper's network for PASCAL VOC: 448x448x3 -> 24 convs -> 7x7x1024 -> dense 4096
-> dropout 0.5 -> dense 7*7*30, leaky ReLU 0.1 throughout, no batch norm. For reference
(checked by shape): it is far too large to train on a CPU."""


class Activated(NamedTuple):
    """The head's values after their activations (see the module docstring).

    Attributes:
      xy: [..., S, S, B, 2] centre offsets inside the cell.
      sqrt_wh: [..., S, S, B, 2] square roots of width and height.
      confidence: [..., S, S, B].
      class_probs: [..., S, S, C].
    """

    xy: jax.Array
    sqrt_wh: jax.Array
    confidence: jax.Array
    class_probs: jax.Array


def split_head(outputs: jax.Array, boxes_per_cell: int, num_classes: int) -> tuple:
    """Splits a raw head [..., S, S, B*5 + C] into boxes [..., S, S, B, 5] and classes."""
    depth = boxes_per_cell * 5 + num_classes
    if outputs.shape[-1] != depth:
        raise ValueError(
            f"head has {outputs.shape[-1]} values per cell, but B={boxes_per_cell} boxes and "
            f"C={num_classes} classes need B*5 + C = {depth}"
        )
    boxes = outputs[..., : boxes_per_cell * 5].reshape(
        (*outputs.shape[:-1], boxes_per_cell, 5)
    )  # [..., S, S, B, 5]
    return boxes, outputs[..., boxes_per_cell * 5 :]  # [..., S, S, C]


def activate(outputs: jax.Array, boxes_per_cell: int, num_classes: int) -> Activated:
    """Applies the head's activations.

    Args:
      outputs: raw head [..., S, S, B*5 + C].
      boxes_per_cell: B.
      num_classes: C.

    Returns:
      The activated fields.
    """
    boxes, classes = split_head(outputs.astype(jnp.float32), boxes_per_cell, num_classes)
    sig = jax.nn.sigmoid(boxes)  # [..., S, S, B, 5]
    return Activated(
        xy=sig[..., 0:2],
        sqrt_wh=sig[..., 2:4],
        confidence=sig[..., 4],
        class_probs=jax.nn.softmax(classes, axis=-1),
    )


def cell_boxes(xy: jax.Array, sqrt_wh: jax.Array) -> jax.Array:
    """Cell-relative predictions -> image boxes.

    Args:
      xy: [..., S, S, B, 2] centre offsets inside each cell.
      sqrt_wh: [..., S, S, B, 2] square roots of width and height.

    Returns:
      [..., S, S, B, 4] as (x_min, y_min, x_max, y_max), normalised, unclipped.
    """
    s = xy.shape[-3]
    grid = jnp.arange(s, dtype=jnp.float32)
    col = grid[None, :, None]  # [1, S, 1] cell column, along width
    row = grid[:, None, None]  # [S, 1, 1] cell row, along height
    cx = (col + xy[..., 0]) / s
    cy = (row + xy[..., 1]) / s
    half_w, half_h = sqrt_wh[..., 0] ** 2 / 2, sqrt_wh[..., 1] ** 2 / 2
    return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def decode(
    outputs: jax.Array, grid_size: int, boxes_per_cell: int, num_classes: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Turns a raw head into scored, classified boxes.

    A box's class is the cell's most probable class and its score the
    class-specific confidence of the paper, conf * Pr(class | object).

    Args:
      outputs: raw head [batch, S, S, B*5 + C].
      grid_size: S.
      boxes_per_cell: B.
      num_classes: C.

    Returns:
      boxes [batch, S*S*B, 4] (x_min, y_min, x_max, y_max) clipped to [0, 1];
      scores [batch, S*S*B]; classes [batch, S*S*B] int32. Boxes are ordered
      by cell row, cell column, then box within the cell.
    """
    if outputs.shape[-3:-1] != (grid_size, grid_size):
        raise ValueError(f"head {outputs.shape} does not have an {grid_size}x{grid_size} grid")
    act = activate(outputs, boxes_per_cell, num_classes)
    n = outputs.shape[0]
    boxes = jnp.clip(cell_boxes(act.xy, act.sqrt_wh), 0.0, 1.0)  # [batch, S, S, B, 4]
    classes = jnp.argmax(act.class_probs, axis=-1).astype(jnp.int32)  # [batch, S, S]
    best = jnp.max(act.class_probs, axis=-1)  # [batch, S, S]
    scores = act.confidence * best[..., None]  # [batch, S, S, B]
    classes = jnp.broadcast_to(classes[..., None], scores.shape)
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1), classes.reshape(n, -1)


class Detections(NamedTuple):
    """Fixed-size detections, best first; invalid slots have score 0 and class -1.

    Attributes:
      boxes: [..., K, 4].
      scores: [..., K].
      classes: [..., K] int32.
      valid: [..., K] bool.
      indices: [..., K] int32, the candidates' indices (0 for invalid slots).
    """

    boxes: jax.Array
    scores: jax.Array
    classes: jax.Array
    valid: jax.Array
    indices: jax.Array


def nms(
    boxes: jax.Array,
    scores: jax.Array,
    iou_threshold: float = 0.5,
    max_detections: int = 20,
    *,
    classes: jax.Array | None = None,
    class_agnostic: bool = False,
    score_threshold: float = 0.0,
) -> Detections:
    """Greedy non-maximum suppression over a fixed set of candidates, for one image.

    Candidates are visited in order of decreasing score; one is kept if its
    score exceeds `score_threshold` and its IoU with every kept box (of the
    same class, unless `class_agnostic` or `classes` is None) is at most
    `iou_threshold`. Sizes are static, so this jit-compiles and vmaps over a
    batch; the loop costs O(N^2) for N candidates.

    Args:
      boxes: [N, 4] candidates.
      scores: [N].
      iou_threshold: overlaps above this are suppressed.
      max_detections: K, the static output size.
      classes: [N] int class ids, or None for one class.
      class_agnostic: suppress across classes too.
      score_threshold: candidates scoring at most this are dropped.

    Returns:
      Detections with K slots, the kept boxes first, best first.
    """
    n = boxes.shape[0]
    if classes is None:
        classes = jnp.zeros((n,), jnp.int32)
        class_agnostic = True
    order = jnp.argsort(-scores)  # [N] best first
    b, s, c = boxes[order], scores[order], classes[order].astype(jnp.int32)
    overlap = iou(b[:, None, :], b[None, :, :]) > iou_threshold  # [N, N]
    if not class_agnostic:
        overlap = overlap & (c[:, None] == c[None, :])
    candidate = s > score_threshold

    def visit(i, keep):
        suppressed = jnp.any(keep & overlap[i])  # keep holds only candidates before i
        return keep.at[i].set(candidate[i] & ~suppressed)

    keep = jax.lax.fori_loop(0, n, visit, jnp.zeros((n,), bool))
    k = min(max_detections, n)
    # Kept candidates first (they are already sorted by score), in the order visited.
    rank = jnp.where(keep, jnp.arange(n), n + jnp.arange(n))
    top = jnp.argsort(rank)[:k]  # [k]
    valid = keep[top]
    out = Detections(
        boxes=jnp.where(valid[:, None], b[top], 0.0),
        scores=jnp.where(valid, s[top], 0.0),
        classes=jnp.where(valid, c[top], -1),
        valid=valid,
        indices=jnp.where(valid, order[top], 0).astype(jnp.int32),
    )
    if k < max_detections:
        pad = max_detections - k
        out = Detections(
            *(
                jnp.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1), constant_values=f)
                for v, f in zip(out, (0.0, 0.0, -1, False, 0), strict=True)
            )
        )
    return out
