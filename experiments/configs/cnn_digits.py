r"""A LeNet-style CNN on the 8x8 digits.

    python -m experiments.train --config=experiments/configs/cnn_digits.py \
        --workdir=runs/cnn_digits

Two 3x3 conv layers (64, 128 filters, ReLU, 2x2 max-pool), a dense layer of
256 with dropout 0.5, Adam with cosine decay, random-crop augmentation (1
pixel of padding) inside the jitted step. Test accuracy 98.9%, 99.4%, 98.9%
for seeds 0, 1, 2 (about 40 s each on 2 CPU cores).
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "cnn_digits"
    c.dataset.name = "digits"
    c.dataset.standardize = "global"
    c.model = dict(
        name="cnn",
        conv_features=(64, 128),
        kernel_size=3,
        pool="max",
        dense_sizes=(256,),
        dropout_rate=0.5,
    )
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 2e-3
    c.schedule.name = "cosine"
    c.augment.crop_padding = 1
    c.batch_size = 64
    c.num_train_steps = 4000
    c.log_every_steps = 250
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 1000
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
