"""The YOLO v1 loss of Redmon et al. (2016), per example and per term."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dl.boxes import iou
from dl.errors import ConfigError
from dl.models.yolo import activate, cell_boxes
from dl.tasks.detection.targets import build_targets

CONFIDENCE_TARGETS = ("iou", "one")


def yolo_loss_terms(
    outputs,
    boxes,
    classes,
    box_mask,
    num_classes: int,
    *,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    confidence_target: str = "iou",
) -> dict:
    """The terms of the YOLO v1 loss, per example.

    With 1obj_ij = 1 if predictor j of cell i is responsible for an object
    (of the cell's B predictors, the one whose box has the highest IoU with
    the object; the first on ties) and 1noobj_ij = 1 - 1obj_ij:

      coord      = lambda_coord * sum_ij 1obj_ij [(x - x^)^2 + (y - y^)^2]
                 + lambda_coord * sum_ij 1obj_ij [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
      object     = sum_ij 1obj_ij (C_ij - C^_ij)^2
      no_object  = lambda_noobj * sum_ij 1noobj_ij C_ij^2
      class      = sum_i 1obj_i sum_c (p_i(c) - p^_i(c))^2

    C^_ij is the IoU of the predicted box with the object (the paper's
    definition, held constant for the gradient) when `confidence_target` is
    "iou", or 1 when it is "one". All are sums of squared errors over the
    image, as in the paper.

    Args:
      outputs: raw head [batch, S, S, B*5 + C].
      boxes, classes, box_mask: ground truth, see `build_targets`.
      num_classes: C.
      lambda_coord: weight of the coordinate terms.
      lambda_noobj: weight of the confidence of predictors without an object.
      confidence_target: "iou" or "one".

    Returns:
      coord, object, no_object, class, total: [batch] each; iou [batch, S, S, B]
      of each predictor with its cell's object; responsible [batch, S, S, B];
      has_object [batch, S, S]; activated, the `Activated` head.
    """
    if confidence_target not in CONFIDENCE_TARGETS:
        raise ConfigError(
            f"confidence_target must be one of {CONFIDENCE_TARGETS}, got {confidence_target!r}"
        )
    s, depth = outputs.shape[1], outputs.shape[-1]
    b = (depth - num_classes) // 5
    act = activate(outputs, b, num_classes)
    t = build_targets(boxes, classes, box_mask, s, num_classes)
    pred_boxes = cell_boxes(act.xy, act.sqrt_wh)  # [batch, S, S, B, 4]
    ious = jax.lax.stop_gradient(iou(pred_boxes, t["box"][..., None, :]))  # [batch, S, S, B]
    has_object = t["has_object"]  # [batch, S, S]
    responsible = jax.nn.one_hot(jnp.argmax(ious, -1), b) * has_object[..., None]  # [b, S, S, B]

    def total(v):
        return jnp.sum(v, axis=tuple(range(1, v.ndim)))  # [batch]

    xy_err = jnp.sum((act.xy - t["xy"][..., None, :]) ** 2, -1)  # [batch, S, S, B]
    wh_err = jnp.sum((act.sqrt_wh - t["sqrt_wh"][..., None, :]) ** 2, -1)  # [batch, S, S, B]
    target_conf = ious if confidence_target == "iou" else 1.0
    class_err = jnp.sum((act.class_probs - t["class_one_hot"]) ** 2, -1)  # [batch, S, S]
    terms = {
        "coord": lambda_coord * total(responsible * (xy_err + wh_err)),
        "object": total(responsible * (act.confidence - target_conf) ** 2),
        "no_object": lambda_noobj * total((1.0 - responsible) * act.confidence**2),
        "class": total(has_object * class_err),
    }
    terms["total"] = terms["coord"] + terms["object"] + terms["no_object"] + terms["class"]
    terms.update(
        iou=ious,
        responsible=responsible,
        has_object=has_object,
        targets=t,
        activated=act,
    )
    return terms


__all__ = ["CONFIDENCE_TARGETS", "yolo_loss_terms"]
