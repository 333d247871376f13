r"""Linear regression (an MLP with no hidden layer) on the diabetes set.

    python -m experiments.train --config=experiments/configs/linear_diabetes.py \
        --workdir=runs/linear_diabetes

Least squares on standardized inputs and targets by gradient descent with
momentum; MSE and MAE are reported in the target's own units.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "linear_diabetes"
    c.dataset.name = "diabetes"
    c.model = dict(name="mlp", hidden_sizes=())
    c.task.name = "regression"
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.batch_size = 32
    c.num_train_steps = 2000
    c.log_every_steps = 250
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 1000
    c.best_metric = "mse"
    return c
