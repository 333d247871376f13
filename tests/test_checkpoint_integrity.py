"""Checkpoint content verified on restore: real bit flips in real orbax files."""

import io
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import config_path, load_config, run_binary
from dl.train import Action, CheckpointError, Checkpoints, build, train
from dl.train.checkpoint import abstract


def digits_config(steps=40):
    c = load_config("mlp_digits")
    c.num_train_steps, c.checkpoint_every_steps, c.keep_checkpoints = steps, 20, 3
    c.log_every_steps = c.eval_every_steps = 20
    return c


def array_files(step_dir):
    """The files of a step that hold array bytes (the b-tree and manifests are small)."""
    out = []
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for f in files:
            path = os.path.join(root, f)
            if os.sep + "d" + os.sep in path + os.sep and os.path.getsize(path) > 4096:
                out.append(path)
    assert out, f"no array data under {step_dir}"
    return out


def flip(path, offset, bit):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("digits"))
    c = digits_config()
    train(c, workdir, stream=io.StringIO())
    return c, workdir


def test_twenty_single_bit_flips_are_each_detected_and_fall_back(digits_run, caplog):
    c, workdir = digits_run
    ab = build(c).abstract_state()
    reference = Checkpoints(workdir, read_only=True).restore(ab, 20)[0]
    files = array_files(os.path.join(workdir, "checkpoints", "40"))
    sizes = [os.path.getsize(f) for f in files]
    rng = np.random.default_rng(16)
    named = 0
    for _ in range(20):
        k = int(rng.integers(sum(sizes)))
        i = 0
        while k >= sizes[i]:
            k -= sizes[i]
            i += 1
        bit = int(rng.integers(8))
        flip(files[i], k, bit)
        try:
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="absl"):
                state, _, step = Checkpoints(workdir, read_only=True).restore(ab)
        finally:
            flip(files[i], k, bit)  # restore the byte
        assert step == 20, f"a flip of bit {bit} at byte {k} of {files[i]} was not detected"
        assert same(state, reference)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "checkpoint step 40" in errors[0], errors
        named += "leaf " in errors[0] and "differs from what was written" in errors[0]
    assert named >= 15  # array bytes are stored raw: nearly every flip changes a leaf
    assert Checkpoints(workdir, read_only=True).restore(ab)[2] == 40  # all bytes back


def test_dl_load_restores_the_checkpoint_of_a_given_step(digits_run):
    import dl

    c, workdir = digits_run
    ab = build(c).abstract_state()
    ckpts = Checkpoints(workdir, read_only=True)
    assert ckpts.steps() == [20, 40]
    at_20, latest = ckpts.restore(ab, 20)[0], ckpts.restore(ab)[0]
    assert not same(at_20.params, latest.params)
    for which in (20, "20"):  # Python's int, and the binaries' --checkpoint=20
        predictor = dl.load(workdir, checkpoint=which)
        assert predictor.step == 20 and same(predictor.params, at_20.params)
    assert same(dl.load(workdir).params, latest.params)
    with pytest.raises(
        CheckpointError, match=r"no checkpoint at step 30 .* steps there: \[20, 40\]"
    ):
        dl.load(workdir, checkpoint=30)


NOISE = (
    "Traceback",
    "Event loop is closed",
    "exception was never retrieved",  # asyncio's, of a Task or a _GatheringFuture
    "Exception ignored in",
    "See full TensorStore details",
)


