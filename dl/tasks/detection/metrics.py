"""VOC average precision and mean average precision, on the host (numpy, float64)."""

from __future__ import annotations

import numpy as np

from dl.boxes import iou


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
    overlaps = iou(pred_boxes[:, :, None, :], true_boxes[:, None, :, :])  # [images, K, M]
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


__all__ = ["average_precision", "mean_average_precision"]
