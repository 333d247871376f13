r"""An Elman RNN reads the 8x8 digits row by row: 8 steps of 8 features.

    python -m experiments.train --config=experiments/configs/rnn_digits.py \
        --workdir=runs/rnn_digits

One tanh RNN layer of 128 units, last-step readout, Adam 3e-3 with cosine decay, gradient
clipping at norm 1. Test accuracy 98.3%, 97.8%, 97.2% for seeds 0, 1, 2 after 1000 steps,
about 5 s of training on 2 shared CPU cores: over only 8 steps the plain RNN does as well
as the gated cells (experiments.vanishing_gradients reads the digits pixel by pixel).
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "rnn_digits"
    c.dataset.name = "digits"
    c.dataset.standardize = "global"
    c.model = dict(name="rnn_classifier", cell="rnn", hidden_size=128, num_layers=1)
    c.task = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "cosine"
    c.grad_clip_norm = 1.0
    c.batch_size = 64
    c.num_train_steps = 1000
    c.log_every_steps = 250
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 500
    return c
