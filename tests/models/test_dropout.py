"""dl's Dropout draws exactly flax's masks, with the Threefry hash unrolled on CPUs."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.dropout import Dropout, bernoulli, threefry_bits

SHAPES = [(), (1,), (7,), (3, 5), (64, 1024), (2, 3, 4, 5)]


@pytest.mark.parametrize("seed", [0, 1, 2**31 + 5])
@pytest.mark.parametrize("shape", SHAPES)
def test_threefry_bits_are_jax_random_bits(seed, shape):
    key = jax.random.PRNGKey(seed)
    expected = jax.random.bits(key, shape)
    got = jax.jit(threefry_bits, static_argnums=1)(key, shape)
    assert got.dtype == expected.dtype == jnp.uint32
    np.testing.assert_array_equal(got, expected)
    for p in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(bernoulli(key, p, shape), jax.random.bernoulli(key, p, shape))


def test_typed_keys_and_other_generators():
    typed = jax.random.key(3)
    np.testing.assert_array_equal(
        bernoulli(typed, 0.3, (9, 9)), jax.random.bernoulli(typed, 0.3, (9, 9))
    )
    rbg = jax.random.key(3, impl="rbg")  # not Threefry: jax.random draws the mask
    np.testing.assert_array_equal(
        bernoulli(rbg, 0.3, (9, 9)), jax.random.bernoulli(rbg, 0.3, (9, 9))
    )


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("broadcast_dims", [(), (1,)])
def test_dropout_equals_flax_dropout(rate, broadcast_dims):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 6, 8)), jnp.float32)
    rngs = {"dropout": jax.random.PRNGKey(7)}
    expected = nn.Dropout(rate, broadcast_dims=broadcast_dims).apply(
        {}, x, deterministic=False, rngs=rngs
    )
    got = Dropout(rate, broadcast_dims=broadcast_dims).apply({}, x, deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(got, expected)
    kept = np.asarray(got) != 0
    if 0 < rate < 1:  # scaled survivors, and about the right share dropped
        np.testing.assert_allclose(
            np.asarray(got)[kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6
        )
        assert abs((~kept).mean() - rate) < 0.15
    same = Dropout(rate).apply({}, x, deterministic=True)
    np.testing.assert_array_equal(same, x)


SHARDED = """
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from dl.models.dropout import Dropout
x = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
mesh = Mesh(np.array(jax.devices()), ("data",))
xs = jax.device_put(x, NamedSharding(mesh, P("data")))
drop = jax.jit(lambda x, k: Dropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": k}))
key = jax.random.PRNGKey(11)
single = drop(x, key)
sharded = drop(xs, key)
assert len(sharded.sharding.device_set) == 4
np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
print("same")
"""


def test_masks_do_not_depend_on_sharding():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "same"
