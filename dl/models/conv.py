"""A 2-D convolution layer with a choice of implementation.

`Conv` is a drop-in for `flax.linen.Conv` (same parameters: `kernel`
[kh, kw, in, out] and `bias` [out], same initializers, so checkpoints do not
depend on the implementation) that computes the convolution one of three ways:

  'xla'      `lax.conv_general_dilated`, which XLA lowers to the backend's
             convolution (cuDNN on a GPU, Eigen on a CPU).
  'banded'   one matmul of row windows of the input against a banded kernel
             matrix (`conv_banded`): each block of adjacent output columns
             is a window of the kh input rows under it times a matrix whose
             columns are the kernel shifted by one stride each.
  'patches'  patch extraction plus one matmul: the kh * kw shifted (strided)
             views of the input are stacked channels-first, [kh * kw, in,
             batch, out_h, out_w], and contracted with the kernel in a single
             dot. Its gradients are a dot and a sum of shifted slices.
  'auto'     what `dl.models.fast_paths.conv_implementation` picks: 'banded'
             on a CPU for a stride-1 layer with few input channels, 'xla'
             otherwise (and always 'xla' with the fast paths switched off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import dl.models.fast_paths as fast_paths
from dl.errors import unknown_name

IMPLEMENTATIONS = ("auto", "xla", "banded", "patches")


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


def output_geometry(
    size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int], padding
) -> tuple[tuple[tuple[int, int], tuple[int, int]], tuple[int, int]]:
    """The explicit padding and the output (height, width) of a convolution.

    Raises:
      ValueError: if the padded input is smaller than the kernel.
    """
    pads = explicit_padding(padding, size, kernel, strides)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(size, pads, strict=True))
    out = tuple((n - k) // s + 1 for n, k, s in zip(padded, kernel, strides, strict=True))
    if min(out) < 1:
        raise ValueError(
            f"input {tuple(size)} (padded {padded}) is smaller than the kernel {tuple(kernel)}"
        )
    return pads, out


def _layer_geometry(x: jax.Array, kernel: jax.Array, strides, padding):
    """(kh, kw, in, out), (sh, sw), explicit pads and (out_h, out_w) of an NHWC/HWIO layer."""
    kh, kw, cin, cout = kernel.shape
    sh, sw = _pair(strides)
    pads, out = output_geometry(x.shape[1:3], (kh, kw), (sh, sw), padding)
    return (kh, kw, cin, cout), (sh, sw), pads, out


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
    (kh, kw, cin, cout), (sh, sw), ((pt, pb), (pl, pr)), (out_h, out_w) = _layer_geometry(
        x, kernel, strides, padding
    )
    xt = jnp.transpose(x, (3, 0, 1, 2))  # [in, batch, height, width]
    if pt or pb or pl or pr:
        xt = jnp.pad(xt, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    views = [
        xt[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]  # each [in, batch, out_h, out_w]
    patches = jnp.stack(views, axis=0)  # [kh * kw, in, batch, out_h, out_w]
    return jnp.einsum("kcbhw,kcd->bhwd", patches, kernel.reshape(kh * kw, cin, cout))


def banded_block_width(out_width: int, features: int) -> int:
    """Output columns per band for `conv_banded`: about 64 output values per row.

    The band matrix multiplies a row of `block * features` outputs; around 64
    that is wide enough for an efficient matmul, while the zeros in the band
    (a factor `(block - 1) * stride + kw` over `kw`) stay few.
    """
    target = max(1, min(out_width, round(64 / max(features, 1))))
    blocks = -(-out_width // target)
    return -(-out_width // blocks)


def conv_banded(
    x: jax.Array, kernel: jax.Array, strides=(1, 1), padding="VALID", block: int | None = None
) -> jax.Array:
    """2-D cross-correlation as one matmul against a banded kernel matrix.

    Each output row is computed in blocks of `block` adjacent output columns.
    A block reads `win = (block - 1) * sw + kw` adjacent input columns of the
    `kh` input rows under it, and its outputs are that [kh, win, in] window
    times a band matrix [kh * win * in, block * out] whose column `q` holds the
    kernel shifted right by `q * sw` (zeros elsewhere). So the whole layer is
    one matmul of [batch * out_h * blocks, kh * win * in] by that band matrix,
    built from `kh` row views of the input (not `kh * kw` patch views), and its
    gradients are one matmul each plus sums of shifted slices. With `block=1`
    it is the patch matmul of `conv_patches`.

    Args:
      x: [batch, height, width, in] (NHWC).
      kernel: [kh, kw, in, out] (HWIO).
      strides: (sh, sw).
      padding: as for `explicit_padding`.
      block: output columns per band; by default `banded_block_width`.

    Returns:
      [batch, out_h, out_w, out], equal to `lax.conv_general_dilated` with
      the same arguments up to float rounding.
    """
    (kh, kw, cin, cout), (sh, sw), ((pt, pb), (pl, pr)), (out_h, out_w) = _layer_geometry(
        x, kernel, strides, padding
    )
    width = x.shape[2] + pl + pr
    block = banded_block_width(out_w, cout) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be a positive number of output columns, got {block}")
    blocks = -(-out_w // block)
    win = (block - 1) * sw + kw
    # Block b reads input columns [b * step, b * step + win): whole chunks of
    # `step` columns from b * step on, and the first columns of the chunk
    # after them. Cutting the row views into whole chunks by a reshape
    # (rather than slicing out each window) keeps the input gradient to
    # win / step + 1 full-size additions, whatever the number of blocks.
    # Extra zero columns on the right make every chunk read whole; outputs
    # past out_w are cropped below.
    step = block * sw
    whole, rest = divmod(win, step)
    needed = (blocks + whole + (1 if rest else 0) - 1) * step
    pr += max(needed - width, 0)
    if pt or pb or pl or pr:
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    batch = x.shape[0]
    rows = jnp.stack(
        [x[:, i : i + sh * (out_h - 1) + 1 : sh] for i in range(kh)], axis=2
    )  # [batch, out_h, kh, padded width, in]

    def chunks(start: int) -> jax.Array:  # [batch, out_h, kh, blocks, step, in]
        part = rows[:, :, :, start : start + blocks * step]
        return part.reshape(batch, out_h, kh, blocks, step, cin)

    pieces = [chunks(j * step) for j in range(whole)]
    if rest:
        pieces.append(chunks(whole * step)[:, :, :, :, :rest])
    windows = jnp.concatenate(pieces, axis=4) if len(pieces) > 1 else pieces[0]
    windows = jnp.transpose(windows, (0, 1, 3, 2, 4, 5))  # [batch, out_h, blocks, kh, win, in]
    band = jnp.stack(
        [
            jnp.pad(kernel, ((0, 0), (q * sw, win - q * sw - kw), (0, 0), (0, 0)))
            for q in range(block)
        ],
        axis=3,
    )  # [kh, win, in, block, out]
    y = jnp.dot(
        windows.reshape(batch * out_h * blocks, kh * win * cin),
        band.reshape(kh * win * cin, block * cout),
    )  # [batch * out_h * blocks, block * out]
    return y.reshape(batch, out_h, blocks * block, cout)[:, :, :out_w]


def resolve_implementation(
    implementation: str, in_features: int, strides=(1, 1), out_size: tuple[int, int] | None = None
) -> str:
    """The implementation a layer uses: `implementation`, or for 'auto' the fast paths' choice.

    Args:
      implementation: one of IMPLEMENTATIONS.
      in_features: input channels.
      strides: (sh, sw) or an int.
      out_size: output (height, width), or None when unknown.

    Returns:
      'xla', 'banded' or 'patches'.

    Raises:
      ConfigError: for an unknown implementation.
    """
    if implementation not in IMPLEMENTATIONS:
        raise unknown_name("conv implementation", implementation, IMPLEMENTATIONS)
    if implementation != "auto":
        return implementation
    return fast_paths.conv_implementation(in_features, _pair(strides), out_size)


class Conv(nn.Module):
    """2-D convolution over NHWC inputs, with `flax.linen.Conv`'s parameters.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> layer = Conv(features=4, kernel_size=3)
      >>> x = jnp.ones((2, 8, 8, 1))  # [batch, height, width, channels]
      >>> variables = layer.init(jax.random.key(0), x)
      >>> variables["params"]["kernel"].shape  # [kh, kw, in, out]
      (3, 3, 1, 4)
      >>> layer.apply(variables, x).shape  # 'SAME' padding keeps 8x8
      (2, 8, 8, 4)

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
      implementation: 'auto', 'xla', 'banded' or 'patches' (module docstring).
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
        pads, out_size = output_geometry(x.shape[1:3], (kh, kw), strides, self.padding)
        implementation = resolve_implementation(self.implementation, cin, strides, out_size)
        if implementation == "banded":
            y = conv_banded(x, kernel, strides, pads)
        elif implementation == "patches":
            y = conv_patches(x, kernel, strides, pads)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y
