"""Metric files, progress display and host-side diagnostics of a run."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them readable
    return value


class MetricWriter:
    """Appends one JSON object per event to `metrics.jsonl` in the workdir,
    and the same scalars to TensorBoard event files there.

    Args:
      workdir: the run's directory.
      resume_step: when resuming from a checkpoint at this step, events logged
        after it by the interrupted run are dropped, so the file reads as one
        uninterrupted run.
    """

    def __init__(self, workdir: str, resume_step: int | None = None, tensorboard: bool = True):
        from dl.tools.tensorboard import TensorBoardWriter

        # TensorBoard event files beside metrics.jsonl, written without TensorFlow.
        self._tb = TensorBoardWriter(workdir, resume_step) if tensorboard else None
        self.path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None and os.path.exists(self.path):
            kept = []
            with open(self.path) as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill
                    if event.get("step", 0) <= resume_step:
                        kept.append(json.dumps(event))
            with open(self.path + ".tmp", "w") as f:
                f.writelines(k + "\n" for k in kept)
            os.replace(self.path + ".tmp", self.path)
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)
        self._file = open(self.path, "a")  # noqa: SIM115 -- held for the run

    def write(self, step: int, split: str, metrics: dict) -> None:
        event = {"step": int(step), "split": split}
        event.update({k: _clean(v) for k, v in metrics.items()})
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        if self._tb is not None:
            self._tb.scalars(step, split, metrics)

    def image(self, step: int, tag: str, png_path: str) -> None:
        """Adds a PNG to the TensorBoard images of the run."""
        if self._tb is not None:
            self._tb.image(step, tag, png_path)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class NullWriter:
    """The metric writer of processes other than the lead one: writes nothing."""

    def write(self, step: int, split: str, metrics: dict) -> None:
        pass

    def image(self, step: int, tag: str, png_path: str) -> None:
        pass

    def close(self) -> None:
        pass


def host_rss_mb() -> float | None:
    """This process's resident set size now, in MiB; None where it cannot be read.

    Read from /proc/self/statm (Linux), else through psutil if it is installed.
    Unlike `resource.getrusage`'s maximum, it can fall as well as rise, so a
    series of readings shows whether host memory grows over a run.
    """
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


class CompilationCounter:
    """Counts XLA compilations in this process while it is open (a context manager).

    Every compilation JAX asks of the backend counts, including one answered
    from the persistent compilation cache: a recompilation is a cost either
    way (tracing, lowering), and a count that still grows after the first
    evaluation and checkpoint means something recompiles every time.
    """

    _EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()  # orbax may compile from its own threads

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        if event == self._EVENT:
            with self._lock:
                self.count += 1

    def __enter__(self):
        import jax

        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        import jax

        jax.monitoring.unregister_event_duration_listener(self._listener)


def read_metrics(workdir: str) -> list[dict]:
    """The events of a run's metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _format(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


class Progress:
    """A progress bar with ETA on a terminal; plain periodic lines otherwise.

    On a terminal the bar is redrawn in place at most a few times a second;
    when stdout is a file or a pipe nothing but the lines passed to `log` is
    written, so log files hold no bar.
    """

    def __init__(self, total_steps: int, first_step: int = 0, stream=None, width: int = 30):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total, self.first, self.width = total_steps, first_step, width
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._status = ""

    def update(self, step: int, status: dict | None = None) -> None:
        if status is not None:
            self._status = _format(status)
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.2 and step < self.total:
            return
        self._last_draw = now
        done = step - self.first
        frac = step / max(self.total, 1)
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        filled = int(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        eta_s = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        self.stream.write(
            f"\r[{bar}] {step}/{self.total} {rate:.1f} steps/s ETA {eta_s} {self._status}\033[K"
        )
        self.stream.flush()

    def log(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
