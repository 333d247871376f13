r"""Decision regions of MLPs with 0, 1 and 2 hidden layers on two interleaved spirals.

    python -m experiments.decision_boundary \
        --config=experiments/configs/boundaries_spirals.py --workdir=runs/boundaries \
        --hidden_layers=0,1,2

Trains the same MLP with no hidden layer (a straight boundary: logistic
regression), one hidden layer and two hidden layers of 8 tanh units, on the
same split, and draws their decision regions side by side in
runs/boundaries/decision_boundaries.png: validation accuracy 0.63 (a line
cannot follow the arms), 0.88 (one bend too few) and 0.93 (both arms
followed). Trained alone, this config is the 2-hidden-layer network.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "boundaries_spirals"
    c.dataset.name = "spirals"
    c.dataset.num_samples = 600
    c.dataset.noise = 0.2
    c.dataset.seed = 0
    c.model = dict(name="mlp", hidden_sizes=(8, 8), activation="tanh")
    c.task.name = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.batch_size = 64
    c.num_train_steps = 3000
    c.log_every_steps = 250
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 1000
    return c
