r"""RBF network on scikit-learn's two moons.

    python -m experiments.train --config=experiments/configs/rbf_moons.py \
        --workdir=runs/rbf_moons

1000 points (noise 0.2), standardized. 16 Gaussian units with centres from
k-means on the training split and widths from each centre's distance to its
nearest other centre, then centres, widths and the linear softmax output
trained together with Adam (cosine decay).

Measured (2 shared CPU cores, JAX 0.10.2): test accuracy 0.980, 0.970, 0.975
for seeds 0, 1, 2 (200 test points); about 6 s for the command.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "rbf_moons"
    c.dataset.name = "moons"
    c.dataset.num_samples = 1000
    c.dataset.noise = 0.2
    c.dataset.seed = 0
    c.dataset.standardize = "feature"
    c.model = dict(
        name="rbf",
        num_centers=16,
        center_init="kmeans",
        width_init="nearest",
        learn_centers=True,
        learn_widths=True,
    )
    c.task.name = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.schedule.name = "cosine"
    c.batch_size = 32
    c.num_train_steps = 1000
    c.log_every_steps = 100
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 500
    return c
