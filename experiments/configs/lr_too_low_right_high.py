r"""Learning rates that are too low, just right and too high: plain gradient descent on digits.

    python -m experiments.sweep --config=experiments/configs/lr_too_low_right_high.py \
        --workdir=runs/lr_sweep --sweep=optimizer.learning_rate=0.001,0.1,3.0

    python -m experiments.lr_find --config=experiments/configs/lr_too_low_right_high.py \
        --workdir=runs/lr_find

An MLP 64-64-10 on scikit-learn's 8x8 digits, trained by plain SGD for 600
steps. At 0.001 the loss barely moves in that time (too low: training loss
1.9, 45% accuracy); at 0.1 it falls fast and steadily (just right: 97%
validation accuracy); at 3.0 the first steps overshoot, the loss jumps to
about 25 and the network ends at chance level, its ReLUs dead (too high).
A rate that makes the loss non-finite is recorded as diverged and the sweep
goes on. runs/lr_sweep/sweep_loss.png overlays the training curves; the
range test suggests about 0.04 (minimum / 10) or 0.09 (steepest descent).
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "lr_too_low_right_high"
    c.dataset.name = "digits"
    c.dataset.standardize = "global"
    c.model = dict(name="mlp", hidden_sizes=(64,), activation="relu")
    c.task.name = "classification"
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.batch_size = 32
    c.num_train_steps = 600
    c.log_every_steps = 20
    c.eval_every_steps = 50
    c.checkpoint_every_steps = 300
    return c
