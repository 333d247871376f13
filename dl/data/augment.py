"""Data augmentation in JAX, applied inside the jitted training step.

The config's `augment` section declares it; `make_augment(config.augment)`
turns it into a batch transform `Augment(rng, batch) -> batch` that the step
applies to every training batch. Randomness comes from the step's key
(fold_in of the run's key and the step), so a resumed run augments exactly as
an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class Augment:
    """Image augmentation of a batch's inputs `x` [batch, H, W, C], as a batch transform.

    Attributes:
      crop_padding: pixels of zero padding before a random crop back to size (0: none).
      horizontal_flip: mirror each image left-right with probability 1/2.

    >>> import jax.numpy as jnp
    >>> batch = {"x": jnp.ones((2, 4, 4, 1)), "y": jnp.zeros(2)}
    >>> Augment(crop_padding=1)(jax.random.PRNGKey(0), batch)["x"].shape
    (2, 4, 4, 1)
    """

    crop_padding: int = 0
    horizontal_flip: bool = False

    def __call__(self, rng, batch: dict) -> dict:
        batch = dict(batch)
        batch["x"] = augment_images(
            rng, batch["x"], crop_padding=self.crop_padding, flip=self.horizontal_flip
        )
        return batch


def make_augment(cfg) -> Augment | None:
    """The batch transform a config's `augment` section declares, or None for none.

    Args:
      cfg: the `augment` section (fields crop_padding, horizontal_flip) or None.

    Returns:
      An Augment, or None when it would change nothing.
    """
    if cfg is None:
        return None
    padding = int(cfg.get("crop_padding", 0) or 0)
    if padding < 0:
        raise ConfigError(f"augment.crop_padding must be >= 0, got {padding}")
    augment = Augment(padding, bool(cfg.get("horizontal_flip", False)))
    return augment if augment.crop_padding or augment.horizontal_flip else None
