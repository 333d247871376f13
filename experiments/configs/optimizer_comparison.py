r"""Gradient descent, momentum and Adam on the same problem at the same learning rate.

    python -m experiments.sweep --config=experiments/configs/optimizer_comparison.py \
        --workdir=runs/optimizers --sweep=optimizer.name=sgd,momentum,adam

The problem of lr_too_low_right_high (MLP 64-64-10 on digits, 600 steps of
batch 32) at learning rate 0.01. Plain gradient descent creeps (training
loss 0.35, validation accuracy 0.90 at the end); momentum 0.9 builds up
speed along the consistent part of the gradient (0.046, 0.96); Adam scales
each parameter's step by its own gradient history and is fastest (0.0015,
0.98). runs/optimizers/sweep_loss.png overlays the three training curves,
sweep.md has the final metrics.
"""

from experiments.configs import lr_too_low_right_high


def get_config():
    c = lr_too_low_right_high.get_config()
    c.name = "optimizer_comparison"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    return c
