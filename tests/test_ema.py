"""The moving average of the parameters (`ema.decay`): in the state, checkpointed, evaluated."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dl
from conftest import load_config, run_binary
from dl.data import raw_splits
from dl.errors import ConfigError
from dl.train import Checkpoints, build, train
from dl.train.stream_feeder import evaluator_for


def test_the_average_after_n_steps_is_the_formula_over_the_parameters():
    c = load_config("mlp_digits")
    c.ema.decay = 0.9
    exp = build(c)
    state = exp.init_state()
    step = jax.jit(exp.steps.train_step)
    train_x = exp.dataset.splits["train"]
    expected = jax.tree_util.tree_map(np.asarray, state.params)  # the average starts there
    for n in range(5):
        batch = {k: jnp.asarray(v[64 * n : 64 * (n + 1)]) for k, v in train_x.items()}
        state, _ = step(state, batch)
        params = jax.tree_util.tree_map(np.asarray, state.params)
        expected = jax.tree_util.tree_map(lambda e, p: 0.9 * e + 0.1 * p, expected, params)
    for got, want, last in zip(
        jax.tree_util.tree_leaves(state.ema_params),
        jax.tree_util.tree_leaves(expected),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        assert not np.allclose(got, last)  # an average, not the parameters


def _config(steps):
    c = load_config("mlp_digits")
    c.ema.decay, c.ema.select_best = 0.9, True
    c.schedule.name = "constant"  # the same rates whatever num_train_steps says
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 20
    c.num_train_steps = steps
    return c


def test_the_average_is_checkpointed_resumed_selected_on_and_evaluated(tmp_path):
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    summary = train(_config(60), straight, stream=io.StringIO())
    train(_config(20), resumed, stream=io.StringIO())
    train(_config(60), resumed, stream=io.StringIO())
    exp = build(_config(60))
    a = Checkpoints(straight, read_only=True).restore(exp.abstract_state())[0]
    b = Checkpoints(resumed, read_only=True).restore(exp.abstract_state())[0]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # ema_params included
    assert len(jax.tree_util.tree_leaves(a.ema_params)) == len(jax.tree_util.tree_leaves(a.params))

    # The loop's evaluations scored the average: the summary's validation metrics are
    # those of the average, not of the parameters.
    evaluator = evaluator_for(exp, 256)
    on_average = evaluator(a.with_ema_weights(), "validation")
    assert summary["validation"] == pytest.approx(on_average, rel=1e-6)
    assert summary["validation"] != pytest.approx(evaluator(a, "validation"), rel=1e-6)
    with open(f"{straight}/metrics.jsonl") as f:
        best = max(
            (e for e in map(json.loads, f) if e["split"] == "validation"),
            key=lambda e: e["accuracy"],
        )
    assert summary["best"]["accuracy"] == pytest.approx(best["accuracy"])

    results = {}
    for weights in ("ema", "params"):
        proc = run_binary(
            "experiments.evaluate",
            f"--workdir={straight}",
            f"--weights={weights}",
            "--split=validation",
            "--nofigures",
        )
        assert proc.returncode == 0, proc.stderr
        results[weights] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["ema"]["weights"] == "ema"
    # dl.load too: the average's predictions, not the parameters'.
    raw = raw_splits(load_config("mlp_digits").dataset)["validation"]
    labels = dl.load(straight, weights="ema").predict(raw["x"])["labels"]
    assert float(np.mean(labels == raw["y"])) == pytest.approx(on_average["accuracy"], abs=1e-12)
    assert results["ema"]["loss"] == pytest.approx(on_average["loss"], rel=1e-6)
    assert results["params"]["loss"] != pytest.approx(on_average["loss"], rel=1e-6)


def test_a_run_without_an_average_is_refused_ema_weights_and_bad_fields(tmp_path):
    c = load_config("mlp_digits")
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 4
    train(c, str(tmp_path), stream=io.StringIO())
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}", "--weights=ema")
    assert proc.returncode == 2, proc.stderr
    assert "keeps no moving average of its parameters (ema.decay was 0)" in proc.stderr
    assert "Traceback" not in proc.stderr
    c.ema.select_best = True
    with pytest.raises(ConfigError, match="ema.select_best=True .* set ema.decay in"):
        build(c)
    c.ema.select_best, c.ema.decay = False, 1.0
    with pytest.raises(ConfigError, match=r"ema.decay"):
        build(c)
