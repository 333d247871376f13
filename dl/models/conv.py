"""A 2-D convolution layer with a choice of implementation.

`Conv` is a drop-in for `flax.linen.Conv` (same parameters: `kernel`
[kh, kw, in, out] and `bias` [out], same initializers, so checkpoints do not
depend on the implementation) that computes the convolution one of two ways:

  'xla'      `lax.conv_general_dilated`, which XLA lowers to the backend's
             convolution (cuDNN on a GPU, Eigen on a CPU).
  'patches'  patch extraction plus one matmul: the kh * kw shifted (strided)
             views of the input are stacked channels-first, [kh * kw, in,
             batch, out_h, out_w], and contracted with the kernel in a single
             dot. Its gradients are a dot and a sum of shifted slices.
  'auto'     'patches' on a CPU when the layer has few input channels (at
             most PATCHES_MAX_IN_FEATURES), 'xla' otherwise.

Why: XLA's CPU convolution is slow when the input has one or a few channels
(the first layer of an image model), where a conv is more memory movement
than arithmetic; there the patch matmul is about twice as fast, forward and
backward (figures in BUILD_NOTES.md). With many channels the backend's
convolution wins, and on GPUs cuDNN is used throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.errors import unknown_name

IMPLEMENTATIONS = ("auto", "xla", "patches")
PATCHES_MAX_IN_FEATURES = 4


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


def explicit_padding(
    padding, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) zero padding for a padding spec.

    Args:
      padding: 'SAME' (XLA's rule: output size ceil(size / stride), the
        extra pixel at the end), 'VALID', an int (each side), or a pair of
        (low, high) pairs.
      size: input (height, width).
      kernel: (kh, kw).
      strides: (sh, sw).
    """
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return (0, 0), (0, 0)
        if padding.upper() != "SAME":
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
        out = []
        for n, k, s in zip(size, kernel, strides, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    pairs = tuple(_pair(p) for p in padding)
    if len(pairs) != 2:
        raise ValueError(f"padding needs one (low, high) pair per spatial axis, got {padding!r}")
    return pairs


def conv_patches(x: jax.Array, kernel: jax.Array, strides=(1, 1), padding="VALID") -> jax.Array:
    """2-D cross-correlation as patch extraction plus one matmul.

    Args:
      x: [batch, height, width, in] (NHWC).
      kernel: [kh, kw, in, out] (HWIO).
      strides: (sh, sw).
      padding: as for `explicit_padding`.

    Returns:
      [batch, out_h, out_w, out], equal to `lax.conv_general_dilated` with
      the same arguments up to float rounding.
    """
    kh, kw, cin, cout = kernel.shape
    sh, sw = _pair(strides)
    (pt, pb), (pl, pr) = explicit_padding(padding, x.shape[1:3], (kh, kw), (sh, sw))
    xt = jnp.transpose(x, (3, 0, 1, 2))  # [in, batch, height, width]
    if pt or pb or pl or pr:
        xt = jnp.pad(xt, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    out_h = (xt.shape[2] - kh) // sh + 1
    out_w = (xt.shape[3] - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"input {tuple(x.shape[1:3])} (padded {tuple(xt.shape[2:])}) is smaller than "
            f"the kernel {(kh, kw)}"
        )
    views = [
        xt[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]  # each [in, batch, out_h, out_w]
    patches = jnp.stack(views, axis=0)  # [kh * kw, in, batch, out_h, out_w]
    return jnp.einsum("kcbhw,kcd->bhwd", patches, kernel.reshape(kh * kw, cin, cout))


def resolve_implementation(implementation: str, in_features: int) -> str:
    """'auto' -> 'patches' or 'xla' for this layer on the default backend."""
    if implementation not in IMPLEMENTATIONS:
        raise unknown_name("conv implementation", implementation, IMPLEMENTATIONS)
    if implementation != "auto":
        return implementation
    if jax.default_backend() == "cpu" and in_features <= PATCHES_MAX_IN_FEATURES:
        return "patches"
    return "xla"


class Conv(nn.Module):
    """2-D convolution over NHWC inputs, with `flax.linen.Conv`'s parameters.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw) or an int.
      strides: (sh, sw) or an int.
      padding: 'SAME', 'VALID', an int or ((top, bottom), (left, right)).
      use_bias: add a bias.
      dtype: compute dtype; parameters are param_dtype.
      param_dtype: parameter dtype.
      kernel_init: kernel initializer (LeCun normal, as flax's).
      bias_init: bias initializer (zeros).
      implementation: 'auto', 'xla' or 'patches' (module docstring).
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, height, width, in] -> [batch, out_h, out_w, features]."""
        kh, kw = _pair(self.kernel_size)
        strides = _pair(self.strides)
        cin = x.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, cin, self.features), self.param_dtype
        )
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        if resolve_implementation(self.implementation, cin) == "patches":
            y = conv_patches(x, kernel, strides, self.padding)
        else:
            padding = self.padding
            if not isinstance(padding, str):
                padding = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
            y = jax.lax.conv_general_dilated(
                x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y
