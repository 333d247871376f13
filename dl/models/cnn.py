"""Convolutional classifiers: a configurable LeNet-style CNN, LeNet-5 and AlexNet.

All modules take NHWC images (`[batch, height, width, channels]`; a rank-3
`[batch, height, width]` batch gets a singleton channel axis) and return logits
`[batch, num_outputs]` in float32. `flax.linen.Conv` computes a cross-correlation
(the kernel is not flipped), as in the usual deep-learning definition of convolution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.errors import unknown_name
from dl.models.conv import Conv
from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.pool import max_pool
from dl.models.remat import rematerialize

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
}
POOLS = ("max", "avg", "none")


def to_nhwc(x: jax.Array) -> jax.Array:
    """Validates an image batch and returns it in NHWC layout.

    Args:
      x: images, `[batch, height, width, channels]` or `[batch, height, width]`.

    Returns:
      `x` as `[batch, height, width, channels]`; a rank-3 input gets `channels=1`.

    Raises:
      ValueError: if `x` has any other rank.
    """
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise ValueError(
            "expected images of shape [batch, height, width, channels] or "
            f"[batch, height, width], got shape {tuple(x.shape)} (rank {x.ndim})"
        )
    return x


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation function by name (one of `ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """Average-pools to a fixed spatial size, like `torch.nn.AdaptiveAvgPool2d`.

    Output cell `i` averages input rows `floor(i * H / out_h)` to
    `ceil((i + 1) * H / out_h)` (exclusive), and likewise for columns, so windows may
    overlap or, when the input is smaller than the output, repeat.

    Args:
      x: `[batch, height, width, channels]`.
      output_size: `(out_height, out_width)`.

    Returns:
      `[batch, out_height, out_width, channels]`.
    """
    _, h, w, _ = x.shape
    out_h, out_w = output_size
    if (h, w) == (out_h, out_w):
        return x
    if h % out_h == 0 and w % out_w == 0:
        return nn.avg_pool(x, (h // out_h, w // out_w), strides=(h // out_h, w // out_w))

    def bounds(i: int, size: int, out: int) -> tuple[int, int]:
        return (i * size) // out, math.ceil((i + 1) * size / out)

    rows = []
    for i in range(out_h):
        r0, r1 = bounds(i, h, out_h)
        cols = []
        for j in range(out_w):
            c0, c1 = bounds(j, w, out_w)
            cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))  # [batch, channels]
        rows.append(jnp.stack(cols, axis=1))  # [batch, out_width, channels]
    return jnp.stack(rows, axis=1)


class CNN(nn.Module):
    """Configurable LeNet-style CNN: conv stages, then a dense stack and a linear head.

    Each conv stage is conv -> activation -> pool (conv bias on, stride 1). The feature
    map is then flattened and passed through `Dense -> activation` for every entry of
    `dense_sizes`, dropout, and a final `Dense(num_outputs)`.

    Attributes:
      conv_features: output channels of each conv stage.
      kernel_size: square conv kernel side.
      pool: 'max', 'avg' or 'none' pooling after each conv stage.
      pool_size: square pooling window side, also used as the pooling stride.
      dense_sizes: widths of the hidden dense layers.
      activation: 'relu', 'tanh' or 'sigmoid'.
      dropout_rate: dropout rate before the output layer (rng name 'dropout').
      num_outputs: number of logits.
      padding: conv padding, 'SAME' or 'VALID' (or anything `nn.Conv` accepts).
      dtype: compute dtype; parameters stay float32.
      conv_implementation: 'auto', 'xla', 'banded' or 'patches' (dl.models.conv): how
        the convolutions are computed; the parameters are the same.
      remat: "off", or a policy of `dl.models.remat.POLICIES`: each conv stage
        (conv -> activation -> pool) is recomputed in the backward pass.
    """

    conv_features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    pool: str = "max"
    pool_size: int = 2
    dense_sizes: Sequence[int] = (128,)
    activation: str = "relu"
    dropout_rate: float = 0.0
    num_outputs: int = 10
    padding: Any = "SAME"
    dtype: Any = jnp.float32
    conv_implementation: str = "auto"
    remat: str = "off"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: images, `[batch, height, width, channels]` or `[batch, height, width]`.
          train: enables dropout (needs the 'dropout' rng when `dropout_rate > 0`).

        Returns:
          Logits `[batch, num_outputs]` (float32).
        """
        if self.pool not in POOLS:
            raise unknown_name("pool", self.pool, POOLS)
        act = get_activation(self.activation)
        x = to_nhwc(x)  # [batch, height, width, channels]
        window = (self.pool_size, self.pool_size)

        def stage(conv, x):  # [batch, height, width, c] -> [batch, height_i, width_i, features]
            x = act(conv(x))
            if self.pool != "none":
                if x.shape[1] < self.pool_size or x.shape[2] < self.pool_size:
                    raise ValueError(
                        f"feature map {x.shape[1:3]} after {conv.name} is smaller than "
                        f"the pooling window {window}; use a larger input or fewer stages"
                    )
                pool_fn = max_pool if self.pool == "max" else nn.avg_pool
                x = pool_fn(x, window, strides=window)
            return x

        stage = rematerialize(stage, self.remat)  # the parameters stay those of conv{i}
        for i, features in enumerate(self.conv_features):
            conv = Conv(
                features,
                (self.kernel_size, self.kernel_size),
                padding=self.padding,
                dtype=self.dtype,
                implementation=self.conv_implementation,
                name=f"conv{i}",
            )
            x = stage(conv, x)
        x = x.reshape((x.shape[0], -1))  # [batch, height_n * width_n * features_n]
        for i, size in enumerate(self.dense_sizes):
            x = act(Dense(size, dtype=self.dtype, name=f"dense{i}")(x))  # [batch, size]
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        x = Dense(self.num_outputs, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)  # [batch, num_outputs]


