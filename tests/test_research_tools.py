"""The research tools of issue 6: range test, sweeps, decision boundaries, baselines, logs.

Real runs on small problems, real files, the binaries as real subprocesses.
"""

import hashlib
import io
import json
import os
import re

import numpy as np
import pytest

from conftest import config_path, load_config, run_binary

FAST = [
    "--config.num_train_steps=300",
    "--config.eval_every_steps=100",
    "--config.checkpoint_every_steps=300",
    "--config.log_every_steps=50",
]


def _fast_capacity_config(steps: int = 300):
    c = load_config("capacity_moons")
    c.num_train_steps = steps
    c.eval_every_steps = 100
    c.checkpoint_every_steps = steps
    c.log_every_steps = 50
    return c


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def test_range_test_suggests_within_10x_of_the_best_rate_of_a_sweep(tmp_path):
    """A learning-rate sweep (the binary) and the range test on the same problem agree."""
    from dl.reporting.curves import plot_learning_curves
    from dl.tools.lr_finder import find_learning_rate, start_state
    from dl.train import build

    workdir = tmp_path / "sweep"
    rates = (0.001, 0.01, 0.1, 1.0)
    proc = run_binary(
        "experiments.sweep",
        f"--config={config_path('capacity_moons')}",
        f"--workdir={workdir}",
        "--sweep=optimizer.learning_rate=" + ",".join(map(str, rates)),
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])

    with open(workdir / "sweep.json") as f:
        table = json.load(f)
    for i, point in enumerate(table["points"], 1):  # each run numbered, with its steps/s and ETA
        prefix = rf"\[{i}/4\] {re.escape(point['name'])}: "
        end = re.search(prefix + r"(done|diverged).* \([\d.]+ s\)$", proc.stdout, re.M)
        assert end and end.group(1) == point["status"], proc.stdout
        if point["status"] == "done":
            assert re.search(prefix + r"step \d+/300 .* steps/s, ETA ", proc.stdout), proc.stdout
    assert [p["overrides"]["optimizer.learning_rate"] for p in table["points"]] == list(rates)
    assert {p["status"] for p in table["points"]} <= {"done", "diverged"}
    done = [p for p in table["points"] if p["status"] == "done"]
    best = min(done, key=lambda p: p["validation"]["loss"])  # capacity_moons selects by loss
    assert table["best"] == best["name"] == printed["best"]
    for p in done:
        assert p["step"] == 300 and os.path.isdir(p["workdir"])
        assert os.path.basename(p["workdir"]) == p["name"]
        assert set(p["validation"]) == {"loss", "accuracy"}
    markdown = (workdir / "sweep.md").read_text()
    for p in table["points"]:
        assert f"| {p['overrides']['optimizer.learning_rate']} | {p['status']}" in markdown
    assert "gap (val - train loss)" in markdown and "(best)" in markdown
    for name in ("sweep_loss.png", "sweep_validation.png"):
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Learning curves of one of the runs, as the loop will draw them.
    png = tmp_path / "curves.png"
    assert plot_learning_curves(os.path.join(best["workdir"], "metrics.jsonl"), str(png)) == str(
        png
    )
    assert png.read_bytes()[:4] == b"\x89PNG"

    # Running the sweep again trains nothing: every point is reused.
    from dl.tools import sweep

    config = _fast_capacity_config()
    axis = sweep.parse_axis(config, "optimizer.learning_rate=" + ",".join(map(str, rates)))
    again = sweep.run_sweep(sweep.plan(config, [axis], check=False), str(workdir), log=len)
    assert all(r["reused"] for r in again)

    exp = build(config)
    state, start = start_state(exp, "")
    assert start.startswith("fresh initialization")
    result = find_learning_rate(exp, state, min_lr=1e-5, max_lr=10.0, num_steps=150)
    best_rate = best["overrides"]["optimizer.learning_rate"]
    assert best_rate / 10 <= result["suggestion"] <= best_rate * 10, (result, best_rate)
    assert result["steps_run"] < 150 and "diverged" in result["stopped"]
    rates_run = np.asarray(result["learning_rates"])
    assert rates_run[0] == pytest.approx(1e-5) and np.all(np.diff(rates_run) > 0)
    ratio = rates_run[1:] / rates_run[:-1]
    np.testing.assert_allclose(ratio, (10.0 / 1e-5) ** (1 / 149), rtol=1e-4)


