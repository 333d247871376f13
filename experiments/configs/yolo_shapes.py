r"""YOLO v1 on generated shapes (circles, squares, triangles; 1-4 per 64x64 image).

    python -m experiments.train --config=experiments/configs/yolo_shapes.py \
        --workdir=runs/yolo_shapes

The model keeps YOLO v1's loss, B=2 boxes per cell and leaky ReLU, with a small
batch-normalised backbone, an 8x8 grid matching its stride of 8, and a conv head.
Test mAP@0.5 (held-out generated images, 400 of them): 0.984 for seed 0 in
243 s and 0.978 for seed 1 in 191 s of wall time on 2 shared CPU cores.
`python -m experiments.evaluate --workdir=...` draws predicted (solid) and true
(dashed) boxes on test images into detections_test.png.
"""

from dl.config import base_config
from dl.tasks import task_config


def get_config():
    c = base_config()
    c.name = "yolo_shapes"
    c.dataset.name = "shapes"
    c.dataset.num_samples = 4000
    c.dataset.image_size = 64
    c.dataset.min_objects = 1
    c.dataset.max_objects = 4
    c.dataset.seed = 0
    c.dataset.validation_fraction = 0.1
    c.dataset.test_fraction = 0.1
    c.dataset.standardize = "none"
    c.model = dict(
        name="yolo",
        num_classes=3,
        grid_size=8,
        boxes_per_cell=2,
        widths=(16, 32, 64, 128),
        head="conv",
        head_hidden=128,
    )
    c.task = task_config("detection")
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 2e-3
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 100
    c.grad_clip_norm = 10.0
    c.batch_size = 32
    c.eval_batch_size = 200
    c.num_train_steps = 500
    # On CPU, convolutions inside a multi-step lax.scan run many times slower
    # than one step per call (5.4 s against 0.15 s per step here).
    c.steps_per_call = 1
    c.log_every_steps = 100
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    c.best_metric = "map50"
    return c
