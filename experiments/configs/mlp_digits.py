r"""MLP on scikit-learn's 8x8 digits: the default experiment.

    python -m experiments.train --config=experiments/configs/mlp_digits.py \
        --workdir=runs/mlp_digits

Reaches 97.8% test accuracy (seeds 0, 1, 2) in about 10 seconds on 2 CPU cores.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "mlp_digits"
    c.dataset.name = "digits"
    c.dataset.standardize = "global"
    c.model = dict(name="mlp", hidden_sizes=(1024,), activation="relu", dropout_rate=0.5)
    c.task.name = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.schedule.name = "cosine"
    c.batch_size = 64
    c.num_train_steps = 4000
    c.log_every_steps = 250
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 1000
    return c
