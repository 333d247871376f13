r"""A GRU reads the 8x8 digits row by row: 8 steps of 8 features.

    python -m experiments.train --config=experiments/configs/gru_digits.py \
        --workdir=runs/gru_digits

lstm_digits with the cell swapped: one GRU layer of 128 units, last-step readout, Adam
3e-3 with cosine decay, gradient clipping at norm 1. Test accuracy 97.2%, 97.8%, 98.1%
for seeds 0, 1, 2 after 1000 steps (validation 98.5-99.3%), about 10 s of training on 2
shared CPU cores.
"""

from experiments.configs import lstm_digits


def get_config():
    c = lstm_digits.get_config()
    c.name = "gru_digits"
    c.model.cell = "gru"
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
