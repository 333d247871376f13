"""Losses and metrics of the supervised tasks, and the perceptron rule."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data import Dataset
from dl.errors import ConfigError
from dl.tasks import TASKS, make_task
from dl.train.step import masked_mean, masked_sums


def dataset(kind="classification", classes=3, y=None):
    y = np.zeros(4, np.int32) if y is None else y
    return Dataset(
        "toy",
        {"train": {"x": np.zeros((4, 2), np.float32), "y": y}},
        kind,
        classes,
        {"target_scale": {"mean": 0.0, "std": 2.0}},
    )


def test_classification_loss_and_accuracy():
    task = make_task("classification", dataset())
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    batch = {"y": jnp.array([0, 2])}
    num, den = task.loss(logits, batch)
    expected = -jax.nn.log_softmax(logits)[jnp.arange(2), batch["y"]]
    np.testing.assert_allclose(num, expected, rtol=1e-6)
    acc = task.metrics(logits, batch)["accuracy"]
    assert float(masked_mean(acc, jnp.ones(2))) == 0.5


def test_masked_examples_do_not_count():
    task = make_task("classification", dataset())
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [9.0, 0.0, 0.0]])
    batch = {"y": jnp.array([0, 2, 1])}
    mask = jnp.array([1.0, 1.0, 0.0])
    sums = masked_sums(task.metrics(logits, batch), mask)
    assert float(sums["accuracy"][0]) == 1.0 and float(sums["accuracy"][1]) == 2.0


def test_binary_classification_rejects_multiclass_data():
    with pytest.raises(ConfigError, match="needs labels 0/1"):
        make_task("binary_classification", dataset(classes=3))


def test_regression_reports_errors_in_data_units():
    task = make_task("regression", dataset("regression", None, np.zeros(4, np.float32)))
    out = jnp.array([[1.0], [-1.0]])
    batch = {"y": jnp.array([0.0, 0.0])}
    m = task.metrics(out, batch)
    np.testing.assert_allclose(m["loss"][0], [1.0, 1.0])  # standardized units
    np.testing.assert_allclose(m["mse"][0], [4.0, 4.0])  # std 2: errors of 2 in data units
    np.testing.assert_allclose(m["mae"][0], [2.0, 2.0])


def test_task_and_dataset_kinds_must_agree():
    with pytest.raises(ConfigError, match="use task 'regression'"):
        make_task("classification", dataset("regression", None, np.zeros(4, np.float32)))
    with pytest.raises(ConfigError, match="unknown task 'ranking'.*classification"):
        make_task("ranking", dataset())
    assert set(TASKS) >= {"classification", "binary_classification", "regression", "perceptron"}


def classic_perceptron(x, y, epochs, lr):
    """Rosenblatt's rule, written directly: w <- w + lr (y - step(w.x + b)) x."""
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(epochs):
        for xi, yi in zip(x, y, strict=True):
            predicted = 1.0 if xi @ w + b >= 0 else 0.0
            w = w + lr * (yi - predicted) * xi
            b = b + lr * (yi - predicted)
    return w, b


def test_perceptron_criterion_gradient_is_the_classic_update():
    task = make_task("perceptron", dataset(classes=2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 > 0).astype(np.float64)
    w, b = np.zeros(3), 0.0
    lr = 0.5
    for _ in range(3):
        for xi, yi in zip(x, y, strict=True):

            def loss(params, xi=xi, yi=yi):
                z = jnp.asarray(xi) @ params[0] + params[1]
                num, _ = task.loss(z[None, None], {"y": jnp.array([yi], jnp.int32)})
                return num[0]

            gw, gb = jax.grad(loss)((jnp.asarray(w), jnp.asarray(b)))
            w, b = w - lr * np.asarray(gw), b - lr * float(gb)
    w_ref, b_ref = classic_perceptron(x, y, 3, lr)
    np.testing.assert_allclose(w, w_ref, atol=1e-5)
    assert b == pytest.approx(b_ref, abs=1e-5)


@pytest.mark.parametrize(
    "dataset_cfg, task_name, written",
    [
        (dict(name="iris"), "classification", ["confusion_test.json", "confusion_test.png"]),
        (dict(name="karate", standardize="none"), "node_classification", ["confusion_test.json"]),
        (dict(name="shapes", num_samples=20, image_size=32), "detection", ["detections_test.png"]),
    ],
)
def test_tasks_draw_their_own_figures(tmp_path, dataset_cfg, task_name, written):
    import json

    import ml_collections

    from dl.data import load_dataset

    data = load_dataset(ml_collections.ConfigDict(dataset_cfg))
    task = make_task(task_name, data)
    split = data.splits["test"]
    if task_name == "detection":
        outputs = np.random.default_rng(0).normal(size=(len(split["x"]), 4, 4, 10 + 3))
    else:
        shape = (len(split["x"]), *split["y"].shape[1:], task.num_outputs())
        outputs = np.random.default_rng(0).normal(size=shape)
    predictions = jax.tree.map(np.asarray, task.predictions(jnp.asarray(outputs), split))
    files = task.figures(outputs, predictions, split, "test", str(tmp_path))
    assert {os.path.basename(f) for f in files} >= set(written)
    for name in written:
        assert (tmp_path / name).stat().st_size > 0
    if task_name == "node_classification":
        # Only the nodes the test split counts enter its confusion matrix.
        with open(tmp_path / "confusion_test.json") as f:
            counts = np.asarray(json.load(f)["counts"])
        assert counts.sum() == int(split["label_mask"].sum())
