"""A dense layer with `flax.linen.Dense`'s parameters and a choice of product layout.

`Dense` is a drop-in for `flax.linen.Dense`: the same parameters (`kernel`
[in, features], `bias` [features]) and initializers, so checkpoints do not
depend on it. It computes the same `x @ kernel + bias` one of two ways:

  'xla'         `x @ kernel`, as flax does.
  'transposed'  the product against a materialized `kernel.T` [features, in],
                contracting both last axes. Its kernel gradient is then the
                product `dy^T x` laid out [features, in], transposed after
                an `optimization_barrier` so that XLA cannot fold the
                transpose back into the product.
  'auto'        what `dl.models.fast_paths.dense_implementation` picks:
                'transposed' on a CPU for a narrow layer (few outputs, fewer
                than the inputs), 'xla' otherwise (and always 'xla' with the
                fast paths switched off).

Both forms use only standard primitives, so forward-mode differentiation,
vmap and higher derivatives work as with flax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import dl.models.fast_paths as fast_paths
from dl.errors import unknown_name

IMPLEMENTATIONS = ("auto", "xla", "transposed")


def resolve_implementation(implementation: str, in_features: int, features: int) -> str:
    """The implementation a layer uses: `implementation`, or for 'auto' the fast paths' choice.

    Args:
      implementation: one of IMPLEMENTATIONS.
      in_features: input width.
      features: output width.

    Returns:
      'xla' or 'transposed'.

    Raises:
      ConfigError: for an unknown implementation.
    """
    if implementation not in IMPLEMENTATIONS:
        raise unknown_name("dense implementation", implementation, IMPLEMENTATIONS)
    if implementation != "auto":
        return implementation
    return fast_paths.dense_implementation(in_features, features)


def dense_transposed(x: jax.Array, kernel: jax.Array, precision=None) -> jax.Array:
    """`x @ kernel` computed against `kernel.T`, whose gradient is laid out [features, in].

    Args:
      x: [..., in].
      kernel: [in, features].

    Returns:
      [..., features], equal to `x @ kernel`.
    """
    kernel_t = jax.lax.optimization_barrier(kernel.T)  # [features, in]
    return jax.lax.dot_general(x, kernel_t, (((x.ndim - 1,), (1,)), ((), ())), precision=precision)


class Dense(nn.Module):
    """A linear map over the last axis, with `flax.linen.Dense`'s parameters.

    Attributes:
      features: output size.
      use_bias: add a bias.
      dtype: compute dtype (None: from the input and the parameters).
      param_dtype: parameter dtype.
      precision: passed to the product.
      kernel_init: kernel initializer (LeCun normal, as flax's).
      bias_init: bias initializer (zeros).
      implementation: 'auto', 'xla' or 'transposed' (module docstring).
    """

    features: int
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., in] -> [..., features]."""
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (in_features, self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if resolve_implementation(self.implementation, in_features, self.features) == "xla":
            y = jax.lax.dot_general(
                x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=self.precision
            )
        else:
            y = dense_transposed(x, kernel, self.precision)
        if bias is not None:
            y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return y
