r"""Drives one training run through a seeded random sequence of faults, then checks it.

    python -m benchmarks.chaos --seed=0 --faults=12 --out=/tmp/chaos.json \
        [--tmpfs=/mnt/dl-chaos]   # as root in a private mount namespace: unshare -m

Faults, drawn with replacement from the seed:

  sigkill   the trainer is killed (SIGKILL) at a random moment of its run
  sigterm   the trainer is preempted (SIGTERM) at a random moment: exit 75
  flip      one bit of the newest checkpoint's array data is flipped
  truncate  a file of the newest checkpoint's array data is cut short
  diskfull  the workdir's filesystem is filled before a re-run: exit 74
            (only with --tmpfs, where the run's workdir is on a small tmpfs)

A process fault runs the same command again and interrupts it; a damaged
checkpoint is met by the next run (the next fault's, or the last); at the
end the command runs to its last step. The run's final state must be
bitwise that of an uninterrupted run of the same command, and its
metrics.jsonl equal, timing fields aside. The
report (JSON) lists every fault with the exit status it met, so a failure is
replayed by running the same seed again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("sigkill", "sigterm", "flip", "truncate", "diskfull")
TIMING = {"steps_per_second", "host_rss_mb", "compilations"}
ARGS = [
    "--config=" + os.path.join(ROOT, "experiments", "configs", "mlp_digits.py"),
    "--config.num_train_steps=3000",
    "--config.checkpoint_every_steps=250",
    "--config.log_every_steps=100",
    "--config.eval_every_steps=500",
    "--config.keep_checkpoints=3",
]
STARTED = "compiled in"  # in the trainer's first progress line


def _train(workdir: str, args, signal_after=None, sig=None) -> tuple[int, float, float]:
    """Runs experiments.train to its end, or sends it `sig` part-way.

    Args:
      signal_after: a fraction of the run's remaining steps, converted to
        seconds with `signal_after.rate` (steps per second) once the run says
        from which step it starts; None to let it finish.

    Returns:
      (exit status, seconds from the start of training to the exit, the
      fraction of all steps that were left when it started).
    """
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    cmd = [sys.executable, "-m", "experiments.train", *args, f"--workdir={workdir}"]
    left, started = 1.0, None
    with open(os.path.join(os.path.dirname(workdir), "trainer.log"), "a") as log:
        child = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        for line in child.stdout:
            if STARTED in line:
                started = time.perf_counter()
                step = line.split(", step ")[1].split(",")[0]
                done, total = (int(x) for x in step.split("/"))
                left = (total - done) / total
                break
        if signal_after is not None and started is not None:
            fraction, seconds_per_run = signal_after
            time.sleep(fraction * left * seconds_per_run)
            if child.poll() is None:
                child.send_signal(sig)
        child.communicate(timeout=600)
    seconds = time.perf_counter() - started if started is not None else 0.0
    return child.returncode, seconds, left


def _data_files(step_dir: str) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for f in files:
            path = os.path.join(root, f)
            if f"{os.sep}d{os.sep}" in path and os.path.getsize(path) > 4096:
                out.append(path)
    return sorted(out)


def _newest_step_dir(workdir: str) -> str | None:
    path = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
    return os.path.join(path, str(max(steps))) if steps else None


def _corrupt(workdir: str, kind: str, rng) -> str:
    step_dir = _newest_step_dir(workdir)
    files = _data_files(step_dir) if step_dir else []
    if not files:
        return "no checkpoint to corrupt"
    path = files[int(rng.integers(len(files)))]  # rng: this fault's own stream
    size = os.path.getsize(path)
    if kind == "flip":
        offset, bit = int(rng.integers(size)), int(rng.integers(8))
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << bit)]))
        return f"bit {bit} of byte {offset} of {os.path.relpath(path, workdir)}"
    keep = int(rng.integers(size // 2))
    os.truncate(path, keep)
    return f"{os.path.relpath(path, workdir)} cut to {keep} of {size} bytes"


def _fill(directory: str, leave: int) -> str:
    """Fills the filesystem of `directory` but for about `leave` bytes; returns the filler."""
    filler = os.path.join(directory, "filler")
    free = shutil.disk_usage(directory).free
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(free - leave, 0))
    return filler


def _events(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in f]


def _same_final_state(a: str, b: str) -> bool:
    import jax

    sys.path.insert(0, ROOT)
    from dl.train import Checkpoints
    from dl.train.evaluation import restore_run

    _, exp, state, step = restore_run(a)
    other = Checkpoints(b, read_only=True).restore(exp.abstract_state())
    leaves = zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(other[0]), strict=True)
    return step == other[2] and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in leaves)


def mount_tmpfs(path: str, megabytes: int = 64) -> str | None:
    """Mounts a tmpfs at `path`; returns None, or why it could not."""
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "dl-chaos", path],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else (proc.stderr.strip() or "mount failed")


def chaos(
    seed: int, faults: int, root: str, tmpfs: str | None = None, sequence=None, steps=3000
) -> dict:
    """Runs the straight run and the faulted run under `root` (the faulted one on `tmpfs`).

    Args:
      seed: draws the faults, their moments and offsets.
      faults: how many faults to draw (ignored with `sequence`).
      root: a directory for the uninterrupted run and the logs.
      tmpfs: a mounted tmpfs for the faulted run (needed by "diskfull").
      sequence: the faults in order, instead of drawing them.
      steps: the run's num_train_steps.
    """
    draws = np.random.default_rng(seed)
    args = [a for a in ARGS if "num_train_steps" not in a] + [f"--config.num_train_steps={steps}"]
    kinds = [k for k in KINDS if k != "diskfull" or tmpfs]
    if sequence is not None:
        unknown = [k for k in sequence if k not in kinds]
        if unknown:
            raise ValueError(f"faults {unknown} are not among those available here: {kinds}")
        faults = len(sequence)
    straight = os.path.join(root, "straight", "w")
    os.makedirs(os.path.dirname(straight), exist_ok=True)
    t0 = time.perf_counter()
    rc, run_seconds, _ = _train(straight, args)
    assert rc == 0, "the uninterrupted run failed"
    base = tmpfs or os.path.join(root, "chaos")
    os.makedirs(base, exist_ok=True)
    work = os.path.join(base, "w")
    record = []
    for i in range(faults):
        kind = sequence[i] if sequence is not None else kinds[int(draws.integers(len(kinds)))]
        # Each fault draws its moment or offsets from a stream of its own, so the
        # sequence of faults depends on the seed alone, whatever the files are like.
        rng = np.random.default_rng([seed, i])
        entry = {"fault": kind}
        if kind in ("sigkill", "sigterm"):
            # A moment drawn over the steps still to train (run_seconds also counts the
            # final evaluation and plot, hence 0.7), so that few faults meet a finished run.
            fraction = float(rng.uniform(0.05, 0.7))
            sig = signal.SIGKILL if kind == "sigkill" else signal.SIGTERM
            rc, seconds, left = _train(work, args, (fraction, run_seconds), sig)
            entry.update(rc=rc, at_fraction_of_the_rest=round(fraction, 3), steps_left=left)
        elif kind in ("flip", "truncate"):
            entry["what"] = _corrupt(work, kind, rng)  # met by the next run
        else:
            filler = _fill(base, leave=int(rng.integers(0, 400_000)))
            entry["rc"] = _train(work, args)[0]
            os.remove(filler)
        record.append(entry)
    final_rc = _train(work, args)[0]
    same_state = final_rc == 0 and _same_final_state(straight, work)
    same_metrics = final_rc == 0 and _events(straight) == _events(work)
    return {
        "seed": seed,
        "faults": record,
        "final_rc": final_rc,
        "same_state": same_state,
        "same_metrics": same_metrics,
        "ok": same_state and same_metrics,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faults", type=int, default=12)
    p.add_argument("--sequence", default="", help="comma-separated faults, in order")
    p.add_argument("--steps", type=int, default=3000, help="the run's num_train_steps")
    p.add_argument("--root", default="")
    p.add_argument("--tmpfs", default="", help="mount a 64 MiB tmpfs here for the faulted run")
    p.add_argument("--out", default="")
    a = p.parse_args()
    root = a.root or os.path.join("/tmp", f"dl-chaos-{a.seed}")
    shutil.rmtree(root, ignore_errors=True)
    tmpfs = None
    if a.tmpfs:
        why = mount_tmpfs(a.tmpfs)
        if why:
            print(f"no tmpfs ({why}): diskfull faults left out", file=sys.stderr)
        else:
            tmpfs = a.tmpfs
    sequence = a.sequence.split(",") if a.sequence else None
    report = chaos(a.seed, a.faults, root, tmpfs, sequence, a.steps)
    line = json.dumps(report)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
