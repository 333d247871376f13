"""Residual networks (He et al. 2015, "Deep Residual Learning for Image Recognition").

`ResNet` is the ImageNet family (ResNet-18/34/50/101/152) laid out like torchvision,
so parameter counts match it exactly; `CifarResNet` is the CIFAR-10 family of section
4.2 (ResNet-20/32/56). Inputs are NHWC images (a rank-3 `[batch, height, width]` batch
gets a singleton channel axis); outputs are float32 logits `[batch, num_outputs]`.

Batch-norm statistics live in the 'batch_stats' collection: initialise with
`model.init(rng, x)` and, in training, call
`model.apply(variables, x, train=True, mutable=['batch_stats'])` which returns
`(logits, {'batch_stats': new_stats})`. With `train=False` the stored running
averages are used and nothing is mutated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.errors import unknown_name
from dl.models.cnn import to_nhwc
from dl.models.conv import Conv
from dl.models.dense import Dense
from dl.models.pool import max_pool
from dl.models.remat import rematerialize

# He et al. 2015 initialisation for convs feeding ReLUs, in torchvision's fan-out form.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(p: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((p, p), (p, p))


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> Conv:
    """Bias-free square conv with torchvision-style symmetric padding `kernel // 2`."""
    return Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=_pad(kernel // 2),
        use_bias=False,
        kernel_init=conv_kernel_init,
        dtype=dtype,
        name=name,
    )


def _norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
    )


class BasicBlock(nn.Module):
    """Two-layer residual block: `3x3 conv -> BN -> relu -> 3x3 conv -> BN`, add, relu.

    Attributes:
      filters: output channels.
      strides: stride of the first 3x3 conv (2 to halve the spatial size).
      shortcut: how the shortcut matches a changed shape: 'projection' (1x1 conv + BN,
          the paper's option B) or 'zero_pad' (stride subsampling plus zero channels,
          option A, parameter-free).
      dtype: compute dtype; parameters stay float32.
    """

    filters: int
    strides: int = 1
    shortcut: str = "projection"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Applies the block.

        Args:
          x: `[batch, height, width, in_channels]`.
          train: use batch statistics (and update running averages) in batch norm.

        Returns:
          `[batch, height / strides, width / strides, filters]`.
        """
        if self.shortcut not in ("projection", "zero_pad"):
            raise ValueError(
                f"unknown shortcut {self.shortcut!r}; expected 'projection' or 'zero_pad'"
            )
        y = _conv(self.filters, 3, self.strides, self.dtype, "conv1")(x)
        y = nn.relu(_norm(train, self.dtype, "bn1")(y))
        y = _conv(self.filters, 3, 1, self.dtype, "conv2")(y)
        y = _norm(train, self.dtype, "bn2")(y)  # [batch, height', width', filters]
        r = x  # [batch, height, width, in_channels]
        if r.shape != y.shape and self.shortcut == "projection":
            r = _conv(self.filters, 1, self.strides, self.dtype, "proj_conv")(x)
            r = _norm(train, self.dtype, "proj_bn")(r)
        elif r.shape != y.shape:
            r = r[:, :: self.strides, :: self.strides, :]  # [batch, height', width', in]
            extra = self.filters - r.shape[-1]
            if extra < 0:
                raise ValueError(
                    f"'zero_pad' shortcut cannot reduce channels {r.shape[-1]} -> {self.filters}"
                )
            r = jnp.pad(r, ((0, 0), (0, 0), (0, 0), (0, extra)))
        return nn.relu(y + r)