LeNet5 = functools.partial(
    CNN,
    conv_features=(6, 16),
    kernel_size=5,
    pool="avg",
    pool_size=2,
    dense_sizes=(120, 84),
    activation="tanh",
    padding="VALID",
)
"""LeNet-5 (LeCun et al. 1998), modernised: full C3 connectivity, average pooling
without trainable subsampling coefficients, tanh, and a plain linear output instead of
RBF units. With 'VALID' convs a 32x32 input gives the classic 5x5x16 feature map before
the 120/84 dense layers; 28x28 MNIST gives 4x4x16."""


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012), single-tower layout as in torchvision.

    `conv 64 11x11/4 pad 2 -> relu -> maxpool 3/2 -> conv 192 5x5 pad 2 -> relu ->
    maxpool 3/2 -> conv 384 3x3 -> relu -> conv 256 3x3 -> relu -> conv 256 3x3 ->
    relu -> maxpool 3/2 -> adaptive avgpool to pooled_size -> dropout -> dense 4096 ->
    relu -> dropout -> dense 4096 -> relu -> dense num_outputs`. With the defaults and
    224x224x3 input it has the 61,100,840 parameters of torchvision's `alexnet`.
    Local response normalisation from the paper is omitted, as in torchvision.

    Attributes:
      num_outputs: number of logits.
      dropout_rate: dropout rate before each of the two hidden dense layers.
      width_multiplier: scales every conv's channel count (rounded, at least 1).
      dense_size: width of the two hidden dense layers.
      stem_kernel: side of the first conv's kernel.
      stem_stride: stride of the first conv.
      stem_padding: symmetric zero padding of the first conv.
      pooled_size: side of the adaptive average pool before the classifier.
      dtype: compute dtype; parameters stay float32.
      remat: "off", or a policy of `dl.models.remat.POLICIES`: each conv stage
        (conv -> relu, and its pool) is recomputed in the backward pass.
    """

    num_outputs: int = 1000
    dropout_rate: float = 0.5
    width_multiplier: float = 1.0
    dense_size: int = 4096
    stem_kernel: int = 11
    stem_stride: int = 4
    stem_padding: int = 2
    pooled_size: int = 6
    dtype: Any = jnp.float32
    remat: str = "off"

    def _width(self, channels: int) -> int:
        return max(1, round(channels * self.width_multiplier))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: images, `[batch, height, width, channels]` or `[batch, height, width]`.
          train: enables dropout (needs the 'dropout' rng when `dropout_rate > 0`).

        Returns:
          Logits `[batch, num_outputs]` (float32).
        """
        x = to_nhwc(x)  # [batch, height, width, channels]
        input_hw = x.shape[1:3]

        def conv(features: int, kernel: int, stride: int, pad: int, name: str) -> Conv:
            return Conv(
                self._width(features),
                (kernel, kernel),
                strides=(stride, stride),
                padding=((pad, pad), (pad, pad)),
                dtype=self.dtype,
                name=name,
            )

        def pool3x3(y: jax.Array) -> jax.Array:
            if y.shape[1] < 3 or y.shape[2] < 3:
                raise ValueError(
                    f"feature map {y.shape[1:3]} is smaller than AlexNet's 3x3 pooling window "
                    f"(input {input_hw}); use larger images, or AlexNetTiny for 32x32"
                )
            return max_pool(y, (3, 3), strides=(2, 2))

        def stage(layer, y, pooled: bool):
            y = nn.relu(layer(y))
            return pool3x3(y) if pooled else y

        stage = rematerialize(stage, self.remat, static_argnums=(2,))  # (layer, y, pooled)
        k, s, p = self.stem_kernel, self.stem_stride, self.stem_padding
        x = stage(conv(64, k, s, p, "conv0"), x, True)  # 224 -> 55 -> 27
        x = stage(conv(192, 5, 1, 2, "conv1"), x, True)  # 27 -> 13
        x = stage(conv(384, 3, 1, 1, "conv2"), x, False)
        x = stage(conv(256, 3, 1, 1, "conv3"), x, False)
        x = stage(conv(256, 3, 1, 1, "conv4"), x, True)  # 13 -> 6
        x = adaptive_avg_pool(x, (self.pooled_size, self.pooled_size))  # [batch, 6, 6, 256]
        x = x.reshape((x.shape[0], -1))  # [batch, pooled_size**2 * channels]
        for i in range(2):
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(Dense(self.dense_size, dtype=self.dtype, name=f"dense{i}")(x))
        x = Dense(self.num_outputs, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)  # [batch, num_outputs]