def _file_hashes(directory) -> dict:
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_range_test_leaves_the_state_and_the_checkpoints_unchanged(tmp_path):
    from dl.tools.lr_finder import find_learning_rate, lr_find, trees_equal
    from dl.train import Checkpoints, build, train

    config = _fast_capacity_config(steps=50)
    config.optimizer.weight_decay = 1e-4  # the chain's decay term is part of the test too
    workdir = str(tmp_path / "run")
    train(config, workdir, stream=io.StringIO())
    exp = build(config)
    state, _, step = Checkpoints(workdir, read_only=True).restore(exp.abstract_state())
    assert step == 50
    before = jax_host_copy(state)

    progress = io.StringIO()
    result = find_learning_rate(exp, state, min_lr=1e-4, max_lr=10.0, num_steps=60, stream=progress)
    assert trees_equal(before, state)  # also fails if any leaf had been donated (deleted)
    lines = progress.getvalue().splitlines()
    assert lines[0].startswith("step 10/60 (17%): ") and "steps/s, ETA" in lines[0]
    assert lines[-1] == f"range test: {result['stopped']}" and "\r" not in progress.getvalue()
    assert int(state.step) == 50 and result["steps_run"] > 10

    checkpoints_before = _file_hashes(os.path.join(workdir, "checkpoints"))
    out = lr_find(config, workdir, min_lr=1e-4, max_lr=10.0, num_steps=60)
    assert out["start"].startswith("checkpoint step 50")
    assert out["state_unchanged"] and out["state_sha256_before"] == out["state_sha256_after"]
    assert _file_hashes(os.path.join(workdir, "checkpoints")) == checkpoints_before
    with open(os.path.join(workdir, "lr_find.json")) as f:
        stored = json.load(f)
    assert len(stored["learning_rates"]) == len(stored["losses"]) == len(stored["smoothed_losses"])
    assert stored["suggestion"] == stored["suggestions"]["min_over_10"]
    assert stored["suggestion"] == pytest.approx(stored["min_loss_learning_rate"] / 10)
    assert (tmp_path / "run" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


def jax_host_copy(tree):
    import jax

    return jax.tree_util.tree_map(lambda x: np.array(jax.device_get(x), copy=True), tree)


def test_sweep_rejects_an_unknown_field_or_a_bad_value_before_any_run(tmp_path):
    workdir = tmp_path / "sweep"
    cases = [
        (["--sweep=optimizer.learnig_rate=0.1,1.0"], ["optimizer.learnig_rate", "learning_rate"]),
        (
            ["--sweep=optimizer.name=sgd,adam", "--sweep=optimizer.learning_rate=0.1,fast"],
            ["'fast'", "optimizer.learning_rate", "number"],
        ),
    ]
    for args, words in cases:
        proc = run_binary(
            "experiments.sweep",
            f"--config={config_path('capacity_moons')}",
            f"--workdir={workdir}",
            *args,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        _no_traceback(proc)
        assert proc.stderr.startswith("error: "), proc.stderr
        for word in words:
            assert word in proc.stderr, (word, proc.stderr)
        assert not workdir.exists()  # nothing was created, nothing trained


def test_sweep_checks_every_grid_point_before_the_first_run(tmp_path):
    from dl.errors import ConfigError
    from dl.tools import sweep

    config = load_config("capacity_moons")
    with pytest.raises(ConfigError, match="sweep point optimizer.name=adamm: unknown optimizer"):
        sweep.sweep(config, ["optimizer.name=sgd,adamm"], str(tmp_path / "a"), log=len)
    with pytest.raises(ConfigError, match="batch_size=4096: batch_size 4096 is larger"):
        sweep.sweep(config, ["batch_size=16,4096"], str(tmp_path / "b"), log=len)
    with pytest.raises(ConfigError, match=r"model.hidden_sizes.*write \(16,\)"):
        sweep.sweep(config, ["model.hidden_sizes=16,32"], str(tmp_path / "c"), log=len)
    assert not os.listdir(tmp_path)


def test_sweep_ranks_detection_points_by_their_map_not_their_loss():
    from dl.tools import sweep

    c = load_config("yolo_shapes")
    c.dataset.num_samples = 40
    points = sweep.plan(c, [sweep.parse_axis(c, "optimizer.learning_rate=0.001,0.002")])
    # map50 is a metric of the detection task as built for its data, not of its class.
    metric, direction = sweep.selection_metric(c, points[0].directions)
    assert (metric, direction) == ("map50", "max")
    results = [
        {"name": "low_map", "status": "done", "validation": {"loss": 0.5, "map50": 0.2}},
        {"name": "high_map", "status": "done", "validation": {"loss": 1.0, "map50": 0.9}},
    ]
    assert sweep.best_point(results, metric, direction)["name"] == "high_map"


def test_sweep_values_parse_to_the_field_types():
    from dl.errors import ConfigError
    from dl.tools import sweep

    config = load_config("capacity_moons")
    axis = sweep.parse_axis(config, "model.hidden_sizes=(),(8,),(512,512)")
    assert axis.values == [(), (8,), (512, 512)]
    assert [sweep.format_value(v) for v in axis.values] == ["none", "8", "512x512"]
    assert sweep.parse_axis(config, "batch_size=8,16").values == [8, 16]
    assert sweep.parse_axis(config, "optimizer.learning_rate=1,1e-3").values == [1.0, 0.001]
    assert sweep.parse_axis(config, "augment.horizontal_flip=true,false").values == [True, False]
    points = sweep.plan(
        config,
        [sweep.parse_axis(config, "optimizer.name=sgd,adam"), sweep.parse_axis(config, "seed=0,1")],
        check=False,
    )
    assert [p.name for p in points] == [
        "optimizer.name=sgd,seed=0",
        "optimizer.name=sgd,seed=1",
        "optimizer.name=adam,seed=0",
        "optimizer.name=adam,seed=1",
    ]
    assert points[2].config.optimizer.name == "adam" and config.optimizer.name == "adam"
    assert points[0].config.optimizer.name == "sgd" and points[1].config.seed == 1
    for bad in ("seed=0.5", "dataset=moons", "batch_size=", "nothing", "seed=1,1"):
        with pytest.raises(ConfigError):
            sweep.parse_axis(config, bad)


def test_decision_boundaries_of_0_1_and_2_hidden_layers(tmp_path):
    workdir = tmp_path / "boundaries"
    proc = run_binary(
        "experiments.decision_boundary",
        f"--config={config_path('boundaries_spirals')}",
        f"--workdir={workdir}",
        "--hidden_layers=0,1,2",
        "--resolution=60",
        "--config.num_train_steps=100",
        "--config.eval_every_steps=100",
        "--config.checkpoint_every_steps=100",
        "--config.log_every_steps=100",
    )
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "decision_boundaries.png").read_bytes()[:4] == b"\x89PNG"
    with open(workdir / "decision_boundaries.json") as f:
        result = json.load(f)
    assert [p["model"].split(" (")[0] for p in result["panels"]] == [
        "0 hidden layers",
        "1 hidden layer",
        "2 hidden layers",
    ]
    for panel in result["panels"]:
        assert panel["step"] == 100
        assert sum(panel["region_fractions"].values()) == pytest.approx(1.0)
        assert 0.0 <= panel["accuracy"]["train"] <= 1.0
    assert (workdir / "sweep.md").exists()

    from dl.tools.boundaries import draw_boundaries

    png = str(tmp_path / "figure" / "again.png")  # trained runs are drawn without training
    again = draw_boundaries([str(workdir / "model.hidden_sizes=8x8")], png, resolution=30)
    assert again["panels"][0]["model"] == "2 hidden layers (8x8, tanh)"
    assert again["panels"][0]["step"] == 100 and os.path.exists(png)


def test_decision_boundaries_need_2d_data(tmp_path):
    from dl.data import load_dataset
    from dl.errors import ConfigError
    from dl.tools.boundaries import check_2d

    config = load_config("mlp_digits")
    config.dataset.name = "iris"
    with pytest.raises(ConfigError, match=r"4 input feature\(s\).*exactly 2 are needed"):
        check_2d(load_dataset(config.dataset))

    workdir = tmp_path / "b"
    proc = run_binary(
        "experiments.decision_boundary",
        f"--config={config_path('logistic_breast_cancer')}",
        f"--workdir={workdir}",
        "--hidden_layers=0,1",
    )
    assert proc.returncode == 2, proc.stderr
    _no_traceback(proc)
    assert "30 input feature(s)" in proc.stderr and "exactly 2" in proc.stderr
    assert not workdir.exists()  # refused before training


def test_baselines_on_iris_use_exactly_the_dl_splits(tmp_path):
    from dl.data import load_dataset
    from dl.tools.baselines import CLASSIFIERS, LABELS, run_baselines, write_tables

    config = load_config("mlp_digits")
    config.dataset.name = "iris"
    config.dataset.standardize = "feature"
    dataset = load_dataset(config.dataset)
    result = run_baselines(config)
    assert result["sizes"] == {s: dataset.size(s) for s in ("train", "validation", "test")}
    assert result["sizes"] == dataset.info["sizes"]
    assert result["features"] == 4 and result["kind"] == "classification"
    assert list(result["methods"]) == list(CLASSIFIERS)
    for name, row in result["methods"].items():
        assert row["test"]["accuracy"] > 0.8, (name, row)
        assert row["validation"]["accuracy"] > 0.8, (name, row)
        assert row["train"]["accuracy"] >= 0.8, (name, row)
    json_path, md_path = write_tables(result, str(tmp_path))
    markdown = open(md_path).read()
    for name in CLASSIFIERS:
        assert LABELS[name] in markdown
    assert f"train {dataset.size('train')}, validation {dataset.size('validation')}" in markdown
    with open(json_path) as f:
        assert json.load(f)["methods"]["knn"]["test"] == result["methods"]["knn"]["test"]


def test_baselines_binary_for_regression_reports_data_units(tmp_path):
    proc = run_binary(
        "experiments.baselines",
        f"--config={config_path('linear_diabetes')}",
        f"--workdir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    mse = line["test mse"]
    assert set(mse) == {"linear_regression", "knn", "svm_rbf", "decision_tree"}
    assert 2000 < mse["linear_regression"] < 4000  # in the target's own units
    assert (tmp_path / "baselines.md").exists()

    from dl.errors import ConfigError
    from dl.tools.baselines import run_baselines

    with pytest.raises(ConfigError, match="naive_bayes for a regression dataset"):
        run_baselines(load_config("linear_diabetes"), ["naive_bayes"])
