"""Max pooling with `flax.linen.max_pool`'s values and derivatives, by block reshapes.

For windows that tile the input (strides equal to the window, no padding),
`max_pool` reshapes the map into blocks and takes the maximum of each,
instead of `lax.reduce_window`, whose derivative XLA computes with
`select_and_scatter`. Its derivative (`jax.custom_jvp`) passes each block's
tangent at the block's first maximum in row-major window order, which is the
input `select_and_scatter` picks, so gradients equal flax's bit for bit, ties
included; forward mode and higher derivatives work, as the rule is made of
standard operations. Other windows (overlapping, or needing padding), and
every window with the fast paths switched off (`dl.models.fast_paths`), use
`flax.linen.max_pool`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

import dl.models.fast_paths as fast_paths


def _window_blocks(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """[B, H, W, C] (H, W multiples of kh, kw) -> [B, H/kh, W/kw, C, kh * kw], row-major windows."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // kh, kh, w // kw, kw, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // kh, w // kw, c, kh * kw)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def block_max(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """Maximum of each kh x kw block of x [B, H, W, C], H and W multiples of kh and kw."""
    b, h, w, c = x.shape
    return x.reshape(b, h // kh, kh, w // kw, kw, c).max(axis=(2, 4))


@block_max.defjvp
def _block_max_jvp(kh, kw, primals, tangents):
    (x,), (dx,) = primals, tangents
    first = jnp.argmax(_window_blocks(x, kh, kw), axis=-1)  # [B, H/kh, W/kw, C]
    pick = jax.nn.one_hot(first, kh * kw, dtype=dx.dtype)
    return block_max(x, kh, kw), jnp.sum(_window_blocks(dx, kh, kw) * pick, axis=-1)


def _no_padding(padding, size: Sequence[int], window: Sequence[int]) -> bool:
    if isinstance(padding, str):
        # SAME pads nothing when the window tiles the input exactly.
        return padding == "VALID" or all(n % k == 0 for n, k in zip(size, window, strict=True))
    return all(tuple(p) == (0, 0) for p in padding)


def max_pool(x: jax.Array, window_shape, strides=None, padding="VALID") -> jax.Array:
    """`flax.linen.max_pool(x, window_shape, strides, padding)`, the same values and gradients.

    Args:
      x: [batch, height, width, features] (other ranks go to flax).
      window_shape: (kh, kw).
      strides: (sh, sw); flax's default is 1 in every dimension.
      padding: "VALID", "SAME" or ((top, bottom), (left, right)).
    """
    window = tuple(window_shape)
    strides = tuple(strides) if strides is not None else (1,) * len(window)
    tiles = x.ndim == 4 and strides == window and _no_padding(padding, x.shape[1:3], window)
    if not (tiles and fast_paths.block_pooling()):
        return nn.max_pool(x, window, strides=strides, padding=padding)
    kh, kw = window
    oh, ow = x.shape[1] // kh, x.shape[2] // kw
    if oh == 0 or ow == 0:  # let flax report the window larger than the input
        return nn.max_pool(x, window, strides=strides, padding=padding)
    return block_max(x[:, : oh * kh, : ow * kw], kh, kw)  # VALID drops the remainder
