r"""The task the vanishing-gradients experiment trains RNN, LSTM and GRU on.

    python -m experiments.vanishing_gradients --workdir=runs/vanishing_gradients

RESULT
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "vanishing_gradients"
    c.dataset = dict(
        name="sequential_digits",
        features_per_step=1,
        validation_fraction=0.15,
        test_fraction=0.2,
        split_seed=0,
        standardize="global",
    )
    c.model = dict(name="rnn_classifier", cell="rnn", hidden_size=64, num_layers=1)
    c.task = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "cosine"
    c.grad_clip_norm = 1.0
    c.batch_size = 64
    c.num_train_steps = 500
    c.log_every_steps = 100
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    return c
