"""Object detection with YOLO v1: the loss of Redmon et al. (2016) and VOC mean average precision.

The model gives the raw head [batch, S, S, B*5 + C] of dl.models.yolo (see
its docstring for the layout and activations); batches hold `boxes` [batch,
M, 4] normalised (x_min, y_min, x_max, y_max), `box_mask` [batch, M] and
class ids `y` [batch, M] (see dl.data.shapes).

Targets are built from the boxes inside the loss (`targets`), the loss is
`loss`, the host's mAP `metrics`, the Task `task` and the figure of
predicted and true boxes `drawing`.
"""

from dl.tasks.detection.drawing import draw_detections
from dl.tasks.detection.loss import CONFIDENCE_TARGETS, yolo_loss_terms
from dl.tasks.detection.metrics import average_precision, mean_average_precision
from dl.tasks.detection.targets import build_targets
from dl.tasks.detection.task import Detection

__all__ = [
    "CONFIDENCE_TARGETS",
    "Detection",
    "average_precision",
    "build_targets",
    "draw_detections",
    "mean_average_precision",
    "yolo_loss_terms",
]
