"""Training into a full filesystem: a real tmpfs that fills up, in a private mount namespace.

Mounting needs root (or a user namespace); where neither is allowed the test
skips and says why.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, config_path, load_config, run_binary
from dl.train import Checkpoints, build

ARGS = [
    f"--config={config_path('mlp_digits')}",
    "--config.num_train_steps=100",
    "--config.checkpoint_every_steps=20",
    "--config.log_every_steps=20",
    "--config.eval_every_steps=20",
    "--config.keep_checkpoints=3",
]

# Runs in a private mount namespace: a 12 MiB tmpfs, all but ~2.5 MiB taken by a
# filler file; training fills the rest, then the filler is deleted and the same
# command is run again. The workdir is copied out before the namespace ends.
SCRIPT = r"""
set -u
mnt="$1"; out="$2"; shift 2
mkdir -p "$mnt"
mount -t tmpfs -o size=12m dl-test "$mnt" 2>"$out/mount.err" || exit 97
head -c $((12 * 1024 * 1024 - 2600 * 1024)) /dev/zero > "$mnt/filler" 2>/dev/null
"$PYTHON" -m experiments.train "$@" --workdir="$mnt/w" >"$out/first.out" 2>"$out/first.err"
echo $? > "$out/first.rc"
cp -a "$mnt/w" "$out/after_failure"
rm "$mnt/filler"
"$PYTHON" -m experiments.train "$@" --workdir="$mnt/w" >"$out/second.out" 2>"$out/second.err"
echo $? > "$out/second.rc"
cp -a "$mnt/w" "$out/final"
"""


def _same_states(a, b, exp):
    x = Checkpoints(a, read_only=True).restore(exp.abstract_state())
    y = Checkpoints(b, read_only=True).restore(exp.abstract_state())
    assert x[2] == y[2]
    for p, q in zip(jax.tree_util.tree_leaves(x[0]), jax.tree_util.tree_leaves(y[0]), strict=True):
        assert np.array_equal(np.asarray(p), np.asarray(q))


def _train_events(workdir):
    timing = {"steps_per_second", "host_rss_mb", "compilations", "seconds"}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in f]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) is not installed")
def test_a_full_disk_stops_with_exit_74_keeps_earlier_steps_and_resumes_exactly(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable)
    proc = subprocess.run(
        ["unshare", "-m", "bash", "-c", SCRIPT, "script", str(tmp_path / "mnt"), str(out), *ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if (
        proc.returncode == 97
        or "unshare failed" in proc.stderr
        or "Operation not permitted" in proc.stderr
    ):
        reason = (out / "mount.err").read_text() if (out / "mount.err").exists() else proc.stderr
        pytest.skip(f"cannot mount a tmpfs here: {reason.strip()}")
    assert proc.returncode == 0, proc.stderr

    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "74", first_err
    lines = [line for line in first_err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint step "), first_err
    # Either writer may meet the full disk first: the latest checkpoints or best/.
    match = re.search(r"could not be written to (\S+)/(checkpoints|best)/(\d+): ", lines[0])
    assert match and match.group(1) == str(tmp_path / "mnt" / "w"), lines[0]
    assert "No space left on device" in lines[0], lines[0]
    kind, failed_step = match.group(2), int(match.group(3))
    # Training stopped at the failed save instead of carrying on.
    steps_logged = [e["step"] for e in _train_events(out / "after_failure")]
    assert max(steps_logged) <= failed_step + 20
    # The steps committed before are intact: listed and verified, in both
    # directories, and none at or after the failure where the write failed.
    kept = Checkpoints(str(out / "after_failure"), read_only=True)
    exp = build(load_config("mlp_digits"))
    assert kept.steps(kind) == [] or max(kept.steps(kind)) < failed_step
    assert kept.steps()
    for step in kept.steps():
        assert kept.restore(exp.abstract_state(), step)[2] == step
    for step in kept.steps("best"):
        assert step <= failed_step
    if kept.steps("best"):
        assert kept.restore(exp.abstract_state(), "best")[2] == max(kept.steps("best"))

    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    straight = tmp_path / "straight"
    assert run_binary("experiments.train", *ARGS, f"--workdir={straight}").returncode == 0
    c = load_config("mlp_digits")
    c.num_train_steps = 100
    _same_states(str(straight), str(out / "final"), build(c))
    final = Checkpoints(str(out / "final"), read_only=True)
    assert final.steps("best") == Checkpoints(str(straight), read_only=True).steps("best")
    assert _train_events(straight) == _train_events(out / "final")
