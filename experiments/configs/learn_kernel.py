r"""'We want the model to learn the kernel': recover a known 3x3 kernel from image pairs.

    python -m experiments.learn_kernel --workdir=runs/learn_kernel
    # or, training only:
    python -m experiments.train --config=experiments/configs/learn_kernel.py \
        --workdir=runs/learn_kernel

Inputs are random binary 10x10 images, targets their VALID cross-correlation
with the lecture's kernel [[1,0,1],[0,1,0],[1,0,1]]. One bias-free 3x3
convolution trained by least squares recovers the kernel to within 1e-3.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "learn_kernel"
    c.dataset.name = "conv_pairs"
    c.dataset.num_samples = 512
    c.dataset.image_size = 10
    c.dataset.kernel = ((1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0))
    c.dataset.noise = 0.0
    c.dataset.standardize = "none"
    c.dataset.standardize_targets = False
    c.model = dict(name="conv_filter", kernel_size=3, padding="VALID")
    c.task.name = "regression"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.05
    c.schedule.name = "cosine"
    c.batch_size = 32
    c.num_train_steps = 600
    c.log_every_steps = 100
    c.eval_every_steps = 200
    c.checkpoint_every_steps = 600
    c.best_metric = "mse"
    return c
