r"""Fine-tunes ResNet-18 from torchvision's ImageNet weights on a folder of images.

    python -m experiments.import_weights --format=torchvision --arch=resnet18 \
        --file=resnet18.safetensors --output=runs/resnet18_imagenet
    python -m experiments.train --config=experiments/configs/finetune_resnet18.py \
        --workdir=runs/finetune --config.dataset.name=images:/data/my_images

The folder holds one sub-folder per class (PNG/JPEG), resized to 224x224 RGB.
Every parameter and batch statistic but the head's starts from the imported
checkpoint (`init_from`); the head, as wide as the folder's classes, starts
afresh (`init_from.exclude`). SGD with momentum, a cosine schedule and
horizontal flips.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "finetune_resnet18"
    c.dataset.name = "images:PATH"  # the folder: --config.dataset.name=images:/path
    c.dataset.image_size = 224
    c.dataset.channels = 3
    # torchvision's per-channel normalization, which the imported weights expect.
    c.dataset.standardize = "imagenet"
    c.model = dict(name="resnet18")
    c.init_from.workdir = "runs/resnet18_imagenet"  # written by experiments.import_weights
    c.init_from.checkpoint = "latest"
    c.init_from.exclude = ("head/.*",)  # 1000 ImageNet classes there; the folder has its own
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.augment.horizontal_flip = True
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_train_steps = 600
    c.log_every_steps = 50
    c.eval_every_steps = 100
    c.checkpoint_every_steps = 100
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
