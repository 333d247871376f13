"""The detection Task: the YOLO v1 loss in training, mAP@0.5 on whole splits."""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from dl.errors import ConfigError
from dl.models.yolo import activate, decode, nms
from dl.tasks.base import Task
from dl.tasks.detection.drawing import draw_detections
from dl.tasks.detection.loss import CONFIDENCE_TARGETS, yolo_loss_terms
from dl.tasks.detection.metrics import mean_average_precision


def _metric_name(class_name: str) -> str:
    return "ap50_" + re.sub(r"[^0-9a-zA-Z_]+", "_", str(class_name)).strip("_")


class Detection(Task):
    """YOLO v1 detection: the paper's sum-squared loss; mAP@0.5 on whole splits.

    Averaged metrics (per-example pairs): loss and its parts coord_loss,
    confidence_loss (object and no-object terms) and class_loss, per image;
    iou, the mean IoU of responsible predictors with their objects;
    class_accuracy over cells with an object; objectness_accuracy over all
    cells (a cell predicts an object if any of its confidences exceeds 0.5).
    Host metrics: map50, and ap50_<class name> per class with ground truth.

    Attributes (constructor keywords):
      lambda_coord, lambda_noobj, confidence_target: see `yolo_loss_terms`.
      nms_iou_threshold: NMS overlap limit for `predictions`.
      score_threshold: detections scoring at most this are dropped.
      max_detections: fixed number of detection slots per image.
      class_agnostic_nms: suppress overlapping boxes across classes.
    """

    name = "detection"

    def __init__(
        self,
        dataset,
        *,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        confidence_target: str = "iou",
        nms_iou_threshold: float = 0.5,
        score_threshold: float = 0.01,
        max_detections: int = 20,
        class_agnostic_nms: bool = False,
    ):
        super().__init__(dataset)
        fields = dataset.splits["train"]
        if dataset.kind != "detection" or "boxes" not in fields or "box_mask" not in fields:
            raise ConfigError(
                f"task 'detection' needs boxes, but dataset {dataset.name!r} is a "
                f"{dataset.kind} set without 'boxes' and 'box_mask'; use dataset 'shapes' or "
                "'detection_npz:PATH'"
            )
        if confidence_target not in CONFIDENCE_TARGETS:
            raise ConfigError(
                f"confidence_target must be one of {CONFIDENCE_TARGETS}, got {confidence_target!r}"
            )
        self.num_classes = int(dataset.num_classes)
        self.lambda_coord, self.lambda_noobj = float(lambda_coord), float(lambda_noobj)
        self.confidence_target = confidence_target
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.class_agnostic_nms = bool(class_agnostic_nms)
        names = dataset.info.get("class_names") or [str(c) for c in range(self.num_classes)]
        self.class_names = [str(n) for n in names]
        self.metric_directions = {
            "loss": "min",
            "coord_loss": "min",
            "confidence_loss": "min",
            "class_loss": "min",
            "iou": "max",
            "class_accuracy": "max",
            "objectness_accuracy": "max",
            "map50": "max",
            **{_metric_name(n): "max" for n in self.class_names},
        }

    def num_outputs(self) -> int:
        """Class scores per grid cell, C; the head has B*5 + C values per cell."""
        return self.num_classes

    def check_outputs(self, output_shape: tuple[int, ...]) -> str | None:
        shape = tuple(output_shape)
        c = self.num_classes
        ok = len(shape) == 3 and shape[0] == shape[1] and shape[2] > c and (shape[2] - c) % 5 == 0
        if not ok:
            return (
                f"the model gives outputs of shape {shape} per example, but task 'detection' "
                f"on dataset {self.dataset.name!r} needs a grid [S, S, B*5 + C] with C={c} "
                f"classes; set model.num_classes={c}"
            )
        return None

    def _terms(self, outputs, batch):
        return yolo_loss_terms(
            outputs,
            batch["boxes"],
            batch["y"],
            batch["box_mask"],
            self.num_classes,
            lambda_coord=self.lambda_coord,
            lambda_noobj=self.lambda_noobj,
            confidence_target=self.confidence_target,
        )

    def loss(self, outputs, batch):
        terms = self._terms(outputs, batch)
        return terms["total"], jnp.ones_like(terms["total"])

    def metrics(self, outputs, batch):
        t = self._terms(outputs, batch)
        ones = jnp.ones_like(t["total"])
        has_object = t["has_object"]  # [batch, S, S]
        objects = jnp.sum(has_object, axis=(1, 2))  # [batch]
        act = t["activated"]
        predicted_object = jnp.max(act.confidence, -1) > 0.5  # [batch, S, S]
        cells = has_object.shape[1] * has_object.shape[2]
        right_object = jnp.sum(predicted_object == (has_object > 0), axis=(1, 2))
        right_class = jnp.argmax(act.class_probs, -1) == jnp.argmax(
            t["targets"]["class_one_hot"], -1
        )  # [batch, S, S]
        return {
            "loss": (t["total"], ones),
            "coord_loss": (t["coord"], ones),
            "confidence_loss": (t["object"] + t["no_object"], ones),
            "class_loss": (t["class"], ones),
            "iou": (jnp.sum(t["responsible"] * t["iou"], axis=(1, 2, 3)), objects),
            "class_accuracy": (jnp.sum(has_object * right_class, axis=(1, 2)), objects),
            "objectness_accuracy": (right_object.astype(jnp.float32), ones * cells),
        }

    def predict(self, outputs):
        """The activated head: offsets, sqrt sizes and confidences through sigmoid,
        class scores through softmax, in the raw head's layout [batch, S, S, B*5 + C]."""
        b = (outputs.shape[-1] - self.num_classes) // 5
        act = activate(outputs, b, self.num_classes)
        boxes = jnp.concatenate([act.xy, act.sqrt_wh, act.confidence[..., None]], -1)
        return jnp.concatenate([boxes.reshape(*boxes.shape[:-2], -1), act.class_probs], -1)

    has_host_metrics = True

    def predictions(self, outputs, batch) -> dict:
        """Decoded detections after NMS, `max_detections` slots per image.

        Returns:
          boxes [batch, K, 4], scores [batch, K], classes [batch, K] int32
          (-1 in empty slots), valid [batch, K] bool.
        """
        s = outputs.shape[1]
        b = (outputs.shape[-1] - self.num_classes) // 5
        boxes, scores, classes = decode(outputs, s, b, self.num_classes)

        def one(bx, sc, cl):
            return nms(
                bx,
                sc,
                self.nms_iou_threshold,
                self.max_detections,
                classes=cl,
                class_agnostic=self.class_agnostic_nms,
                score_threshold=self.score_threshold,
            )

        det = jax.vmap(one)(boxes, scores, classes)
        return {
            "boxes": det.boxes,
            "scores": det.scores,
            "classes": det.classes,
            "valid": det.valid,
        }

    def prediction(self, outputs, batch) -> dict:
        """The detections after NMS, as `predictions`: boxes [batch, K, 4] (normalized
        x_min, y_min, x_max, y_max), scores [batch, K], classes [batch, K] (-1 in empty
        slots) and valid [batch, K]."""
        return self.predictions(outputs, batch)

    def host_metrics(self, predictions: dict, split: dict) -> dict[str, float]:
        mean, ap = mean_average_precision(
            predictions["boxes"],
            predictions["scores"],
            predictions["classes"],
            predictions["valid"],
            split["boxes"],
            split["y"],
            split["box_mask"],
            self.num_classes,
            0.5,
        )
        out = {"map50": mean}
        for name, value in zip(self.class_names, ap, strict=True):
            if not np.isnan(value):
                out[_metric_name(name)] = float(value)
        return out

    def figures(self, outputs, predictions, data, split, directory):
        """The split's first images with predicted and true boxes (detections_<split>.png)."""
        path = os.path.join(directory, f"detections_{split}.png")
        return [draw_detections(data["x"], predictions, data, path, self.class_names)]


__all__ = ["Detection"]
