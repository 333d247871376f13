r"""Logistic regression (an MLP with no hidden layer) on the breast-cancer set.

    python -m experiments.train --config=experiments/configs/logistic_breast_cancer.py \
        --workdir=runs/logistic_breast_cancer

30 standardized features, one sigmoid unit, binary cross-entropy, Adam.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "logistic_breast_cancer"
    c.dataset.name = "breast_cancer"
    c.model = dict(name="mlp", hidden_sizes=())
    c.task.name = "binary_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.batch_size = 32
    c.num_train_steps = 1500
    c.log_every_steps = 250
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 500
    return c
