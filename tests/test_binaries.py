"""The absl binaries as a user runs them: real subprocesses, real files."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, config_path, load_config, run_binary


def summary_of(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("summary ")]
    assert lines, stdout
    return json.loads(lines[-1][len("summary ") :])


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


def test_sigkill_and_rerun_gives_bitwise_the_same_state(tmp_path):
    overrides = {
        "num_train_steps": 6000,
        "checkpoint_every_steps": 500,
        "log_every_steps": 500,
        "eval_every_steps": 1000,
    }
    args = [f"--config={config_path('mlp_digits')}"] + [
        f"--config.{k}={v}" for k, v in overrides.items()
    ]
    straight = str(tmp_path / "straight")
    proc = run_binary("experiments.train", *args, f"--workdir={straight}")
    assert proc.returncode == 0, proc.stderr

    killed = str(tmp_path / "killed")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "experiments.train", *args, f"--workdir={killed}"]
    child = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt_dir = os.path.join(killed, "checkpoints")
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        steps = [d for d in os.listdir(ckpt_dir)] if os.path.isdir(ckpt_dir) else []
        if any(d.isdigit() and int(d) >= 1000 for d in steps):
            break
        time.sleep(0.02)
    assert child.poll() is None, "training ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        killed_at = max(json.loads(line)["step"] for line in f if line.strip())
    assert killed_at < 6000

    proc = run_binary("experiments.train", *args, f"--workdir={killed}")
    assert proc.returncode == 0, proc.stderr
    a, _, step_a = _restore(straight, "mlp_digits", overrides)
    b, _, step_b = _restore(killed, "mlp_digits", overrides)
    assert step_a == step_b == 6000
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if json.loads(line)["split"] == "train"]
    assert steps == sorted(set(steps)), "the resumed log repeats no step"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.modle.name=x"], 'Did you mean "model"'),
        (["--config.model.hiden=3"], "the config has no field 'hiden'"),
        (["--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
        (["stray"], "unexpected positional arguments ['stray']"),
        (["--config.model.name=resnet9000"], "unknown model 'resnet9000'; known models"),
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
