"""Tests for dl.models.rbf: the Gaussian unit, k-means, loading centres, XOR."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.errors import ConfigError
from dl.models.rbf import RBFNetwork, init_rbf_params, kmeans_centers, width_heuristic

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.float32)


def test_gaussian_unit_matches_formula():
    model = RBFNetwork(num_centers=3, num_outputs=2, init_width=0.7)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    _, state = model.apply(variables, x, mutable=["intermediates"])
    phi = np.asarray(state["intermediates"]["phi"][0])
    c = np.asarray(variables["params"]["centers"])
    sigma = np.exp(np.asarray(variables["params"]["log_widths"]))
    np.testing.assert_allclose(sigma, 0.7, rtol=1e-6)
    for i in range(5):
        for j in range(3):
            expected = np.exp(-np.sum((x[i] - c[j]) ** 2) / (2 * sigma[j] ** 2))
            np.testing.assert_allclose(phi[i, j], expected, rtol=1e-5, atol=1e-7)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(1)
    true = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    x = np.concatenate([c + 0.3 * rng.normal(size=(50, 2)) for c in true])
    found = kmeans_centers(x, 4, seed=0)
    order = [int(np.argmin(np.sum((found - c) ** 2, axis=1))) for c in true]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(found[order], true, atol=0.15)
    np.testing.assert_array_equal(found, kmeans_centers(x, 4, seed=0))
    with pytest.raises(ConfigError):
        kmeans_centers(x[:3], 4, seed=0)


def test_width_heuristics():
    centers = np.array([[0, 0], [3, 0], [0, 4]], np.float32)  # distances 3, 4, 5
    np.testing.assert_allclose(width_heuristic(centers, "mean"), 4.0)
    np.testing.assert_allclose(width_heuristic(centers, "max"), 5.0 / np.sqrt(6.0), rtol=1e-6)
    np.testing.assert_allclose(width_heuristic(centers, "nearest"), [3.0, 3.0, 4.0])
    with pytest.raises(ConfigError, match="unknown width rule"):
        width_heuristic(centers, "median")


@pytest.mark.parametrize("learn", [True, False])
def test_rbf_solves_xor_with_analytic_weights(learn):
    sigma = 0.5
    model = RBFNetwork(num_centers=4, num_outputs=1, learn_centers=learn, learn_widths=learn)
    variables = model.init(jax.random.key(0), XOR_X)
    variables = init_rbf_params(variables, centers=XOR_X, widths=sigma)
    collection = "params" if learn else "constants"
    np.testing.assert_array_equal(variables[collection]["centers"], XOR_X)
    sq = np.sum((XOR_X[:, None] - XOR_X[None]) ** 2, axis=-1)
    phi = np.exp(-sq / (2 * sigma**2))  # [4 inputs, 4 centres]
    weights = np.linalg.solve(phi, XOR_Y)
    variables["params"]["output"] = {
        "kernel": jnp.asarray(weights[:, None], jnp.float32),
        "bias": jnp.zeros((1,), jnp.float32),
    }
    out = np.asarray(model.apply(variables, XOR_X))[:, 0]
    np.testing.assert_allclose(out, XOR_Y, atol=1e-5)
    if not learn:
        assert set(variables["params"]) == {"output"}


def test_init_rbf_params_errors():
    model = RBFNetwork(num_centers=4, num_outputs=1)
    variables = model.init(jax.random.key(0), XOR_X)
    with pytest.raises(ConfigError, match="centers has shape"):
        init_rbf_params(variables, centers=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="no RBF 'centers'"):
        init_rbf_params({"params": {}}, centers=XOR_X)