def test_a_truncated_step_is_one_line_and_its_details_come_back_with_verbosity(
    digits_run, tmp_path
):
    _, workdir = digits_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    for path in array_files(run / "checkpoints" / "40"):  # cut short, as by a full disk
        with open(path, "r+b") as f:
            f.truncate(1000)  # every array unreadable: orbax's reads fail all at once
    # A fresh interpreter (env=): orbax's unfinished reads are reported as late as its exit.
    proc = run_binary(
        "experiments.evaluate", f"--workdir={run}", "--figures=false", env={"DL_TEST": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 20
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line[:1] in "IWEF" and line[1:5].isdigit() for line in lines), proc.stderr
    bad = [line for line in lines if "cannot be read" in line]
    assert len(bad) == 1 and "checkpoint step 40" in bad[0], proc.stderr
    # --verbosity=1 keeps orbax's details: the failed read's traceback.
    proc = run_binary(
        "experiments.evaluate", f"--workdir={run}", "--figures=false", "--verbosity=1"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"reading {run / 'checkpoints' / '40'} failed" in proc.stderr
    assert "Traceback" in proc.stderr and "See full TensorStore details" in proc.stderr


def test_orbax_noise_is_dropped_unless_verbose_and_other_noise_is_kept(monkeypatch):
    """The filters themselves: the binary test above sees their noise only in some runs."""
    import sys
    import types

    from absl import logging as absl_logging

    import dl.train.orbax_noise as orbax_noise

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    monkeypatch.setattr(orbax_noise, "_installed", False)
    orbax_noise.quiet()  # wraps the recorder

    def unraisable(filename):  # a coroutine of code in `filename` that raised as it closed
        namespace = {}
        exec(compile("async def read():\n    raise Exception('x')\n", filename, "exec"), namespace)
        coroutine = namespace["read"]()
        try:
            coroutine.send(None)
        except Exception as e:
            return types.SimpleNamespace(
                exc_type=type(e),
                exc_value=e,
                exc_traceback=e.__traceback__,
                object=coroutine,
                err_msg=None,
            )

    inside = unraisable(os.path.join(os.sep, "x", "orbax", "checkpoint", "serialization.py"))
    outside = unraisable(os.path.join(os.sep, "x", "mine.py"))
    never = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "", (), None)
    never.msg = "_GatheringFuture exception was never retrieved"
    verbosity = absl_logging.get_verbosity()
    try:
        absl_logging.set_verbosity(absl_logging.WARNING)
        sys.unraisablehook(inside)
        sys.unraisablehook(outside)
        assert reported == [outside]
        assert not orbax_noise._Drop().filter(never)
        absl_logging.set_verbosity(absl_logging.DEBUG)  # --verbosity=1
        sys.unraisablehook(inside)
        assert reported == [outside, inside]
        assert orbax_noise._Drop().filter(never)
    finally:
        absl_logging.set_verbosity(verbosity)


def test_a_flipped_bit_is_reported_by_evaluate_and_moved_aside_by_train(tmp_path):
    args = [
        f"--config={config_path('mlp_digits')}",
        "--config.num_train_steps=60",
        "--config.checkpoint_every_steps=20",
        "--config.log_every_steps=20",
        "--config.eval_every_steps=20",
    ]
    straight, run = tmp_path / "straight", tmp_path / "run"
    for workdir in (straight, run):
        assert run_binary("experiments.train", *args, f"--workdir={workdir}").returncode == 0
    data = array_files(run / "checkpoints" / "60")[0]
    flip(data, os.path.getsize(data) // 2, 3)

    proc = run_binary("experiments.evaluate", f"--workdir={run}", "--figures=false")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 40
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
    bad = [line for line in proc.stderr.splitlines() if "cannot be read" in line]
    assert len(bad) == 1 and "checkpoint step 60" in bad[0] and "leaf " in bad[0], proc.stderr

    # train restores step 40, moves 60 aside and trains it again, as the straight run did.
    proc = run_binary("experiments.train", *args, f"--workdir={run}")
    assert proc.returncode == 0, proc.stderr
    assert os.path.isdir(run / "unreadable" / "checkpoints-60")
    # The step written again is damaged again: set aside beside the first, nothing lost.
    flip(array_files(run / "checkpoints" / "60")[0], 100, 5)
    proc = run_binary("experiments.train", *args, f"--workdir={run}")
    assert proc.returncode == 0, proc.stderr
    assert os.path.isdir(run / "unreadable" / "checkpoints-60")
    assert os.path.isdir(run / "unreadable" / "checkpoints-60.1")
    ab = build(digits_config(60)).abstract_state()
    a = Checkpoints(str(straight), read_only=True).restore(ab)
    b = Checkpoints(str(run), read_only=True).restore(ab)
    assert a[2] == b[2] == 60 and same(a[0], b[0])


def test_a_corrupt_best_step_is_refused_with_the_leaf_named(tmp_path):
    c = digits_config()
    c.best_metric = "accuracy"
    train(c, str(tmp_path), stream=io.StringIO())
    (best_step,) = Checkpoints(str(tmp_path), read_only=True).steps("best")
    data = array_files(tmp_path / "best" / str(best_step))[0]
    flip(data, os.path.getsize(data) // 3, 0)
    with pytest.raises(CheckpointError, match="leaf .* differs from what was written"):
        Checkpoints(str(tmp_path), read_only=True).restore(build(c).abstract_state(), "best")
    proc = run_binary(
        "experiments.evaluate", f"--workdir={tmp_path}", "--checkpoint=best", "--figures=false"
    )
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert "no readable checkpoint" in proc.stderr


def test_a_non_finite_state_and_changed_metadata_are_refused(tmp_path, caplog):
    ckpts = Checkpoints(str(tmp_path), keep=5)
    good = {"w": jnp.arange(4.0), "n": jnp.int32(3)}
    ckpts.save(1, good, {"note": "good"})
    ckpts.save(2, {"w": jnp.array([0.0, jnp.nan, 1.0, 2.0]), "n": jnp.int32(3)}, {"note": "nan"})
    ckpts.save(3, good, {"note": "meta to change"})
    ckpts.wait()
    ckpts.close()
    meta_file = tmp_path / "checkpoints" / "3" / "meta" / "metadata"
    meta_file.write_text(meta_file.read_text().replace("to change", "changed!!"))
    with caplog.at_level(logging.ERROR, logger="absl"):
        state, meta, step = Checkpoints(str(tmp_path), read_only=True).restore(abstract(good))
    assert step == 1 and meta == {"note": "good"} and same(state, good)
    text = caplog.text
    assert "checkpoint step 3" in text and "metadata" in text
    assert "checkpoint step 2" in text and "leaf w holds non-finite values" in text


def test_steps_written_without_checksums_restore_with_a_warning(tmp_path, caplog):
    ckpts = Checkpoints(str(tmp_path))
    state = {"w": jnp.arange(3.0)}
    ckpts.save(5, state, {})
    ckpts.wait()
    ckpts.close()

    shutil.rmtree(tmp_path / "checkpoints" / "5" / "checksums")  # as before checksums existed
    with caplog.at_level(logging.WARNING, logger="absl"):
        restored, _, step = Checkpoints(str(tmp_path), read_only=True).restore(abstract(state))
    assert step == 5 and same(restored, state)
    assert "has no checksums" in caplog.text


def test_a_directory_not_named_as_a_step_is_left_alone(tmp_path):
    args = [
        f"--config={config_path('mlp_xor')}",
        "--config.target_metric=",
        "--config.checkpoint_every_steps=20",
        f"--workdir={tmp_path}",
    ]
    assert run_binary("experiments.train", *args, "--config.num_train_steps=40").returncode == 0

    shutil.copytree(tmp_path / "checkpoints" / "40", tmp_path / "checkpoints" / "0400")
    for steps in (60, 80):  # every re-run trains on, warns, and leaves it where it is
        proc = run_binary("experiments.train", *args, f"--config.num_train_steps={steps}")
        assert proc.returncode == 0, proc.stderr
        assert "checkpoints/0400 is not a checkpoint step" in proc.stderr
        assert json.loads(proc.stdout.split("summary ", 1)[1].splitlines()[0])["step"] == steps
    assert os.path.isdir(tmp_path / "checkpoints" / "0400")
    assert Checkpoints(str(tmp_path), read_only=True).steps() == [40, 60, 80]


class _StopAt(Action):
    name = "stop_at"

    def __init__(self, step):
        self.step = step

    def on_start(self, loop):
        if loop.step >= self.step:
            loop.stop("test")

    def due(self, loop):
        return loop.step >= self.step

    def run(self, loop):
        loop.stop("test")


def test_a_best_step_lost_with_its_write_is_written_again_on_resume(tmp_path):
    # A full disk can fail best/'s write of a step whose checkpoints/ write
    # committed: the resumed run writes best/ again, from that same state.
    c = digits_config(steps=60)
    c.best_metric = "accuracy"
    workdir = str(tmp_path)
    train(c, workdir, stream=io.StringIO(), callbacks=[_StopAt(40)])
    exp = build(c)
    ckpts = Checkpoints(workdir, read_only=True)
    assert ckpts.steps() == [20, 40] and ckpts.steps("best") == [40]
    written = ckpts.restore(exp.abstract_state(), "best")[0]
    shutil.rmtree(os.path.join(workdir, "best", "40"))
    train(c, workdir, stream=io.StringIO(), callbacks=[_StopAt(40)])
    again = Checkpoints(workdir, read_only=True)
    assert again.steps("best") == [40]
    assert same(again.restore(exp.abstract_state(), "best")[0], written)
