r"""Smoke run of AlexNet's small-input variant on synthetic 32x32x3 images.

    python -m experiments.train --config=experiments/configs/alexnet_tiny.py \
        --workdir=runs/alexnet_tiny
    python -m experiments.benchmark --config=experiments/configs/alexnet_tiny.py

`alexnet_tiny` is AlexNet's layout (5 conv + 3 dense, ReLU, max-pool,
dropout) scaled for 32x32 inputs; `--config.model.name=alexnet
--config.dataset.feature_shape=224,224,3` runs the published network at its
published input size. The data is noise labelled by a random linear teacher:
this config checks that the model trains end to end, it is not a benchmark
of accuracy.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "alexnet_tiny"
    c.dataset.name = "synthetic"
    c.dataset.num_samples = 256
    c.dataset.feature_shape = (32, 32, 3)
    c.dataset.num_classes = 10
    c.dataset.standardize = "none"
    c.model = dict(name="alexnet_tiny")
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.01
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_train_steps = 20
    c.log_every_steps = 5
    c.eval_every_steps = 20
    c.checkpoint_every_steps = 20
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
