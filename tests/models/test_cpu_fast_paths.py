"""dl.models.fast_paths: one switch turns every CPU fast path off, and both ways agree."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from dl.models import fast_paths
from dl.models.cnn import CNN, LeNet5
from dl.models.conv import resolve_implementation as conv_implementation
from dl.models.dense import resolve_implementation as dense_implementation
from dl.models.dropout import Dropout
from dl.models.mlp import MLP
from dl.models.pool import max_pool

ON_CPU = jax.default_backend() == "cpu"


def test_switch_reads_the_environment_at_every_call(monkeypatch):
    monkeypatch.delenv(fast_paths.ENV_VAR, raising=False)
    assert fast_paths.enabled()
    for off in ("0", "false", "No", " off "):
        monkeypatch.setenv(fast_paths.ENV_VAR, off)
        assert not fast_paths.enabled()
    monkeypatch.setenv(fast_paths.ENV_VAR, "1")
    assert fast_paths.enabled()


def test_disabled_turns_every_decision_to_the_standard_computation():
    with fast_paths.disabled():
        assert fast_paths.decisions() == {
            "enabled": False,
            "backend": jax.default_backend(),
            "dropout": "jax.random",
            "max_pool": "flax",
            "conv": "xla",
            "dense": "xla",
        }
        assert conv_implementation("auto", 1) == "xla"
        assert dense_implementation("auto", 1024, 10) == "xla"
        # What a layer is given explicitly is used either way.
        assert conv_implementation("banded", 1) == "banded"
        assert dense_implementation("transposed", 1024, 10) == "transposed"
    assert fast_paths.enabled()
    if ON_CPU:
        assert fast_paths.decisions()["conv"] == "banded"
        assert fast_paths.decisions()["dense"] == "transposed"
        assert fast_paths.decisions()["dropout"] == "unrolled"


def _both_ways(fn, *args):
    """fn(*args) traced with the fast paths on, then off (fresh traces each time)."""
    on = jax.jit(lambda *a: fn(*a))(*args)
    with fast_paths.disabled():
        off = jax.jit(lambda *a: fn(*a))(*args)
    return on, off


def test_dropout_masks_and_max_pool_are_bitwise_equal_both_ways():
    x = jax.random.normal(jax.random.key(0), (8, 12, 12, 6))

    def dropout(x):
        def f(x):
            rngs = {"dropout": jax.random.key(3)}
            return jnp.sum(Dropout(0.4).apply({}, x, deterministic=False, rngs=rngs) ** 2)

        return jax.value_and_grad(f)(x)

    def pool(x):
        ties = jnp.round(x)  # many equal maxima: the gradient's choice of input shows
        return jax.value_and_grad(lambda x: jnp.sum(max_pool(x, (2, 2), (2, 2)) ** 3))(ties)

    for fn in (dropout, pool):
        (value_on, grad_on), (value_off, grad_off) = _both_ways(fn, x)
        np.testing.assert_array_equal(value_on, value_off)
        np.testing.assert_array_equal(grad_on, grad_off)


@pytest.mark.parametrize(
    "name, model",
    [
        ("cnn", CNN(conv_features=(4, 8), dense_sizes=(32,), dropout_rate=0.3)),
        ("lenet5", LeNet5(num_outputs=10)),
        ("mlp", MLP(hidden_sizes=(64,), num_outputs=10, dropout_rate=0.3)),
    ],
)
def test_models_agree_with_and_without_fast_paths(name, model):
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    variables = model.init(jax.random.key(2), x)

    def loss(params):
        logits = model.apply(
            {**variables, "params": params}, x, train=True, rngs={"dropout": jax.random.key(4)}
        )
        return jnp.sum(logits**2), logits

    def value_and_grad(params):
        return jax.value_and_grad(loss, has_aux=True)(params)

    ((_, logits_on), grads_on), ((_, logits_off), grads_off) = _both_ways(
        value_and_grad, variables["params"]
    )
    np.testing.assert_allclose(logits_on, logits_off, rtol=1e-4, atol=1e-5)
    for on, off in zip(jax.tree.leaves(grads_on), jax.tree.leaves(grads_off), strict=True):
        scale = float(np.max(np.abs(off))) or 1.0
        np.testing.assert_allclose(on, off, rtol=1e-4, atol=1e-5 * scale)


PROBE = """
import json
import jax
import jax.numpy as jnp
from dl.models import fast_paths
from dl.models.conv import Conv
from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.pool import max_pool

def jaxpr(module, x, **kw):
    variables = module.init(jax.random.key(0), x)
    return str(jax.make_jaxpr(lambda v, x: module.apply(v, x, **kw))(variables, x))

x = jnp.ones((4, 8, 8, 1))
drop = Dropout(0.5)
dropout = str(jax.make_jaxpr(
    lambda x: drop.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
)(x))
print(json.dumps({
    "decisions": fast_paths.decisions(),
    "dense_transposed": "optimization_barrier" in jaxpr(Dense(10), jnp.ones((4, 64))),
    "conv_xla": "conv_general_dilated" in jaxpr(Conv(4), x),
    "dropout_jax_random": "random_bits" in dropout or "threefry2x32" in dropout,
    "pool_flax": "reduce_window_max" in str(jax.make_jaxpr(
        lambda x: max_pool(x, (2, 2), strides=(2, 2)))(x)),
}))
"""


def _probe(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != fast_paths.ENV_VAR}
    env["JAX_PLATFORMS"] = "cpu"
    if value is not None:
        env[fast_paths.ENV_VAR] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_environment_variable_switches_what_is_traced():
    off = _probe("0")
    assert off["decisions"]["enabled"] is False
    assert not off["dense_transposed"] and off["conv_xla"]
    assert off["dropout_jax_random"] and off["pool_flax"]
    on = _probe(None)
    assert on["decisions"]["enabled"] is True
    assert on["dense_transposed"] and not on["conv_xla"]
    assert not on["dropout_jax_random"] and not on["pool_flax"]
