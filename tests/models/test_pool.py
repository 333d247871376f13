"""dl's max_pool: flax's values and derivatives, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.pool import max_pool

RNG = np.random.default_rng(0)

CASES = [
    # (input shape, window, strides, padding)
    ((4, 8, 8, 3), (2, 2), (2, 2), "VALID"),  # tiles: the block path
    ((4, 9, 7, 3), (2, 2), (2, 2), "VALID"),  # VALID drops the last row and column
    ((2, 12, 12, 5), (3, 3), (3, 3), "VALID"),
    ((2, 6, 9, 2), (2, 3), (2, 3), "SAME"),  # SAME that pads nothing
    ((2, 8, 8, 2), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 7, 7, 2), (2, 2), (2, 2), "SAME"),  # pads: flax
    ((2, 9, 9, 2), (3, 3), (2, 2), "VALID"),  # overlapping: flax
    ((2, 8, 8, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet's stem pool: flax
]


def inputs(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    return {
        "normal": jnp.asarray(x),
        "ties": jnp.asarray(np.round(x)),  # many equal values in a window
        "relu": jnp.asarray(np.maximum(x, 0)),
    }


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_values_and_derivatives_equal_flax(shape, window, strides, padding):
    def ours(x):
        return max_pool(x, window, strides=strides, padding=padding)

    def flax(x):
        return nn.max_pool(x, window, strides=strides, padding=padding)

    for name, x in inputs(shape).items():
        np.testing.assert_array_equal(jax.jit(ours)(x), jax.jit(flax)(x), err_msg=name)

        def loss(f):
            return lambda y: jnp.sum(jnp.sin(3.0 * f(y)))

        np.testing.assert_array_equal(
            jax.jit(jax.grad(loss(ours)))(x), jax.jit(jax.grad(loss(flax)))(x), err_msg=name
        )
        v = jnp.asarray(RNG.standard_normal(shape).astype(np.float32))
        np.testing.assert_array_equal(
            jax.jvp(ours, (x,), (v,))[1], jax.jvp(flax, (x,), (v,))[1], err_msg=name
        )
        hvp_ours = jax.jvp(jax.grad(loss(ours)), (x,), (v,))[1]
        hvp_flax = jax.jvp(jax.grad(loss(flax)), (x,), (v,))[1]
        np.testing.assert_allclose(hvp_ours, hvp_flax, rtol=1e-6, atol=1e-6, err_msg=name)


def test_window_larger_than_the_input_gives_flax_empty_map():
    x = jnp.ones((1, 1, 1, 2))
    assert max_pool(x, (2, 2), strides=(2, 2)).shape == (1, 0, 0, 2)
    assert nn.max_pool(x, (2, 2), strides=(2, 2)).shape == (1, 0, 0, 2)
