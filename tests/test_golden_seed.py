"""The lecture's worked examples, through the library's own modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data import Dataset
from dl.models.mlp import MLP
from dl.tasks import BinaryClassification, Classification


def _example1_params():
    # w1: i1->h1, w2: i1->h2, w3: i2->h1, w4: i2->h2, w5: h1->o1, w6: h2->o1,
    # w7: h1->o2, w8: h2->o2; a Dense kernel is [inputs, outputs].
    return {
        "hidden_0": {
            "kernel": jnp.array([[0.1, 0.2], [0.3, 0.4]]),
            "bias": jnp.array([0.25, 0.25]),
        },
        "output": {"kernel": jnp.array([[0.5, 0.7], [0.6, 0.8]]), "bias": jnp.array([0.35, 0.35])},
    }


def _binary_dataset():
    return Dataset(
        "example",
        {"train": {"x": np.zeros((1, 2)), "y": np.zeros(1, np.int32)}},
        "classification",
        2,
        {},
    )


def test_example1_forward_pass():
    model = MLP(hidden_sizes=(2,), activation="sigmoid", num_outputs=2)
    x = jnp.array([[0.1, 0.5]])
    outputs, state = model.apply(
        {"params": _example1_params()}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    inter = state["intermediates"]
    hidden_sums = inter["hidden_0"]["__call__"][0][0]
    np.testing.assert_allclose(hidden_sums, [0.41, 0.47], atol=1e-6)
    np.testing.assert_allclose(jax.nn.sigmoid(hidden_sums[1]), 0.61538, atol=5e-6)
    # The seed prints five decimals, cut rather than rounded (1.263068 -> 1.26306).
    np.testing.assert_allclose(outputs[0], [1.01977, 1.26306], atol=1e-5)
    # The sigmoid output layer of the example is the binary task's prediction.
    probabilities = BinaryClassification(_binary_dataset()).predict(outputs)
    np.testing.assert_allclose(probabilities[0], [0.73492, 0.77955], atol=1e-5)


@pytest.mark.parametrize(
    "logits",
    [
        [1000.0, 1001.0, 1002.0],
        [-1000.0, 0.0, 1000.0],
        [88.0, 89.0, -50.0, 3.0],
        [-1e4, -1e4 + 1.0, -1e4 + 2.0],
    ],
)
def test_softmax_properties_on_extreme_logits(logits):
    ds = Dataset(
        "d",
        {"train": {"x": np.zeros((1, 1)), "y": np.zeros(1, np.int32)}},
        "classification",
        len(logits),
        {},
    )
    y = Classification(ds).predict(jnp.array([logits], jnp.float32))[0]
    assert np.all(np.isfinite(y))
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(float(jnp.sum(y)), 1.0, rtol=1e-6)
    # Shift invariance: softmax(z) = softmax(z - max z), so large logits do not overflow.
    z = np.asarray(logits, np.float64)
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_softmax_strictly_inside_unit_interval_for_moderate_logits():
    ds = Dataset(
        "d", {"train": {"x": np.zeros((1, 1)), "y": np.zeros(1, np.int32)}}, "classification", 3, {}
    )
    y = Classification(ds).predict(jnp.array([[10.0, -10.0, 0.0]]))[0]
    assert np.all((y > 0) & (y < 1))
