"""The absl binaries as a user runs them: real subprocesses, real files."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (
    ROOT,
    config_path,
    load_config,
    run_binaries,
    run_binary,
    start_binary,
    summary_of,
)

INTERVALS = ("num_train_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps")


@pytest.mark.slow
def test_default_experiment_reaches_97_percent_and_evaluates(tmp_path):
    """mlp_digits, the README's first command: >= 97% test accuracy."""
    workdir = str(tmp_path / "run")
    start = time.perf_counter()
    proc = run_binary(
        "experiments.train", f"--config={config_path('mlp_digits')}", f"--workdir={workdir}"
    )
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc.stdout)
    assert summary["test"]["accuracy"] >= 0.97
    assert summary["seconds"] < 60 or time.perf_counter() - start < 120
    assert "\r" not in proc.stdout  # no progress bar in a log file
    assert proc.stdout.count("\n") < 60  # periodic lines only
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoints", "best"):
        assert os.path.exists(os.path.join(workdir, name))

    proc = run_binary(
        "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=best", "--split=validation"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["split"] == "validation" and result["step"] == summary["best"]["step"]
    assert result["accuracy"] == pytest.approx(summary["best"]["accuracy"])
    with open(os.path.join(workdir, "eval_validation.json")) as f:
        assert json.load(f)["accuracy"] == result["accuracy"]

    # Re-running the finished command resumes at the end and trains no further.
    proc = run_binary(
        "experiments.train", f"--config={config_path('mlp_digits')}", f"--workdir={workdir}"
    )
    assert proc.returncode == 0, proc.stderr
    assert summary_of(proc.stdout)["step"] == summary["step"]


def _restore(workdir, name, overrides):
    from dl.train import Checkpoints, build

    c = load_config(name)
    for key, value in overrides.items():
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = value
    exp = build(c)
    return Checkpoints(workdir, read_only=True).restore(exp.abstract_state())


def _train_events(workdir):
    """step -> (loss, accuracy, grad_norm) of the train events of metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        events = [json.loads(line) for line in f if line.strip()]
    steps = [e["step"] for e in events if e["split"] == "train"]
    assert steps == sorted(set(steps)), "the log repeats no step"
    return {
        e["step"]: (e["loss"], e["accuracy"], e["grad_norm"])
        for e in events
        if e["split"] == "train"
    }


def _partial_dirs(workdir):
    """Checkpoint directories orbax has not committed (named *.orbax-checkpoint-tmp-*)."""
    return [
        os.path.join(kind, d)
        for kind in ("checkpoints", "best")
        if os.path.isdir(os.path.join(workdir, kind))
        for d in os.listdir(os.path.join(workdir, kind))
        if "tmp" in d
    ]


@pytest.mark.slow
def test_sigkill_mid_checkpoint_write_and_at_random_moments_resumes_exactly(tmp_path):
    """Killed while a checkpoint is being written and at random moments, then re-run:
    the same final state and the same logged losses as a run never killed, and
    no half-written checkpoint is restored or left behind."""
    import random

    overrides = {
        "num_train_steps": 2000,
        "checkpoint_every_steps": 250,
        "log_every_steps": 50,
        "eval_every_steps": 500,
    }
    args = [f"--config={config_path('mlp_digits')}"] + [
        f"--config.{k}={v}" for k, v in overrides.items()
    ]
    straight = str(tmp_path / "straight")
    proc = run_binary("experiments.train", *args, f"--workdir={straight}")
    assert proc.returncode == 0, proc.stderr

    killed = str(tmp_path / "killed")
    rng = random.Random(0)
    left_partial = False
    for attempt in range(5):
        mid_write = attempt < 3 and not left_partial  # until a kill lands mid-write
        child = start_binary("experiments.train", *args, f"--workdir={killed}")
        deadline = time.time() + (60 if mid_write else rng.uniform(1.5, 5.0))
        while time.time() < deadline and child.poll() is None:
            if mid_write and _partial_dirs(killed):
                break
            time.sleep(0.001)
        if child.poll() is not None:
            break  # finished before this kill: the run is complete
        child.send_signal(signal.SIGKILL)
        child.wait()
        left_partial |= bool(_partial_dirs(killed))
    assert left_partial, "no kill landed while a checkpoint was being written"

    proc = run_binary("experiments.train", *args, f"--workdir={killed}")
    assert proc.returncode == 0, proc.stderr
    assert not _partial_dirs(killed), "half-written checkpoints are cleaned up"
    a, _, step_a = _restore(straight, "mlp_digits", overrides)
    b, _, step_b = _restore(killed, "mlp_digits", overrides)
    assert step_a == step_b == 2000
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert _train_events(killed) == _train_events(straight)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.modle.name=x"], 'Did you mean "model"'),
        (["--config.model.hiden=3"], "the config has no field 'hiden'"),
        (["--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
        (["stray"], "unexpected positional arguments ['stray']"),
        (["--config.model.name=resnet9000"], "unknown model 'resnet9000'; known models"),
        (["--config.dtype=float64"], "unknown dtype 'float64'; known dtypes"),
        (["--config.dataset.name=npz:/no/such/file.npz"], "npz file not found"),
    ],
)
def test_bad_flags_exit_2_with_a_message_and_no_traceback(tmp_path, args, message):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_xor')}",
        f"--workdir={tmp_path / 'w'}",
        *args,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_config_file_and_file_as_workdir(tmp_path):
    proc = run_binary(
        "experiments.train", "--config=experiments/configs/nope.py", f"--workdir={tmp_path}"
    )
    assert proc.returncode == 2 and "nope.py" in proc.stderr and "Traceback" not in proc.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = run_binary(
        "experiments.train", f"--config={config_path('mlp_xor')}", f"--workdir={a_file}"
    )
    assert proc.returncode == 2 and "is a file" in proc.stderr


def test_evaluate_errors(tmp_path):
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "no config.json" in proc.stderr
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path / 'missing'}")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_binary("experiments.evaluate")
    assert proc.returncode == 2 and "--workdir" in proc.stderr


def test_a_malformed_config_json_exits_2_with_a_message(tmp_path):
    """evaluate (and the other readers of config.json) on invalid JSON, `{}` and a list."""
    contents = {"invalid": '{"model": {"name": "mlp"', "empty": "{}", "list": '["model"]'}
    says = {
        "invalid": "cannot be read as JSON",
        "empty": "is not a dl config: it lacks dataset, model, task",
        "list": "is not a dl config: it lacks dataset, model, task",
    }
    cases, expected = [], []
    for kind, text in contents.items():
        workdir = tmp_path / kind
        workdir.mkdir()
        (workdir / "config.json").write_text(text)
        for module, extra in (
            ("experiments.evaluate", []),
            ("experiments.decode", []),
            ("experiments.lr_find", []),
            ("experiments.predict", ["--input=x.npz", f"--output={tmp_path / 'p.csv'}"]),
        ):
            cases.append((module, [f"--workdir={workdir}", *extra]))
            expected.append(f"{workdir / 'config.json'} {says[kind]}")
    for (module, args), say, proc in zip(cases, expected, run_binaries(cases), strict=True):
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and last.startswith("error: "), (module, args, proc.stderr)
        assert say in last and "Traceback" not in proc.stderr, (module, args, proc.stderr)


def _read_only(workdir: str, *command: str) -> list[str]:
    """`command` run with `workdir` bind-mounted read-only over itself, in a mount namespace."""
    mount = f"mount --bind {workdir} {workdir} && mount -o remount,bind,ro {workdir} {workdir}"
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]


def test_evaluate_on_a_read_only_workdir_prints_its_metrics_and_warns(tmp_path):
    """Nothing can be written: the metrics still come, a warning names each file left out."""
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        check = subprocess.run(
            _read_only(str(probe), "touch", str(probe / "f")), capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no unshare here: cannot make a read-only mount")
    if "Read-only file system" not in check.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {check.stderr.strip()}")
    import io

    from dl.train import train

    workdir = str(tmp_path / "run")
    config = load_config("mlp_xor")
    for field in INTERVALS:
        config[field] = 4
    train(config, workdir, stream=io.StringIO())
    before = sorted(os.listdir(workdir))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        _read_only(workdir, sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 4 and 0 <= result["accuracy"] <= 1 and result["figures"] == []
    warnings = [line for line in proc.stderr.splitlines() if "could not write" in line]
    for what in (f"{workdir}/eval_test.json", "the test figures"):  # the confusion matrix
        assert any(what in w and "Read-only file system" in w for w in warnings), proc.stderr
    assert len(warnings) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(os.listdir(workdir)) == before


def test_nonfinite_run_exits_3_naming_the_step(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('linear_diabetes')}",
        f"--workdir={tmp_path}",
        "--config.optimizer.name=sgd",
        "--config.optimizer.learning_rate=1e18",
        "--config.num_train_steps=40",
        "--config.log_every_steps=10",
        "--config.eval_every_steps=10",
        "--config.checkpoint_every_steps=10",
    )
    assert proc.returncode == 3
    assert "non-finite values at training step" in proc.stderr
