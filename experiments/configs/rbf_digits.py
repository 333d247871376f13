r"""RBF network on scikit-learn's 8x8 digits.

    python -m experiments.train --config=experiments/configs/rbf_digits.py \
        --workdir=runs/rbf_digits

Pixels standardized with one global mean and std. 200 Gaussian units with
centres from k-means on the training split and widths from the distance of
each centre to its nearest other centre; centres, widths and the linear
softmax output are then trained together with Adam (cosine decay).

Measured (2 shared CPU cores, JAX 0.10.2): test accuracy 0.969, 0.967, 0.964
for seeds 0, 1, 2; about 7 s for the command.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "rbf_digits"
    c.dataset.name = "digits"
    c.dataset.standardize = "global"
    c.model = dict(
        name="rbf",
        num_centers=200,
        center_init="kmeans",
        width_init="nearest",
        learn_centers=True,
        learn_widths=True,
    )
    c.task.name = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.schedule.name = "cosine"
    c.batch_size = 64
    c.num_train_steps = 2000
    c.log_every_steps = 250
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 1000
    return c
