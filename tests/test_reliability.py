"""Early stopping, preemption and corrupt checkpoints, with real processes and files."""

import io
import json
import os
import signal
import socket
import time

import jax
import numpy as np
import pytest

from conftest import config_path, load_config, run_binary, start_binary
from dl.train import CheckpointError, Checkpoints, build, train


def xor_config():
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.optimizer.learning_rate = 0.02
    c.log_every_steps = c.eval_every_steps = 10
    c.checkpoint_every_steps = 10
    c.num_train_steps = 2000
    c.early_stopping.patience = 3
    return c


def validation_events(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [e for e in map(json.loads, f) if e["split"] == "validation"]


def test_early_stopping_stops_after_patience_and_restores_the_best_state(tmp_path):
    c = xor_config()
    summary = train(c, str(tmp_path), stream=io.StringIO())
    events = validation_events(tmp_path)
    accs = [e["accuracy"] for e in events]
    first_best = events[int(np.argmax(accs))]["step"]  # first step at the best accuracy
    assert summary["early_stopping"]["restored_best_step"] == first_best
    assert summary["early_stopping"]["stopped_step"] == first_best + 3 * 10
    assert summary["step"] == first_best + 30 < 2000
    exp = build(c)
    best = Checkpoints(str(tmp_path), read_only=True).restore(exp.abstract_state(), "best")[0]
    # The summary's metrics are those of the best state.
    assert summary["validation"]["accuracy"] == pytest.approx(max(accs))
    assert int(best.step) == first_best


def test_patience_counter_survives_a_resume(tmp_path):
    c = xor_config()
    straight = train(c, str(tmp_path / "a"), stream=io.StringIO())
    stop = straight["early_stopping"]["stopped_step"]
    c.num_train_steps = stop - 10  # ends after some evaluations without improvement
    train(c, str(tmp_path / "b"), stream=io.StringIO())
    c.num_train_steps = 2000
    resumed = train(c, str(tmp_path / "b"), stream=io.StringIO())
    assert resumed["early_stopping"] == straight["early_stopping"]


def _wait_for_checkpoint(workdir, at_least, child):
    ckpt_dir = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if os.path.isdir(ckpt_dir) and any(
            d.isdigit() and int(d) >= at_least for d in os.listdir(ckpt_dir)
        ):
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_exits_75_and_resumes_exactly(tmp_path):
    args = [
        f"--config={config_path('mlp_digits')}",
        "--config.num_train_steps=2000",
        "--config.checkpoint_every_steps=500",
        "--config.log_every_steps=250",
        "--config.eval_every_steps=500",
    ]
    straight = tmp_path / "straight"
    assert run_binary("experiments.train", *args, f"--workdir={straight}").returncode == 0
    work = str(tmp_path / "preempted")
    child = start_binary("experiments.train", *args, f"--workdir={work}")
    _wait_for_checkpoint(work, 500, child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 75, err
    assert "preempted (SIGTERM): checkpoint written at step" in err
    step = int(err.split("checkpoint written at step ")[1].split()[0])
    assert step in Checkpoints(work, read_only=True).steps()
    assert step % 500 != 0 or step < 2000  # an off-schedule step, or an early one
    if step % 250:  # the training metrics since the last log are in the checkpoint
        assert Checkpoints(work, read_only=True).read_meta(step)["loop"]["log"]["steps"] > 0
    assert run_binary("experiments.train", *args, f"--workdir={work}").returncode == 0
    c = load_config("mlp_digits")
    c.num_train_steps = 2000
    exp = build(c)
    a = Checkpoints(str(straight), read_only=True).restore(exp.abstract_state())[0]
    b = Checkpoints(work, read_only=True).restore(exp.abstract_state())[0]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # The metrics too: the train event after the resume averages the steps since the
    # last log, the interrupted run's included (the window's sums are checkpointed).
    assert untimed_events(work) == untimed_events(straight)


TIMING_FIELDS = ("steps_per_second", "host_rss_mb", "compilations")


def untimed_events(workdir):
    """The events of a run's metrics.jsonl, without the fields that time or measure the
    process rather than the training."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        events = [json.loads(line) for line in f]
    return [{k: v for k, v in e.items() if k not in TIMING_FIELDS} for e in events]


def _corrupt(step_dir):
    """Truncates every array data file of a checkpoint step."""
    hit = 0
    for root, _, files in os.walk(step_dir):
        for f in files:
            path = os.path.join(root, f)
            if "state" in root and os.path.getsize(path) > 64:
                with open(path, "r+b") as fh:
                    fh.truncate(16)
                hit += 1
    assert hit


def test_corrupt_latest_checkpoint_falls_back_and_says_which(tmp_path):
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps, c.checkpoint_every_steps, c.keep_checkpoints = 60, 20, 3
    train(c, str(tmp_path), stream=io.StringIO())
    ckpts = Checkpoints(str(tmp_path), read_only=True)
    assert ckpts.steps() == [20, 40, 60]
    _corrupt(tmp_path / "checkpoints" / "60")
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}", "--figures=false")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 40
    assert "checkpoint step 60" in proc.stderr and "cannot be read" in proc.stderr
    for step in (20, 40):
        _corrupt(tmp_path / "checkpoints" / str(step))
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}", "--figures=false")
    assert proc.returncode == 4
    assert "no readable checkpoint" in proc.stderr
    for step in (20, 40, 60):
        assert os.path.join("checkpoints", str(step)) in proc.stderr
    with pytest.raises(CheckpointError):
        ckpts.restore(build(c).abstract_state())


def test_training_resumes_past_an_unreadable_latest_step_and_keeps_it_aside(tmp_path):
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps, c.checkpoint_every_steps, c.keep_checkpoints = 60, 20, 3
    train(c, str(tmp_path / "straight"), stream=io.StringIO())
    train(c, str(tmp_path / "run"), stream=io.StringIO())
    _corrupt(tmp_path / "run" / "checkpoints" / "60")
    summary = train(c, str(tmp_path / "run"), stream=io.StringIO())
    assert summary["step"] == 60
    assert os.path.isdir(tmp_path / "run" / "unreadable" / "checkpoints-60")
    exp = build(c)
    a = Checkpoints(str(tmp_path / "straight"), read_only=True).restore(exp.abstract_state())
    b = Checkpoints(str(tmp_path / "run"), read_only=True).restore(exp.abstract_state())
    assert a[2] == b[2] == 60
    for x, y in zip(jax.tree_util.tree_leaves(a[0]), jax.tree_util.tree_leaves(b[0]), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_restoring_into_another_architecture_lists_the_leaves_and_loads_nothing(tmp_path):
    from dl.errors import ConfigError

    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps = c.checkpoint_every_steps = 20
    train(c, str(tmp_path), stream=io.StringIO())
    c.model.hidden_sizes = (8,)
    with pytest.raises(ConfigError, match=r"hidden_0/kernel: \(2, 4\) -> \(2, 8\)"):
        Checkpoints(str(tmp_path), read_only=True).restore(build(c).abstract_state())
    # Evaluation of a workdir whose config.json was edited to another architecture.
    with open(tmp_path / "config.json") as f:
        stored = json.load(f)
    stored["model"]["hidden_sizes"] = [8]
    with open(tmp_path / "config.json", "w") as f:
        json.dump(stored, f)
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}", "--figures=false")
    assert proc.returncode == 2 and "does not fit the model" in proc.stderr
    assert "Traceback" not in proc.stderr


def _files(root):
    """Every path under root, with its size (files) and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (
                st.st_size if name in filenames else 0,
                st.st_mtime_ns,
            )
    return out


def _states(workdir, exp):
    """{(kind, step): state} of every checkpoint of a workdir."""
    ckpts = Checkpoints(str(workdir), read_only=True)
    out = {}
    for kind in ("checkpoints", "best"):
        for step in ckpts.steps(kind):
            out[kind, step] = ckpts.restore(
                exp.abstract_state(), "best" if kind == "best" else step
            )[0]
    return out


def _restore_repeatedly(workdir, abstract_state, seconds):
    """Restores best and latest, alternately, as fast as they go; returns how many."""
    ckpts = Checkpoints(str(workdir), read_only=True)
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for which in ("best", "latest"):
            _, _, step = ckpts.restore(abstract_state, which)
            assert step % 10 == 0
            n += 1
    return n


# A read that a deletion cuts short leaves orbax's tensorstore futures completing
# into a closed event loop: harmless, but Python reports it as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_evaluate_while_training_writes_reads_committed_steps_and_changes_nothing(tmp_path):
    # A checkpoint every 10 steps and, with best_metric=loss, a new best step at
    # nearly every evaluation, so best/ (keep 1) deletes its previous step each
    # time: a reader often lists a step that is deleted while it reads it.
    args = [
        f"--config={config_path('mlp_xor')}",
        "--config.target_metric=",
        "--config.best_metric=loss",
        "--config.num_train_steps=600",
        "--config.log_every_steps=10",
        "--config.eval_every_steps=10",
        "--config.checkpoint_every_steps=10",
        "--config.keep_checkpoints=3",
    ]
    c = load_config("mlp_xor")
    c.target_metric, c.best_metric = "", "loss"
    exp = build(c)

    def start(workdir):
        return _start_training(args, workdir)

    # "alone" is the same run without readers, at the same time.
    work, alone = tmp_path / "run", tmp_path / "alone"
    trainer, reference = start(work), start(alone)
    try:
        # Before the first checkpoint evaluation exits 4 ("no checkpoint"); wait for one.
        _wait_for_checkpoint(str(work), 10, trainer)
        evaluated, restores = [], 0  # evaluated: (checkpoint, step, trainer still running)
        while trainer.poll() is None and len(evaluated) < 6:
            which = ("best", "latest")[len(evaluated) % 2]
            proc = run_binary(
                "experiments.evaluate",
                f"--workdir={work}",
                f"--checkpoint={which}",
                "--figures=false",
            )
            assert proc.returncode == 0, proc.stderr
            assert "cannot be read" not in proc.stderr, proc.stderr
            step = json.loads(proc.stdout.strip().splitlines()[-1])["step"]
            evaluated.append((which, step, trainer.poll() is None))
            # Many more reads, in this process, to meet the deletions often.
            restores += _restore_repeatedly(work, exp.abstract_state(), seconds=1.0)
        trainer.wait(timeout=300)
        reference.wait(timeout=300)
    finally:
        for child in (trainer, reference):
            if child.poll() is None:
                child.kill()
    assert trainer.returncode == 0, trainer.communicate()[1]
    assert reference.returncode == 0, reference.communicate()[1]
    # The readers overlapped the writer: several evaluations ended while it ran.
    assert sum(running for *_, running in evaluated) >= 3, evaluated
    assert all(step % 10 == 0 and 10 <= step <= 600 for _, step, _ in evaluated), evaluated
    assert restores >= 20

    # The same run without readers wrote the same checkpoints, bitwise.
    a, b = _states(alone, exp), _states(work, exp)
    assert sorted(a) == sorted(b)
    assert [step for kind, step in sorted(b) if kind == "checkpoints"] == [580, 590, 600]
    assert len([kind for kind, _ in b if kind == "best"]) == 1
    for key, state in a.items():
        for x, y in zip(
            jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(b[key]), strict=True
        ):
            assert np.array_equal(np.asarray(x), np.asarray(y)), key

    # Evaluating a finished run leaves checkpoints/ and best/ untouched, to the
    # modification time, and writes only its own outputs beside them.
    before = _files(work)
    proc = run_binary("experiments.evaluate", f"--workdir={work}", "--checkpoint=best")
    assert proc.returncode == 0, proc.stderr
    after = _files(work)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed, "evaluate wrote nothing"
    assert all(p.startswith(("eval_test.", "confusion_test.")) for p in changed), changed


def _holder(workdir):
    """The holder recorded in a workdir's lock file, or None."""
    try:
        with open(os.path.join(workdir, ".lock")) as f:
            return json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None


def _start_training(args, workdir):
    return start_binary("experiments.train", *args, f"--workdir={workdir}")


@pytest.mark.slow
def test_a_second_train_of_a_locked_workdir_exits_2_and_changes_nothing(tmp_path):
    args = [
        f"--config={config_path('mlp_digits')}",
        "--config.num_train_steps=2000",
        "--config.checkpoint_every_steps=500",
    ]
    work, alone = tmp_path / "run", tmp_path / "alone"  # alone: the same run, by itself
    trainer = _start_training(args, work)
    reference = _start_training(args, alone)
    try:
        _wait_for_checkpoint(str(work), 500, trainer)
        # Stopped, the first run holds the lock for as long as the second one takes.
        trainer.send_signal(signal.SIGSTOP)
        holder = _holder(work)
        assert holder["pid"] == trainer.pid and holder["host"] == socket.gethostname()
        before = _files(work)
        start = time.monotonic()
        proc = run_binary("experiments.train", *args, f"--workdir={work}")
        seconds = time.monotonic() - start
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(
            f"error: {work} is being trained by pid {trainer.pid} on host "
            f"{socket.gethostname()} since {holder['since']}"
        ), proc.stderr
        assert "Traceback" not in proc.stderr and "compiled in" not in proc.stdout
        assert seconds < 60
        assert _files(work) == before  # refused before writing or restoring anything
        # Readers take no lock.
        proc = run_binary("experiments.evaluate", f"--workdir={work}", "--figures=false")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] >= 500
        trainer.send_signal(signal.SIGCONT)
        trainer.wait(timeout=300)
        reference.wait(timeout=300)
    finally:
        for child in (trainer, reference):
            if child.poll() is None:
                child.send_signal(signal.SIGCONT)
                child.kill()
    assert trainer.returncode == 0, trainer.communicate()[1]
    assert reference.returncode == 0, reference.communicate()[1]
    assert _holder(work) is None  # the lock file records no holder once the run is over

    # The first run is the run that was alone: its checkpoints bitwise, its metrics, its config.
    exp = build(load_config("mlp_digits"))
    a, b = _states(alone, exp), _states(work, exp)
    assert sorted(a) == sorted(b) and ("checkpoints", 2000) in b
    for key, state in a.items():
        for x, y in zip(
            jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(b[key]), strict=True
        ):
            assert np.array_equal(np.asarray(x), np.asarray(y)), key
    assert untimed_events(work) == untimed_events(alone)
    assert (work / "config.json").read_text() == (alone / "config.json").read_text()


def test_a_sigkilled_trainer_leaves_a_lock_file_that_blocks_nobody(tmp_path):
    args = [f"--config={config_path('mlp_xor')}", "--config.target_metric="]
    args += [f"--config.{k}=100" for k in ("log_every_steps", "eval_every_steps")]
    args += ["--config.checkpoint_every_steps=100", "--config.num_train_steps=2000"]
    child = _start_training(args, tmp_path)
    try:
        _wait_for_checkpoint(str(tmp_path), 100, child)
    finally:
        child.kill()
        child.wait()
    assert _holder(tmp_path)["pid"] == child.pid  # left behind, with nobody holding it
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 100
    c.num_train_steps = 2000
    out = io.StringIO()
    assert train(c, str(tmp_path), stream=out)["step"] == 2000
    started = int(out.getvalue().split("parameters, dataset")[1].split(" step ")[1].split("/")[0])
    assert 100 <= started < 2000, out.getvalue()  # it resumed the killed run


def test_train_in_python_is_refused_a_locked_workdir_and_writes_nothing(tmp_path):
    from dl.errors import ConfigError
    from dl.train.workdir_lock import WorkdirLock

    lock = WorkdirLock(str(tmp_path))
    lock.acquire()
    try:
        holder = _holder(tmp_path)
        assert holder["pid"] == os.getpid()
        c = load_config("mlp_xor")
        c.num_train_steps = 10
        with pytest.raises(ConfigError, match=f"is being trained by pid {os.getpid()} on host"):
            train(c, str(tmp_path), stream=io.StringIO())
        assert os.listdir(tmp_path) == [".lock"] and _holder(tmp_path) == holder
    finally:
        lock.release()
    assert train(c, str(tmp_path), stream=io.StringIO())["step"] == 10  # released: trains


def test_a_lock_taken_but_not_yet_recorded_is_waited_for_then_refused(tmp_path):
    import fcntl

    from dl.train import WorkdirBusy
    from dl.train.workdir_lock import WorkdirLock

    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, with no record written yet
    try:
        start = time.monotonic()
        with pytest.raises(WorkdirBusy, match="another process .it has not recorded its pid"):
            WorkdirLock(str(tmp_path), wait=0.3).acquire()
        assert 0.3 <= time.monotonic() - start < 5
    finally:
        os.close(fd)
    lock = WorkdirLock(str(tmp_path), wait=0.3)
    lock.acquire()  # given back: taken at once
    assert _holder(tmp_path)["pid"] == os.getpid()
    lock.release()
    assert _holder(tmp_path) is None
