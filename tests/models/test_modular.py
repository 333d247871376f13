"""Tests for dl.models.modular: the mixture equation, the gate and the specialisation table."""

import jax
import numpy as np

from dl.data.subproblems import distinct_subproblems
from dl.models.modular import (
    MixtureOfExperts,
    expert_specialisation,
    gate_probabilities,
    load_balance_loss,
)


def _mlp(params, x):
    """dl.models.mlp.MLP with one ReLU hidden layer, in numpy."""
    h = np.maximum(x @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"], 0.0)
    return h @ params["output"]["kernel"] + params["output"]["bias"]


def _softmax(z):
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def test_moe_output_is_gate_weighted_sum():
    model = MixtureOfExperts(
        num_experts=3, expert_hidden_sizes=(6,), gate_hidden_sizes=(4,), num_outputs=2
    )
    x, _, _ = distinct_subproblems(16, seed=0)
    variables = model.init(jax.random.key(0), x)
    params = jax.tree.map(np.asarray, variables["params"])
    out = np.asarray(model.apply(variables, x))
    gate = _softmax(_mlp(params["gate"], x))  # [batch, experts]
    experts = np.stack([_mlp(params[f"expert_{e}"], x) for e in range(3)], axis=1)
    np.testing.assert_allclose(out, np.einsum("be,beo->bo", gate, experts), rtol=1e-5, atol=1e-5)
    probs = np.asarray(gate_probabilities(model, variables, x))
    np.testing.assert_allclose(probs, gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert float(load_balance_loss(probs)) >= 1.0 - 1e-6


def test_expert_specialisation_table():
    rng = np.random.default_rng(0)
    probs = _softmax(rng.normal(size=(50, 4)))
    problem = rng.integers(0, 3, 50)
    table = expert_specialisation(probs, problem)
    assert table.shape == (3, 4)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(table[1], probs[problem == 1].mean(axis=0), rtol=1e-6)
    assert expert_specialisation(probs, problem, num_problems=5)[4].sum() == 0.0
