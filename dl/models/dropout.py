"""Dropout with `flax.linen.Dropout`'s masks, the hash written out on CPUs.

`threefry_bits` computes the Threefry hash behind `jax.random` unrolled,
from standard operations, as one elementwise computation, and returns the
very bits `jax.random.bits` returns, so `Dropout` draws exactly flax's masks:
same key, same mask, on one device or sharded over many (the counters are an
iota, which XLA partitions).

It is used on CPUs (`dl.models.fast_paths.unrolled_dropout`) for Threefry
keys with `jax_threefry_partitionable` on (JAX's default); anywhere else, and
with the fast paths switched off, `jax.random.bernoulli` draws the mask, as
in flax.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import dl.models.fast_paths as fast_paths

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(key1, key2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of counters (x1, x2), unrolled.

    Args:
      key1, key2: uint32 scalars, the two words of the key.
      x1, x2: uint32 arrays of one shape, the two words of each counter.

    Returns:
      The two uint32 words of each hashed counter.
    """
    ks = (key1, key2, key1 ^ key2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def threefry_bits(key_words: jax.Array, shape) -> jax.Array:
    """uint32 bits equal to `jax.random.bits(key, shape)` for a partitionable Threefry key.

    Args:
      key_words: the key's data, uint32 [2].
      shape: the output shape (fewer than 2**32 elements).
    """
    size = int(np.prod(shape))
    if size >= 2**32:
        raise ValueError(f"threefry_bits draws fewer than 2**32 values, not {size}")
    # JAX's counters are a 64-bit iota split into words: high words 0 here.
    low = lax.iota(np.uint32, size).reshape(shape) if shape else jnp.zeros((), np.uint32)
    h1, h2 = threefry2x32(key_words[0], key_words[1], jnp.zeros_like(low), low)
    return h1 ^ h2


def _unrolled_words(key) -> jax.Array | None:
    """The key's uint32 words if `threefry_bits` reproduces jax.random here, else None."""
    if not fast_paths.unrolled_dropout() or not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        return jax.random.key_data(key)
    if jax.config.jax_default_prng_impl != "threefry2x32" or key.shape != (2,):
        return None
    return key


def bernoulli(key, p: float, shape) -> jax.Array:
    """`jax.random.bernoulli(key, p, shape)` for a float `p`, with the unrolled hash on CPUs."""
    words = _unrolled_words(key)
    if words is None:
        return jax.random.bernoulli(key, p, shape)
    bits = threefry_bits(words, tuple(shape))
    # jax.random.uniform: the top 23 bits as the mantissa of a float in [1, 2), minus 1.
    one = np.array(1.0, np.float32).view(np.uint32)
    floats = lax.bitcast_convert_type((bits >> np.uint32(9)) | one, jnp.float32) - 1.0
    return jnp.maximum(floats, 0.0) < p


class Dropout(nn.Dropout):
    """`flax.linen.Dropout` (same fields, same masks) drawing its mask with `bernoulli`."""

    @nn.compact
    def __call__(self, inputs, deterministic: bool | None = None, rng=None):
        """Masks `inputs` with probability `rate` and scales the rest by 1 / (1 - rate)."""
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            shape[dim] = 1
        mask = jnp.broadcast_to(bernoulli(rng, keep_prob, shape), inputs.shape)
        return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
