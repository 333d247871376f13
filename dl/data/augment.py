"""Data augmentation in JAX, applied inside the jitted training step.

Randomness comes from the step's key (fold_in of the run's key and the step),
so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dl.errors import ConfigError


def random_crop(rng, images, padding: int):
    """Pads each image by `padding` zeros on every side and crops back at a random offset.

    Args:
      rng: a PRNG key.
      images: [batch, height, width, channels].
      padding: pixels of padding per side.

    Returns:
      Images of the input's shape.
    """
    if padding <= 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)  # [batch, (dy, dx)]

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def horizontal_flip(rng, images):
    """Mirrors each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def augment_images(rng, images, *, crop_padding: int = 0, flip: bool = False):
    """The configured augmentations of a batch of images [batch, H, W, C]."""
    if images.ndim != 4:
        raise ConfigError(
            f"image augmentation needs inputs [batch, height, width, channels], got "
            f"shape {images.shape}; turn augment off for this dataset"
        )
    crop_rng, flip_rng = jax.random.split(rng)
    images = random_crop(crop_rng, images, crop_padding)
    if flip:
        images = horizontal_flip(flip_rng, images)
    return images
