r"""A hidden layer solves XOR, which a single unit cannot.

    python -m experiments.train --config=experiments/configs/mlp_xor.py \
        --workdir=runs/mlp_xor

2-4-1 network with tanh hidden units and a sigmoid output, trained on the
four points until all four are right (100% accuracy, converged: true).
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "mlp_xor"
    c.dataset.name = "xor"
    c.dataset.standardize = "none"
    c.model = dict(name="mlp", hidden_sizes=(4,), activation="tanh")
    c.task.name = "binary_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.05
    c.batch_size = 4
    c.eval_batch_size = 4
    c.num_train_steps = 1000
    c.log_every_steps = 50
    c.eval_every_steps = 50
    c.checkpoint_every_steps = 250
    c.target_metric = "train/accuracy"
    c.target_value = 1.0
    return c
