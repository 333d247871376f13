"""Object detection with YOLO v1: the loss of Redmon et al. (2016) and VOC mean average precision.

The model gives the raw head [batch, S, S, B*5 + C] of dl.models.yolo (see
its docstring for the layout and activations); batches hold `boxes` [batch,
M, 4] normalised (x_min, y_min, x_max, y_max), `box_mask` [batch, M] and
class ids `y` [batch, M] (see dl.data.shapes).

Targets are built from the boxes inside the loss. An object belongs to the
cell that holds its centre; a cell holds at most one object (YOLO v1's
limit), the largest one whose centre falls in it, and any other object
centred there is not trained on (it still counts as ground truth for mAP).
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from dl.errors import ConfigError
from dl.models.yolo import activate, cell_boxes, decode, iou, nms
from dl.tasks.base import Task

CONFIDENCE_TARGETS = ("iou", "one")


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


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated average precision.

    The area under the precision-recall curve after replacing each precision
    by the largest precision at any equal or higher recall (VOC 2010+).

    Args:
      recall: [detections] cumulative recall, in ranked order.
      precision: [detections] cumulative precision, in ranked order.

    Returns:
      AP in [0, 1].
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mean_average_precision(
    pred_boxes,
    pred_scores,
    pred_classes,
    pred_valid,
    true_boxes,
    true_classes,
    true_mask,
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, np.ndarray]:
    """VOC-style mean average precision over a set of images.

    Detections of a class are ranked by score over all images. Each is a
    true positive if its IoU with the best-overlapping ground-truth box of
    its class in its image is at least `iou_threshold` and that box was not
    matched by a higher-ranked detection; otherwise a false positive
    (duplicates included). AP per class is all-point interpolated
    (`average_precision`); the mean is over classes with ground truth.

    Args:
      pred_boxes: [images, K, 4]; pred_scores, pred_classes, pred_valid: [images, K].
      true_boxes: [images, M, 4]; true_classes, true_mask: [images, M].
      num_classes: C.
      iou_threshold: the IoU a match needs (0.5 for mAP@0.5).

    Returns:
      (mAP, AP per class [C], NaN for classes without ground truth). mAP is
      NaN when no class has ground truth.
    """
    pred_boxes = np.asarray(pred_boxes, np.float64)
    pred_scores = np.asarray(pred_scores, np.float64)
    pred_classes = np.asarray(pred_classes)
    pred_valid = np.asarray(pred_valid) > 0
    true_boxes = np.asarray(true_boxes, np.float64)
    true_classes = np.asarray(true_classes)
    true_mask = np.asarray(true_mask) > 0
    overlaps = _np_iou(pred_boxes[:, :, None, :], true_boxes[:, None, :, :])  # [images, K, M]
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        gt = true_mask & (true_classes == c)  # [images, M]
        num_gt = int(gt.sum())
        if num_gt == 0:
            continue
        img, slot = np.nonzero(pred_valid & (pred_classes == c))
        if len(img) == 0:
            ap[c] = 0.0
            continue
        order = np.argsort(-pred_scores[img, slot], kind="stable")
        img, slot = img[order], slot[order]
        ov = np.where(gt[img], overlaps[img, slot], -1.0)  # [dets, M]
        best = np.argmax(ov, axis=1)
        best_ov = ov[np.arange(len(img)), best]
        used = np.zeros_like(gt)
        tp = np.zeros(len(img))
        for d in range(len(img)):
            if best_ov[d] >= iou_threshold and not used[img[d], best[d]]:
                used[img[d], best[d]] = True
                tp[d] = 1.0
        cum_tp = np.cumsum(tp)
        recall = cum_tp / num_gt
        precision = cum_tp / np.arange(1, len(tp) + 1)
        ap[c] = average_precision(recall, precision)
    has_gt = ~np.isnan(ap)
    mean = float(np.mean(ap[has_gt])) if has_gt.any() else float("nan")
    return mean, ap


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

    True boxes are drawn dashed white (labelled with their class when `true`
    has "y"), predictions solid in one colour per class and labelled with
    class name and score.

    Args:
      images: [n, H, W, C] (values outside [0, 1], e.g. standardized, are
        min-max scaled per image).
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patches

    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    n = min(len(images), max_images)
    if n == 0:
        raise ConfigError("draw_detections needs at least one image")
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")

    def name(c):
        c = int(c)
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        if img.min() < 0 or img.max() > 1:
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        h, w = img.shape[:2]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        for j in np.flatnonzero(np.asarray(true["box_mask"][k]) > 0):
            x0, y0, x1, y1 = np.asarray(true["boxes"][k][j]) * [w, h, w, h]
            ax.add_patch(
                patches.Rectangle(
                    (x0, y0),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor="white",
                    linestyle="--",
                    linewidth=1.2,
                )
            )
            if "y" in true:
                ax.text(
                    x0,
                    y1,
                    name(true["y"][k][j]),
                    color="white",
                    fontsize=7,
                    va="top",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1},
                )
        for j in range(len(pred["scores"][k])):
            score = float(pred["scores"][k][j])
            if not pred["valid"][k][j] or score < min_score:
                continue
            c = int(pred["classes"][k][j])
            x0, y0, x1, y1 = np.asarray(pred["boxes"][k][j]) * [w, h, w, h]
            ax.add_patch(
                patches.Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colours(c % 10), linewidth=1.5
                )
            )
            ax.text(
                x0,
                y0,
                f"{name(c)} {score:.2f}",
                color="white",
                fontsize=7,
                va="bottom",
                bbox={"facecolor": colours(c % 10), "alpha": 0.8, "pad": 1},
            )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
