"""A streamed run with two input workers, SIGKILLed at random moments: it resumes exactly."""

import json
import os
import random
import signal
import time

import jax
import numpy as np
import psutil
import pytest

from conftest import config_path, load_config, run_binary, start_binary
from dl.data.convert import convert
from dl.train import Checkpoints, build

TIMING = {"steps_per_second", "host_rss_mb", "compilations", "input_wait_fraction"}


def _events(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        events = [json.loads(line) for line in f if line.strip()]
    steps = [e["step"] for e in events if e["split"] == "train"]
    assert steps == sorted(set(steps)), "the log repeats no step"
    return [{k: v for k, v in e.items() if k not in TIMING} for e in events]


def _partial(workdir):
    path = os.path.join(workdir, "checkpoints")
    return os.path.isdir(path) and any("tmp" in d for d in os.listdir(path))


def _gone(processes, timeout=20.0) -> list[int]:
    """The pids of `processes` still running after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        alive = [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.slow
def test_a_streamed_run_killed_at_random_moments_resumes_exactly(tmp_path):
    records = str(tmp_path / "records")
    convert(load_config("mlp_digits").dataset, records, shards=3)
    args = [
        f"--config={config_path('mlp_digits')}",
        f"--config.dataset.name=array_record:{records}",
        "--config.dataset.pipeline=stream",
        "--config.dataset.workers=2",
        "--config.num_train_steps=200",
        "--config.checkpoint_every_steps=25",
        "--config.log_every_steps=25",
        "--config.eval_every_steps=100",
    ]
    straight = str(tmp_path / "straight")
    proc = run_binary("experiments.train", *args, f"--workdir={straight}")
    assert proc.returncode == 0, proc.stderr

    killed = str(tmp_path / "killed")
    cmd = ["experiments.train", *args, f"--workdir={killed}"]
    rng = random.Random(0)
    kills = 0
    for attempt in range(2):
        child = start_binary(*cmd)
        steps_before = Checkpoints(killed, read_only=True).steps() if os.path.isdir(killed) else []
        # Until a new step is committed (training runs, its workers are up), then
        # mid-write for the first kill and at a random moment after it for the others.
        deadline = time.time() + 120
        while child.poll() is None and time.time() < deadline:
            now = Checkpoints(killed, read_only=True).steps() if os.path.isdir(killed) else []
            if now != steps_before and (attempt > 0 or _partial(killed)):
                break
            time.sleep(0.002)
        if child.poll() is not None:
            break  # it finished first: the run is complete
        time.sleep(rng.uniform(0.0, 1.5) if attempt else 0.0)
        workers = psutil.Process(child.pid).children(recursive=True)
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
        assert workers and not _gone(workers), "input workers outlived the killed run"
    assert kills == 2

    proc = run_binary("experiments.train", *args, f"--workdir={killed}")
    assert proc.returncode == 0, proc.stderr
    c = load_config("mlp_digits")
    c.dataset.name, c.dataset.pipeline = f"array_record:{records}", "stream"
    c.num_train_steps = 200
    exp = build(c)
    a, _, step_a = Checkpoints(straight, read_only=True).restore(exp.abstract_state())
    b, meta, step_b = Checkpoints(killed, read_only=True).restore(exp.abstract_state())
    assert step_a == step_b == 200 and meta["loop"]["data"]["step"] == 200
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert _events(killed) == _events(straight)
