"""RBF and mixture-of-experts experiments end to end: k-means start, resume, expert report."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from dl.data import load_dataset
from dl.errors import ConfigError
from dl.models.mixture import GatedMixture
from dl.models.modular import MixtureOfExperts
from dl.tools.expert_report import expert_report, format_table
from dl.train import Checkpoints, build, train

XOR_POINTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_TABLE = np.array([0, 1, 1, 0])


def quiet_train(config, workdir):
    return train(config, str(workdir), stream=io.StringIO())


def restore(config, workdir):
    exp = build(config)
    state, _, _ = Checkpoints(str(workdir), read_only=True).restore(exp.abstract_state())
    return exp, state


def tree_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def _predict_xor(exp, state):
    variables = {"params": state.params, **state.model_state}
    logits = exp.model.apply(variables, jnp.asarray(XOR_POINTS), train=False)
    return (np.asarray(logits)[:, 0] > 0).astype(int)


@pytest.fixture(scope="module")
def rbf_xor_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rbf_xor")
    return quiet_train(load_config("rbf_xor"), workdir), workdir


def test_rbf_xor_learns_the_truth_table(rbf_xor_run):
    summary, workdir = rbf_xor_run
    assert summary["converged"] is True and summary["train"]["accuracy"] == 1.0
    exp, state = restore(load_config("rbf_xor"), workdir)
    np.testing.assert_array_equal(_predict_xor(exp, state), XOR_TABLE)


def test_fixed_kmeans_centres_on_the_four_points_stay_put(tmp_path):
    c = load_config("rbf_xor")
    c.model.num_centers = 4
    c.model.learn_centers = c.model.learn_widths = False
    summary = quiet_train(c, tmp_path)
    assert summary["train"]["accuracy"] == 1.0
    exp, state = restore(c, tmp_path)
    centers = np.asarray(state.model_state["constants"]["centers"])
    # k-means with as many centres as points puts one centre on each point.
    order = np.lexsort(centers.T[::-1])
    np.testing.assert_allclose(centers[order], XOR_POINTS, atol=1e-6)
    np.testing.assert_array_equal(_predict_xor(exp, state), XOR_TABLE)


def _short_moons(steps):
    c = load_config("rbf_moons")
    c.num_train_steps = steps
    c.schedule.name = "constant"
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 20
    return c


def test_rbf_centres_start_at_a_kmeans_fixed_point():
    c = _short_moons(40)
    exp = build(c)
    state = exp.init_state()
    centers = np.asarray(state.params["centers"])  # [k, 2]
    x = exp.dataset.splits["train"]["x"]
    nearest = np.argmin(((x[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    for j in range(len(centers)):
        np.testing.assert_allclose(x[nearest == j].mean(0), centers[j], atol=1e-4)
    dist = np.sqrt(((centers[:, None] - centers[None]) ** 2).sum(-1)) + np.diag([np.inf] * 16)
    widths = np.exp(np.asarray(state.params["log_widths"]))
    np.testing.assert_allclose(widths, dist.min(1), rtol=1e-5)


def test_rbf_resume_does_not_reinitialise_and_is_exact(tmp_path):
    summary = quiet_train(_short_moons(40), tmp_path / "whole")
    assert summary["test"]["accuracy"] >= 0.85
    quiet_train(_short_moons(20), tmp_path / "resumed")
    summary = quiet_train(_short_moons(40), tmp_path / "resumed")
    assert summary["step"] == 40
    _, whole = restore(_short_moons(40), tmp_path / "whole")
    _, resumed = restore(_short_moons(40), tmp_path / "resumed")
    assert tree_equal(whole.params, resumed.params)
    assert tree_equal(whole.opt_state, resumed.opt_state)


def test_gated_mixture_defaults_compute_the_mixture_of_experts():
    x = jax.random.normal(jax.random.key(1), (7, 5))
    fields = dict(num_experts=3, expert_hidden_sizes=(6,), num_outputs=4)
    variables = jax.jit(GatedMixture(**fields).init)(jax.random.key(0), x)
    np.testing.assert_allclose(
        jax.jit(GatedMixture(**fields).apply)(variables, x),
        jax.jit(MixtureOfExperts(**fields).apply)(variables, x),
        rtol=1e-6,
    )
    mixed = jax.jit(GatedMixture(**fields, combine="probabilities").apply)(variables, x)
    np.testing.assert_allclose(np.exp(mixed).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ConfigError, match="context_features"):
        GatedMixture(**fields, context_features=5).init(jax.random.key(0), x)


def test_modular_digits_short_run(tmp_path):
    c = load_config("modular_digits")
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 300
    summary = quiet_train(c, tmp_path)
    assert summary["test"]["accuracy"] >= 0.9
    report = expert_report(str(tmp_path), group_by="y")
    assert np.asarray(report["table"]).shape == (10, 4)
    with pytest.raises(ConfigError, match="not a field"):
        expert_report(str(tmp_path))


def test_experts_specialise_on_the_subproblems(tmp_path):
    c = load_config("moe_subproblems")
    c.num_train_steps = 1500
    summary = quiet_train(c, tmp_path)
    assert summary["test"]["accuracy"] >= 0.95
    report = expert_report(str(tmp_path))
    table = np.asarray(report["table"])
    assert table.shape == (3, 3)
    np.testing.assert_allclose(table.sum(1), 1.0, atol=1e-3)
    assert [g["name"] for g in report["groups"]] == ["xor", "circle", "linear"]
    test_size = load_dataset(c.dataset).size("test")
    assert sum(g["examples"] for g in report["groups"]) == test_size
    assert report["distinct_top_experts"] is True
    counts = np.asarray(report["top_counts"])
    assert counts.shape == (3, 3) and counts.sum() == test_size
    text = format_table(report)
    assert text.splitlines()[0].split()[:3] == ["problem_id", "examples", "accuracy"]
    json.dumps(report)


def test_expert_report_needs_a_mixture(rbf_xor_run):
    with pytest.raises(ConfigError, match="needs a mixture of experts"):
        expert_report(str(rbf_xor_run[1]))
