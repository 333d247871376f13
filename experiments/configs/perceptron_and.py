r"""Rosenblatt's perceptron learns AND: one unit, step output, mistake-driven updates.

    python -m experiments.train --config=experiments/configs/perceptron_and.py \
        --workdir=runs/perceptron_and

The unit starts at w = 0, b = 0 and visits the four points one at a time
(batch_size 1); each mistake moves w by eta (y - step(z)) x. Training stops
once an epoch gets every point right: the summary says converged: true.
`--config.dataset.name=or` learns OR the same way.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "perceptron_and"
    c.dataset.name = "and"
    c.dataset.standardize = "none"
    c.model = dict(name="perceptron", zero_init=True)
    c.task.name = "perceptron"
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 1.0
    c.batch_size = 1
    c.eval_batch_size = 4
    c.num_train_steps = 200
    c.log_every_steps = 4
    c.eval_every_steps = 4
    c.checkpoint_every_steps = 20
    c.target_metric = "train/accuracy"
    c.target_value = 1.0
    return c
