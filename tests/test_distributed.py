"""jax.distributed: two local processes of two CPU devices each, gloo collectives."""

import json
import os
import signal
import socket
import time

import jax
import numpy as np
import pytest

from conftest import (
    DEVICE_RUN_ARGS,
    config_path,
    devices_env,
    load_config,
    metric_events,
    run_binary,
    start_binary,
    train_losses,
)

ARGS = DEVICE_RUN_ARGS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_processes(workdir, args, n=2):
    """Starts `experiments.train` as n local processes of two CPU devices each (gloo)."""
    port = free_port()
    return [
        start_binary(
            "experiments.train",
            f"--config={config_path('mlp_digits')}",
            f"--workdir={workdir}",
            *args,
            f"--coordinator_address=localhost:{port}",
            f"--num_processes={n}",
            f"--process_id={i}",
            env=devices_env(2),
        )
        for i in range(n)
    ]


def finish(children, timeout=300):
    """(stdout, stderr) of each process once all have ended."""
    try:
        return [c.communicate(timeout=timeout) for c in children]
    finally:
        for c in children:  # one failing process would leave the other waiting
            if c.poll() is None:
                c.kill()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The short digits run in one process: the reference of the two comparisons below."""
    single = tmp_path_factory.mktemp("single")
    proc = run_binary(
        "experiments.train", f"--config={config_path('mlp_digits')}", f"--workdir={single}", *ARGS
    )
    assert proc.returncode == 0, proc.stderr
    return single


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tmp_path, one_process):
    single = one_process
    multi = tmp_path / "multi"
    children = start_processes(multi, ARGS)
    outs = finish(children)
    for c, (_, err) in zip(children, outs, strict=True):
        assert c.returncode == 0, err
    assert "summary " in outs[0][0] and "summary " not in outs[1][0]  # process 0 reports

    np.testing.assert_allclose(train_losses(multi), train_losses(single), atol=1e-5, rtol=0)

    from dl.train import Checkpoints, build

    c = load_config("mlp_digits")
    c.num_train_steps, c.batch_size, c.model.dropout_rate = 24, 64, 0.0
    exp = build(c)
    a, _, step_a = Checkpoints(str(single), read_only=True).restore(exp.abstract_state())
    b, _, step_b = Checkpoints(str(multi), read_only=True).restore(exp.abstract_state())
    assert step_a == step_b == 24
    for x, y in zip(
        jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.slow
def test_parameters_sharded_across_two_processes_match_one_and_evaluate_on_one(
    tmp_path, one_process
):
    # mesh.fsdp=4 over 2 processes of 2 devices: every large leaf is split across both.
    single = one_process
    multi = tmp_path / "multi"
    children = start_processes(multi, [*ARGS, "--config.mesh.fsdp=4"])
    for c, (_, err) in zip(children, finish(children), strict=True):
        assert c.returncode == 0, err
    np.testing.assert_allclose(train_losses(multi), train_losses(single), atol=1e-5, rtol=0)
    proc = run_binary(
        "experiments.evaluate", f"--workdir={multi}", "--split=validation", "--figures=false"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    own = metric_events(multi, "validation")[-1]
    assert result["step"] == 24 and result["accuracy"] == own["accuracy"]
    assert result["loss"] == pytest.approx(own["loss"], abs=1e-6)


@pytest.mark.slow
def test_two_processes_streaming_their_shares_match_one_process(tmp_path):
    from dl.data.convert import convert

    records = str(tmp_path / "records")
    convert(load_config("mlp_digits").dataset, records, shards=4)
    stream = [f"--config.dataset.name=array_record:{records}", "--config.dataset.pipeline=stream"]
    single = tmp_path / "single"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={single}",
        *ARGS,
        *stream,
    )
    assert proc.returncode == 0, proc.stderr
    multi = tmp_path / "multi"
    children = start_processes(multi, [*ARGS, *stream])
    for c, (_, err) in zip(children, finish(children), strict=True):
        assert c.returncode == 0, err
    # Each process read only its half of every global batch; together they are the batch.
    losses = train_losses(single)
    assert len(losses) == 24
    np.testing.assert_allclose(train_losses(multi), losses, atol=1e-5, rtol=0)


# Fused calls of 2 steps, and 20 calls between host syncs: more than the
# loop's in-flight limit on CPU (16), without which XLA:CPU deadlocks
# on collectives queued across devices.
TOTAL, EVERY, FUSED = 200, 40, 2
PREEMPT_ARGS = [
    f"--config.num_train_steps={TOTAL}",
    f"--config.steps_per_call={FUSED}",
    f"--config.log_every_steps={EVERY}",
    f"--config.eval_every_steps={EVERY}",
    f"--config.checkpoint_every_steps={EVERY}",
    "--config.batch_size=64",
    "--config.model.dropout_rate=0.0",
]


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_resumes(tmp_path):
    from dl.train import Checkpoints, build

    straight = tmp_path / "straight"  # uninterrupted, two processes too
    children = start_processes(straight, PREEMPT_ARGS)
    for c, (_, err) in zip(children, finish(children), strict=True):
        assert c.returncode == 0, err

    multi = tmp_path / "multi"
    children = start_processes(multi, PREEMPT_ARGS)
    try:
        deadline = time.time() + 240
        while not Checkpoints(str(multi), read_only=True).steps():
            assert time.time() < deadline and all(c.poll() is None for c in children)
            time.sleep(0.05)
        # Process 1 only: process 0, which writes the metrics, never sees the signal.
        children[1].send_signal(signal.SIGTERM)
    finally:
        outs = finish(children)
    stops = set()
    for c, (_, err) in zip(children, outs, strict=True):
        assert c.returncode == 75, err
        stops.add(int(err.split("checkpoint written at step ")[1].split()[0]))
    assert len(stops) == 1, stops  # both processes saved the same step
    stop = stops.pop()
    assert EVERY < stop < TOTAL and stop % FUSED == 0
    steps = Checkpoints(str(multi), read_only=True).steps()
    assert steps[-1] == stop and all(s % EVERY == 0 for s in steps[:-1]), steps

    children = start_processes(multi, PREEMPT_ARGS)  # the same command, again
    outs = finish(children)
    for c, (_, err) in zip(children, outs, strict=True):
        assert c.returncode == 0, err
    assert f'"step": {TOTAL}' in outs[0][0]

    # The resumed run is the uninterrupted one, bitwise: the same validation
    # losses, the same train losses (the one after the resume too: the sums
    # since the previous log event are checkpointed) and the same final state.
    a, b = metric_events(straight, "validation"), metric_events(multi, "validation")
    assert [e["step"] for e in a] == [e["step"] for e in b] == list(range(EVERY, TOTAL + 1, EVERY))
    assert [e["loss"] for e in b] == [e["loss"] for e in a]
    a = [(e["step"], e["loss"]) for e in metric_events(straight, "train")]
    b = [(e["step"], e["loss"]) for e in metric_events(multi, "train")]
    assert b == a and len(a) == TOTAL // EVERY

    c = load_config("mlp_digits")
    c.num_train_steps, c.steps_per_call, c.batch_size, c.model.dropout_rate = TOTAL, FUSED, 64, 0.0
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = EVERY
    exp = build(c)
    x, _, step_x = Checkpoints(str(straight), read_only=True).restore(exp.abstract_state())
    y, _, step_y = Checkpoints(str(multi), read_only=True).restore(exp.abstract_state())
    assert step_x == step_y == TOTAL
    for p, q in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=True):
        assert np.array_equal(np.asarray(p), np.asarray(q))


def test_every_process_of_a_run_refused_a_locked_workdir_exits_2_with_the_holder(tmp_path):
    # Process 0 takes the lock for the run and shares the outcome: no process waits on another.
    from dl.train.workdir_lock import WorkdirLock

    lock = WorkdirLock(str(tmp_path))
    lock.acquire()
    try:
        children = start_processes(tmp_path, ARGS)
        outs = finish(children, timeout=120)
    finally:
        lock.release()
    for c, (out, err) in zip(children, outs, strict=True):
        assert c.returncode == 2, err
        assert f"error: {tmp_path} is being trained by pid {os.getpid()} on host " in err, err
        assert "Traceback" not in err and "compiled in" not in out
    assert os.listdir(tmp_path) == [".lock"]


def test_distributed_flags_go_together(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_xor')}",
        f"--workdir={tmp_path}",
        "--num_processes=2",
    )
    assert proc.returncode == 2
    assert "--coordinator_address, --num_processes and --process_id go together" in proc.stderr
