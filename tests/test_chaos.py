"""One run through a seeded sequence of real faults (benchmarks/chaos.py), then checked.

SIGKILL and SIGTERM at random moments, a flipped bit and a truncated file in
the newest checkpoint, and (where a tmpfs can be mounted in a private mount
namespace) a full disk, with re-runs between them: the final state must be
bitwise that of the uninterrupted run and metrics.jsonl equal, timing fields
aside. `python -m benchmarks.chaos --faults=N` runs longer sequences
(BUILD_NOTES.md, "Faults").
"""

import json
import shutil
import subprocess
import sys
import warnings

import pytest

from conftest import ROOT

SEQUENCE = "sigterm,flip,diskfull,sigkill,truncate"


def _can_mount(tmp_path) -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    target = tmp_path / "probe"
    target.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=1m", "probe", str(target)],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else (proc.stderr.strip() or "mount failed")


@pytest.mark.slow
def test_a_run_through_five_kinds_of_fault_ends_as_the_uninterrupted_run(tmp_path):
    why = _can_mount(tmp_path)
    sequence = SEQUENCE if why is None else SEQUENCE.replace("diskfull,", "")
    cmd = [sys.executable, "-m", "benchmarks.chaos", "--seed=7", f"--sequence={sequence}"]
    cmd += ["--steps=1000", f"--root={tmp_path / 'runs'}"]
    if why is None:
        cmd = ["unshare", "-m", *cmd, f"--tmpfs={tmp_path / 'mnt'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    faults = report["faults"]
    assert [f["fault"] for f in faults] == sequence.split(",")
    expected = {"sigkill": (-9, 0), "sigterm": (75, 0), "diskfull": (74,)}
    for fault in faults:
        if fault["fault"] in expected:
            assert fault["rc"] in expected[fault["fault"]], report
        else:  # a damaged checkpoint, there to be damaged
            assert "no checkpoint" not in fault["what"], report
    assert report["final_rc"] == 0, report
    assert report["same_state"] and report["same_metrics"], report
    if why is not None:
        warnings.warn(
            f"ran without the full-disk fault: cannot mount a tmpfs here ({why})", stacklevel=1
        )
