"""Scalar reverse-mode autodiff (the lecture's backpropagation) against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl import autodiff as ad
from dl.models.mlp import MLP


def test_chain_rule_example_from_the_lecture():
    # y = sum_j u_j * v_j with u_j = x * w_j, so dy/dx = sum_j v_j * w_j.
    x = ad.Node(1.5)
    w = [ad.Node(v) for v in (0.2, -0.7, 1.1)]
    v = [ad.Node(c) for c in (0.5, 0.3, -2.0)]
    y = sum((x * wj) * vj for wj, vj in zip(w, v, strict=True))
    ad.backward(y)
    assert x.grad == pytest.approx(sum(a.value * b.value for a, b in zip(w, v, strict=True)))
    for wj, vj in zip(w, v, strict=True):
        assert wj.grad == pytest.approx(1.5 * vj.value)


def test_shared_node_accumulates_partial_derivatives():
    a = ad.Node(3.0)
    y = a * a + ad.exp(a)  # dy/da = 2a + e^a, a reached along two paths
    ad.backward(y)
    assert a.grad == pytest.approx(6.0 + np.exp(3.0))


def test_partials_start_at_zero_on_a_second_backward_pass():
    a = ad.Node(2.0)
    y = ad.tanh(a * 3.0)
    ad.backward(y)
    first = a.grad
    ad.backward(y)
    assert a.grad == pytest.approx(first)


def test_topological_order_puts_parents_first():
    a, b = ad.Node(1.0), ad.Node(2.0)
    c = a * b
    d = c + a
    order = ad.topological_order(d)
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for parent, _ in node.parents:
            assert position[id(parent)] < position[id(node)]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("hidden", [(), (3,), (4, 3)])
@pytest.mark.parametrize("output_activation", ["linear", "sigmoid"])
def test_scalar_backprop_equals_jax_grad(activation, hidden, output_activation):
    model = MLP(hidden_sizes=hidden, activation=activation, num_outputs=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(1), jnp.asarray(x))["params"]

    def loss_fn(p):
        out = model.apply({"params": p}, x)
        if output_activation == "sigmoid":
            out = jax.nn.sigmoid(out)
        return jnp.mean(0.5 * jnp.sum((out - y) ** 2, axis=-1))

    expected_loss, expected = jax.value_and_grad(loss_fn)(params)
    params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    loss, grads = ad.mlp_gradients(params64, x, y, activation, output_activation)
    assert loss == pytest.approx(float(expected_loss), rel=1e-5)
    jax.tree_util.tree_map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6),
        grads,
        jax.tree_util.tree_map(np.asarray, dict(expected)),
    )


def test_example1_backprop_matches_jax():
    """The seed's 2-2-2 sigmoid network, with a squared-error goal."""
    params = {
        "hidden_0": {"kernel": np.array([[0.1, 0.2], [0.3, 0.4]]), "bias": np.array([0.25, 0.25])},
        "output": {"kernel": np.array([[0.5, 0.7], [0.6, 0.8]]), "bias": np.array([0.35, 0.35])},
    }
    x, y = np.array([[0.1, 0.5]]), np.array([[0.05, 0.95]])
    loss, grads = ad.mlp_gradients(params, x, y, "sigmoid", "sigmoid")

    def loss_fn(p):
        out = jax.nn.sigmoid(
            MLP(hidden_sizes=(2,), activation="sigmoid", num_outputs=2).apply(
                {"params": p}, jnp.asarray(x, jnp.float32)
            )
        )
        return jnp.mean(0.5 * jnp.sum((out - y) ** 2, axis=-1))

    expected = jax.grad(loss_fn)(
        jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    )
    # Forward values of the seed: outputs 0.73492 and 0.77955.
    assert loss == pytest.approx(0.5 * ((0.73492 - 0.05) ** 2 + (0.77955 - 0.95) ** 2), abs=1e-4)
    jax.tree_util.tree_map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-7),
        grads,
        jax.tree_util.tree_map(np.asarray, expected),
    )
