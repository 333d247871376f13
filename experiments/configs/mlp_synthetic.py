r"""MLP 784-512-512-10 on synthetic 784-feature inputs: the benchmark's larger MLP.

    python -m experiments.benchmark --config=experiments/configs/mlp_synthetic.py

Inputs are Gaussian noise labelled by a random linear teacher (dataset
"synthetic"), shaped like flattened 28x28 images; batch 256, Adam.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "mlp_synthetic"
    c.dataset.name = "synthetic"
    c.dataset.num_samples = 8192
    c.dataset.feature_shape = (784,)
    c.dataset.num_classes = 10
    c.dataset.standardize = "none"
    c.model = dict(name="mlp", hidden_sizes=(512, 512), activation="relu")
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.batch_size = 256
    c.num_train_steps = 2000
    c.log_every_steps = 200
    c.eval_every_steps = 1000
    c.checkpoint_every_steps = 1000
    return c
