"""experiments.predict and experiments.export on trained runs: real binaries, real checkpoints.

Each run is trained briefly by experiments.train; its raw test inputs (before
standardization: the source split with the same seed) go through the
binaries, and what comes out is compared with what experiments.evaluate and
experiments.decode report for the same checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, config_path, load_config, run_binary
from dl.data import raw_splits

DIGITS_STEPS = (
    "--config.num_train_steps=300",
    "--config.log_every_steps=100",
    "--config.eval_every_steps=100",
    "--config.checkpoint_every_steps=100",
)


def _train(name: str, workdir: str, *overrides: str) -> None:
    proc = run_binary(
        "experiments.train", f"--config={config_path(name)}", f"--workdir={workdir}", *overrides
    )
    assert proc.returncode == 0, proc.stderr


def _json_line(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _evaluate(workdir: str, checkpoint: str = "latest") -> dict:
    return _json_line(
        run_binary(
            "experiments.evaluate",
            f"--workdir={workdir}",
            f"--checkpoint={checkpoint}",
            "--split=test",
            "--nofigures",
        )
    )


def _predict(workdir: str, inputs: str, output: str, *flags: str):
    paths = (f"--workdir={workdir}", f"--input={inputs}", f"--output={output}")
    return run_binary("experiments.predict", *paths, *flags)


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _config_with(name: str, *overrides: str):
    """The config `name` with `--config.FIELD=VALUE` overrides applied (numbers parsed)."""
    config = load_config(name)
    for override in overrides:
        key, value = override.removeprefix("--config.").split("=", 1)
        *parents, last = key.split(".")
        target = config
        for part in parents:
            target = target[part]
        target[last] = type(target[last])(value) if target[last] is not None else value
    return config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """mlp_digits trained for 300 steps, and its raw test split in an npz file."""
    root = tmp_path_factory.mktemp("digits")
    workdir = str(root / "run")
    _train("mlp_digits", workdir, *DIGITS_STEPS)
    raw = raw_splits(load_config("mlp_digits").dataset)["test"]
    inputs = str(root / "test.npz")
    np.savez(inputs, x=raw["x"], y=raw["y"])  # y, a label, is ignored
    return workdir, inputs, raw


def test_predicted_labels_of_raw_inputs_give_the_evaluators_accuracy(digits_run, tmp_path):
    workdir, inputs, raw = digits_run
    assert os.path.isfile(os.path.join(workdir, "preprocessing.npz"))
    assert raw["x"].max() == 16.0  # raw pixel values, not standardized
    for checkpoint in ("latest", "best"):
        out = str(tmp_path / f"{checkpoint}.npz")
        result = _json_line(_predict(workdir, inputs, out, f"--checkpoint={checkpoint}"))
        assert result["examples"] == len(raw["y"])
        with np.load(out) as f:
            labels, probabilities = f["labels"], f["probabilities"]
        accuracy = float(np.mean(labels == raw["y"]))
        assert accuracy == _evaluate(workdir, checkpoint)["accuracy"]  # to the last digit
        assert probabilities.shape == (len(raw["y"]), 10)
        np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(labels, probabilities.argmax(1))

    out_csv = str(tmp_path / "latest.csv")
    _json_line(_predict(workdir, inputs, out_csv))
    header, rows = _read_csv(out_csv)
    assert header == ["labels"] + [f"probabilities_{i}" for i in range(10)]
    assert len(rows) == len(raw["y"])
    with np.load(str(tmp_path / "latest.npz")) as f:
        np.testing.assert_array_equal([int(r[0]) for r in rows], f["labels"])
        np.testing.assert_array_equal(
            np.array([[float(v) for v in r[1:]] for r in rows], np.float32), f["probabilities"]
        )


def test_bad_inputs_exit_2_with_a_message_and_no_checkpoint_exits_4(digits_run, tmp_path):
    workdir, inputs, raw = digits_run
    wrong = str(tmp_path / "wrong.npz")
    np.savez(wrong, x=raw["x"].reshape(len(raw["x"]), -1)[:, :10])
    other = str(tmp_path / "inputs.json")
    with open(other, "w") as f:
        f.write("{}")
    cases = {
        wrong: "inputs have shape (10,) per example, but the model was trained on (8, 8, 1)",
        str(tmp_path / "missing.npz"): "input not found",
        other: "unknown type '.json'",
        str(tmp_path): "holds no images",
    }
    for path, message in cases.items():
        proc = _predict(workdir, path, str(tmp_path / "out.npz"))
        assert proc.returncode == 2, (path, proc.stderr)
        assert "error: " in proc.stderr and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = _predict(workdir, inputs, str(tmp_path / "out.parquet"))
    assert proc.returncode == 2 and "unknown type '.parquet'" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(workdir, "config.json"), empty / "config.json")
    proc = _predict(str(empty), inputs, str(tmp_path / "out.npz"))
    assert proc.returncode == 4 and "no checkpoint" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "out.npz")


def test_a_run_without_preprocessing_recomputes_it_with_a_warning(digits_run, tmp_path):
    workdir, inputs, _ = digits_run
    old = str(tmp_path / "old")
    shutil.copytree(workdir, old)
    os.remove(os.path.join(old, "preprocessing.npz"))
    proc = _predict(old, inputs, str(tmp_path / "old.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "has no preprocessing.npz" in proc.stderr
    assert sum("preprocessing.npz" in line for line in proc.stderr.splitlines()) == 1
    _json_line(_predict(workdir, inputs, str(tmp_path / "new.npz")))
    with np.load(str(tmp_path / "old.npz")) as a, np.load(str(tmp_path / "new.npz")) as b:
        np.testing.assert_array_equal(a["probabilities"], b["probabilities"])
    assert not os.path.exists(os.path.join(old, "preprocessing.npz"))  # reading writes nothing


def _readme_snippet() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Predict and export") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's 'Predict and export' has a python block"
    return match.group(1)


def test_exported_model_runs_with_jax_alone_as_readme_says(digits_run, tmp_path):
    import dl

    workdir, inputs, raw = digits_run
    model = str(tmp_path / "model.jax")
    paths = (f"--workdir={workdir}", f"--output={model}")
    result = _json_line(run_binary("experiments.export", *paths))
    bad = run_binary("experiments.export", *paths, "--platforms=gpu")
    assert bad.returncode == 2 and "--platforms must be some of cpu, cuda" in bad.stderr
    assert result["platforms"] == ["cpu", "cuda"]
    with open(tmp_path / "model.json") as f:
        description = json.load(f)
    assert description["inputs"] == [{"name": "x", "shape": ["batch", 8, 8, 1], "dtype": "float32"}]
    assert [o["name"] for o in description["outputs"]] == ["labels", "probabilities"]
    np.savez(tmp_path / "inputs.npz", x=raw["x"][:37])
    check = (
        "import sys\n"
        "assert 'dl' not in sys.modules and 'flax' not in sys.modules\n"
        "more = exported.call(np.load('inputs.npz')['x'][:5])\n"
        "np.savez('outputs.npz', **{k: np.asarray(v) for k, v in outputs.items()},\n"
        "         **{'more_' + k: np.asarray(v) for k, v in more.items()})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _readme_snippet() + check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    expected = dl.load(workdir).predict(raw["x"][:37])
    with np.load(tmp_path / "outputs.npz") as got:
        for prefix, n in (("", 37), ("more_", 5)):
            np.testing.assert_array_equal(got[prefix + "labels"], expected["labels"][:n])
            np.testing.assert_allclose(
                got[prefix + "probabilities"], expected["probabilities"][:n], atol=1e-6, rtol=0
            )


def test_regression_values_are_in_the_datas_units(tmp_path):
    workdir = str(tmp_path / "run")
    _train("linear_diabetes", workdir, "--config.num_train_steps=200")
    raw = raw_splits(load_config("linear_diabetes").dataset)["test"]
    np.savez(tmp_path / "test.npz", x=raw["x"])
    _json_line(_predict(workdir, str(tmp_path / "test.npz"), str(tmp_path / "out.npz")))
    with np.load(tmp_path / "out.npz") as f:
        values = f["values"]
    assert values.shape == raw["y"].shape and raw["y"].min() > 20  # diabetes progression, raw
    metrics = _evaluate(workdir)
    err = values.astype(np.float64) - raw["y"]
    assert np.mean(err**2) == pytest.approx(metrics["mse"], rel=1e-5)
    assert np.mean(np.abs(err)) == pytest.approx(metrics["mae"], rel=1e-5)


def _write_iris_csv(path: str) -> list[str]:
    from sklearn.datasets import load_iris

    iris = load_iris()
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, "species"])
        for row, label in zip(iris.data, iris.target, strict=True):
            writer.writerow([*row, iris.target_names[label]])
    return columns


def test_csv_inputs_are_read_by_column_name_in_any_order(tmp_path):
    train_csv = str(tmp_path / "iris.csv")
    columns = _write_iris_csv(train_csv)
    workdir = str(tmp_path / "run")
    overrides = (f"--config.dataset.name=csv:{train_csv}", "--config.dataset.standardize=feature")
    _train("mlp_digits", workdir, *DIGITS_STEPS, *overrides, "--config.model.hidden_sizes=16")
    raw = raw_splits(_config_with("mlp_digits", *overrides).dataset)["test"]
    shuffled = [columns[2], "species", columns[0], columns[3], columns[1]]
    names = np.array(["setosa", "versicolor", "virginica"])
    with open(tmp_path / "new.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(shuffled)
        for row, label in zip(raw["x"], raw["y"], strict=True):
            value = dict(zip(columns, row.tolist(), strict=True), species=names[label])
            writer.writerow([value[c] for c in shuffled])
    np.savez(tmp_path / "new.npz", x=raw["x"])
    _json_line(_predict(workdir, str(tmp_path / "new.csv"), str(tmp_path / "from_csv.npz")))
    _json_line(_predict(workdir, str(tmp_path / "new.npz"), str(tmp_path / "from_npz.csv")))
    header, rows = _read_csv(str(tmp_path / "from_npz.csv"))
    with np.load(tmp_path / "from_csv.npz") as f:
        labels, classes = f["labels"], f["classes"]
        np.testing.assert_array_equal(labels, [int(r[header.index("labels")]) for r in rows])
    np.testing.assert_array_equal(classes, names[labels])
    assert float(np.mean(labels == raw["y"])) == _evaluate(workdir)["accuracy"]
    with open(tmp_path / "missing.csv", "w") as f:
        f.write("sepal_length,petal_width\n1,2\n")
    proc = _predict(workdir, str(tmp_path / "missing.csv"), str(tmp_path / "x.npz"))
    assert proc.returncode == 2 and "lacks the columns ['sepal_width', 'petal_length']" in (
        proc.stderr
    ), proc.stderr


ADDITION = (
    "--config.dataset.num_samples=2000",
    "--config.dataset.max_digits=2",
    "--config.model.hidden_size=32",
    "--config.batch_size=64",
    "--config.num_train_steps=200",
    "--config.log_every_steps=100",
    "--config.eval_every_steps=100",
    "--config.checkpoint_every_steps=100",
)


@pytest.mark.slow
def test_seq2seq_sources_from_a_text_file_decode_as_experiments_decode_does(tmp_path):
    from dl.data.sequences import ADDITION_SOURCE_SYMBOLS
    from dl.data.vocabulary import Vocabulary

    workdir = str(tmp_path / "run")
    _train("seq2seq_addition", workdir, *ADDITION)
    raw = raw_splits(_config_with("seq2seq_addition", *ADDITION).dataset)["test"]
    sources = Vocabulary(ADDITION_SOURCE_SYMBOLS).decode_batch(raw["x"])
    assert all(re.fullmatch(r"\d+\+\d+", s) for s in sources)
    with open(tmp_path / "sums.txt", "w") as f:
        f.write("\n".join(sources) + "\n")
    _json_line(_predict(workdir, str(tmp_path / "sums.txt"), str(tmp_path / "out.npz")))
    with np.load(tmp_path / "out.npz") as f:
        tokens, sequences = f["tokens"], f["sequences"]
    assert tokens.shape == raw["y"].shape and len(sequences) == len(sources)
    decoded = _json_line(run_binary("experiments.decode", f"--workdir={workdir}", "--show=0"))
    assert float(np.mean(np.all(tokens == raw["y"], axis=1))) == decoded["exact_match"]
    mask = raw["y"] != 0  # target tokens (PAD is 0)
    token_accuracy = float(np.sum((tokens == raw["y"]) & mask) / np.sum(mask))
    assert 0.2 < token_accuracy == pytest.approx(decoded["token_accuracy"], abs=1e-12)
    _check_export(workdir, raw["x"], ("tokens",))
    _json_line(_predict(workdir, str(tmp_path / "sums.txt"), str(tmp_path / "out.csv")))
    header, rows = _read_csv(str(tmp_path / "out.csv"))
    assert [r[header.index("sequences")] for r in rows] == sequences.tolist()
    with open(tmp_path / "bad.txt", "w") as f:
        f.write("12+3\n4*5\n")
    proc = _predict(workdir, str(tmp_path / "bad.txt"), str(tmp_path / "bad.npz"))
    assert proc.returncode == 2 and "symbols '*' outside the model's vocabulary" in proc.stderr


@pytest.mark.slow
def test_detection_boxes_after_nms_score_the_evaluators_map(tmp_path):
    from dl.tasks.detection.metrics import mean_average_precision

    overrides = (
        "--config.dataset.num_samples=400",
        "--config.batch_size=16",
        "--config.eval_batch_size=48",
        "--config.num_train_steps=200",
        "--config.schedule.warmup_steps=20",
        "--config.log_every_steps=100",
        "--config.eval_every_steps=200",
        "--config.checkpoint_every_steps=200",
    )
    workdir = str(tmp_path / "run")
    _train("yolo_shapes", workdir, *overrides)
    raw = raw_splits(_config_with("yolo_shapes", *overrides).dataset)["test"]
    np.savez(tmp_path / "test.npz", x=raw["x"])
    _json_line(_predict(workdir, str(tmp_path / "test.npz"), str(tmp_path / "out.npz")))
    with np.load(tmp_path / "out.npz") as f:
        det = {k: f[k] for k in f.files}
    n, k = len(raw["x"]), 20
    assert det["boxes"].shape == (n, k, 4) and det["valid"].dtype == bool
    assert det["valid"].any()
    boxes = det["boxes"][det["valid"]]
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (det["classes"][~det["valid"]] == -1).all()
    ours, _ = mean_average_precision(
        det["boxes"], det["scores"], det["classes"], det["valid"],
        raw["boxes"], raw["y"], raw["box_mask"], 3, 0.5,
    )  # fmt: skip
    assert 0.2 < ours == pytest.approx(_evaluate(workdir)["map50"], abs=1e-6)
    _check_export(workdir, raw["x"], ("boxes", "scores", "classes", "valid"))


def _check_export(workdir: str, x, fields) -> None:
    """The exported function on two batch sizes equals the predictor traced the same way.

    Both are traced with the CPU fast paths off (the export always is), so that
    NMS and argmax decisions see the same numbers.
    """
    import jax

    import dl
    from dl.models import fast_paths
    from dl.train.predictor import export

    with fast_paths.disabled():
        predictor = dl.load(workdir)
        expected = predictor.predict(x[:12])
    exported, description = export(predictor)
    exported = jax.export.deserialize(exported.serialize())
    assert [i["shape"][0] for i in description["inputs"]] == ["batch"]
    for n in (3, 12):
        got = exported.call(x[:n])
        assert sorted(got) == sorted(fields)
        for k in fields:
            np.testing.assert_allclose(np.asarray(got[k]), expected[k][:n], atol=1e-6, rtol=0)