class Bottleneck(nn.Module):
    """Bottleneck block: `1x1 -> 3x3 -> 1x1 (x4 channels)` convs with BN, add, relu.

    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"); the shortcut is a
    1x1 conv + BN projection whenever the shape changes (option B).

    Attributes:
      filters: channels of the inner 1x1 and 3x3 convs; the output has
          `4 * filters` channels.
      strides: stride of the 3x3 conv.
      dtype: compute dtype; parameters stay float32.
    """

    filters: int
    strides: int = 1
    dtype: Any = jnp.float32

    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Applies the block.

        Args:
          x: `[batch, height, width, in_channels]`.
          train: use batch statistics (and update running averages) in batch norm.

        Returns:
          `[batch, height / strides, width / strides, 4 * filters]`.
        """
        out = self.filters * self.expansion
        y = _conv(self.filters, 1, 1, self.dtype, "conv1")(x)
        y = nn.relu(_norm(train, self.dtype, "bn1")(y))
        y = _conv(self.filters, 3, self.strides, self.dtype, "conv2")(y)
        y = nn.relu(_norm(train, self.dtype, "bn2")(y))
        y = _conv(out, 1, 1, self.dtype, "conv3")(y)
        y = _norm(train, self.dtype, "bn3")(y)  # [batch, height', width', 4 * filters]
        r = x  # [batch, height, width, in_channels]
        if r.shape != y.shape:
            r = _conv(out, 1, self.strides, self.dtype, "proj_conv")(x)
            r = _norm(train, self.dtype, "proj_bn")(r)
        return nn.relu(y + r)  # [batch, height', width', 4 * filters]


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 conv stem + BN + relu + 3x3/2 max pool, residual stages,
    global average pool, dense.

    Stage `i` has `stage_sizes[i]` blocks with `num_filters * 2**i` filters; the
    first block of every stage but the first uses stride 2.

    Attributes:
      stage_sizes: number of blocks per stage, e.g. `(2, 2, 2, 2)` for ResNet-18.
      block: `BasicBlock` or `Bottleneck` (any module class taking `filters`,
          `strides` and `dtype`), or its name in `BLOCKS`: "basic" or "bottleneck".
      num_filters: stem channels and filters of the first stage.
      num_outputs: number of logits.
      dtype: compute dtype; parameters stay float32.
      remat: "off", or a policy of `dl.models.remat.POLICIES`: each residual
          block's activations are recomputed in the backward pass.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: Callable[..., nn.Module] | str = BasicBlock
    num_filters: int = 64
    num_outputs: int = 1000
    dtype: Any = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: images, `[batch, height, width, channels]` or `[batch, height, width]`.
          train: use batch statistics in batch norm; apply with
              `mutable=['batch_stats']` to get the updated running averages.

        Returns:
          Logits `[batch, num_outputs]` (float32).
        """
        block = self.block
        if isinstance(block, str):
            if block not in BLOCKS:
                raise unknown_name("block", block, BLOCKS)
            block = BLOCKS[block]
        block = rematerialize(block, self.remat, static_argnums=(2,))  # (self, x, train)
        x = to_nhwc(x)  # [batch, height, width, channels]
        x = _conv(self.num_filters, 7, 2, self.dtype, "stem_conv")(x)
        x = _norm(train, self.dtype, "stem_bn")(x)
        x = max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=_pad(1))  # [b, h/4, w/4, f]
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                x = block(
                    filters=self.num_filters * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x, train)
        x = jnp.mean(x, axis=(1, 2))  # [batch, channels]
        x = Dense(self.num_outputs, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)  # [batch, num_outputs]


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block=Bottleneck)


class CifarResNet(nn.Module):
    """CIFAR ResNet (He et al. 2015, section 4.2): `6n + 2` weighted layers.

    3x3 conv (16) + BN + relu, then three stages of `n` basic blocks with 16, 32 and
    64 filters (the first block of stages 2 and 3 has stride 2), global average pool and
    dense. Shortcuts are option A: identity, or stride-2 subsampling with zero-padded
    extra channels when the shape changes, so they have no parameters.

    Attributes:
      num_blocks: `n`, the number of basic blocks per stage.
      num_filters: filters of the stem and the first stage (doubled per stage).
      num_outputs: number of logits.
      dtype: compute dtype; parameters stay float32.
      remat: "off", or a policy of `dl.models.remat.POLICIES` (see ResNet).
    """

    num_blocks: int = 3
    num_filters: int = 16
    num_outputs: int = 10
    dtype: Any = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: images, `[batch, height, width, channels]` or `[batch, height, width]`.
          train: use batch statistics in batch norm; apply with
              `mutable=['batch_stats']` to get the updated running averages.

        Returns:
          Logits `[batch, num_outputs]` (float32).
        """
        x = to_nhwc(x)  # [batch, height, width, channels]
        x = _conv(self.num_filters, 3, 1, self.dtype, "stem_conv")(x)
        x = _norm(train, self.dtype, "stem_bn")(x)
        x = nn.relu(x)  # [batch, height, width, num_filters]
        block = rematerialize(BasicBlock, self.remat, static_argnums=(2,))  # (self, x, train)
        for i in range(3):
            for j in range(self.num_blocks):
                x = block(
                    filters=self.num_filters * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    shortcut="zero_pad",
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x, train)
        x = jnp.mean(x, axis=(1, 2))  # [batch, 4 * num_filters]
        x = Dense(self.num_outputs, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)  # [batch, num_outputs]


ResNet20 = functools.partial(CifarResNet, num_blocks=3)
ResNet32 = functools.partial(CifarResNet, num_blocks=5)
ResNet56 = functools.partial(CifarResNet, num_blocks=9)
