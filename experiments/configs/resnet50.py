r"""Smoke run of ResNet-50 at its published input size, 224x224x3, batch 8.

    python -m experiments.train --config=experiments/configs/resnet50.py \
        --workdir=runs/resnet50
    python -m experiments.benchmark --config=experiments/configs/resnet50.py

25,557,032 parameters for 1000 classes, as published (torchvision); batch-norm
statistics in the train state. The data is synthetic noise: this config checks
that the network trains end to end and gives the benchmark its compile and
step times; it says nothing about accuracy.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "resnet50"
    c.dataset.name = "synthetic"
    c.dataset.num_samples = 48
    c.dataset.feature_shape = (224, 224, 3)
    c.dataset.num_classes = 1000
    c.dataset.standardize = "none"
    c.dataset.validation_fraction = 0.1
    c.dataset.test_fraction = 0.1
    c.model = dict(name="resnet50")
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.01
    c.batch_size = 8
    c.eval_batch_size = 8
    c.num_train_steps = 4
    c.log_every_steps = 2
    c.eval_every_steps = 4
    c.checkpoint_every_steps = 4
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