AlexNetTiny = functools.partial(
    AlexNet,
    num_outputs=10,
    width_multiplier=0.25,
    dense_size=512,
    stem_kernel=3,
    stem_stride=1,
    stem_padding=1,
    pooled_size=3,
)
"""AlexNet for 32x32 inputs (CIFAR-sized): same five-conv / three-pool / three-dense
layout, but a 3x3 stride-1 stem (32 -> 32 -> pool 15 -> 15 -> pool 7 -> pool 3),
a quarter of the channels (16, 48, 96, 64, 64), 3x3 adaptive pooling, 512-wide hidden
dense layers and 10 outputs."""


class ConvFilter(nn.Module):
    """One convolution, no bias, no non-linearity: y = K * x (cross-correlation).

    The model of the lecture's "we want the model to learn the kernel": trained
    on input/output image pairs by least squares, its kernel converges to the
    kernel that made the outputs. Outputs are flattened to [batch, h' * w' * features]
    so that the regression task compares them with flattened target images.

    Attributes:
      features: output channels.
      kernel_size: square kernel size.
      padding: "VALID" (as in the lecture's worked example) or "SAME".
    """

    features: int = 1
    kernel_size: int = 3
    padding: str = "VALID"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = to_nhwc(x)
        y = Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            padding=self.padding,
            use_bias=False,
            dtype=self.dtype,
            name="conv",
        )(x)  # [batch, h', w', features]
        return y.reshape(y.shape[0], -1)
