"""Tests for dl.models.dense: flax's parameters, flax's results, every kind of derivative."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.dense import Dense, resolve_implementation


@pytest.mark.parametrize("implementation", ["xla", "transposed", "auto"])
@pytest.mark.parametrize("shape,features", [((64, 1024), 10), ((3, 5, 7), 2), ((4, 6), 16)])
def test_dense_equals_flax_dense_and_its_gradients(implementation, shape, features):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    ours = Dense(features, implementation=implementation)
    variables = nn.Dense(features).init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, variables
    )

    def loss(model, v, x):
        return jnp.sum(jnp.sin(model.apply(v, x)))

    ref_grads = jax.grad(loss, (1, 2))(nn.Dense(features), variables, x)
    grads = jax.grad(loss, (1, 2))(ours, variables, x)
    np.testing.assert_allclose(
        ours.apply(variables, x), nn.Dense(features).apply(variables, x), atol=1e-5
    )
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_transposed_dense_supports_forward_mode_and_second_derivatives():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4)), jnp.float32)
    variables = nn.Dense(2).init(jax.random.key(0), x)
    kernel = variables["params"]["kernel"]

    def f(model, kernel):
        v = {"params": {**variables["params"], "kernel": kernel}}
        return jnp.sum(jnp.tanh(model.apply(v, x)))

    ours = Dense(2, implementation="transposed")
    tangent = jnp.ones_like(kernel)
    np.testing.assert_allclose(
        jax.jvp(lambda k: f(ours, k), (kernel,), (tangent,))[1],
        jax.jvp(lambda k: f(nn.Dense(2), k), (kernel,), (tangent,))[1],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        jax.hessian(lambda k: f(ours, k))(kernel),
        jax.hessian(lambda k: f(nn.Dense(2), k))(kernel),
        atol=1e-5,
    )


def test_dense_mixed_precision_computes_in_bfloat16_with_float32_parameters():
    x = jnp.ones((2, 8))
    model = Dense(3, dtype=jnp.bfloat16, implementation="transposed")
    variables = model.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert model.apply(variables, x).dtype == jnp.bfloat16


def test_dense_implementation_is_checked_and_auto_picks_transposed_for_narrow_layers_on_cpu():
    with pytest.raises(
        ValueError,
        match="unknown dense implementation 'fast'; known dense implementations: "
        "auto, transposed, xla",
    ):
        Dense(2, implementation="fast").init(jax.random.key(0), jnp.ones((1, 4)))
    if jax.default_backend() == "cpu":
        assert resolve_implementation("auto", 1024, 10) == "transposed"
        assert resolve_implementation("auto", 784, 512) == "xla"  # wide
        assert resolve_implementation("auto", 4, 10) == "xla"  # widening
