"""A run's metrics.jsonl: one JSON object per event, written and read back.

Each event is `{"step": int, "split": str, name: value, ...}`: the training
loop writes a "train" event at every log step (the window's means of the loss
and the task's metrics, plus the fields of `RUN_FIELDS`), a "validation"
event at every evaluation and a "nonfinite" event when training stops on a
non-finite loss. JSON has no NaN or infinity; they are stored as the
strings "nan", "inf" and "-inf", which `as_number` reads back as floats.

    writer = MetricWriter(workdir)      # also TensorBoard event files in workdir
    writer.write(10, "train", {"loss": 0.3})
    writer.close()
    steps, losses = series(read_events(writer.path), "train", "loss")
"""

from __future__ import annotations

import json
import math
import os

from dl.errors import ConfigError, WriteError
from dl.reporting.tensorboard import TensorBoardWriter

RUN_FIELDS = frozenset(
    {
        "step",
        "split",
        "grad_norm",
        "learning_rate",
        "steps_per_second",
        "epoch",
        "skipped_steps",
        "loss_scale",
        "overflow_steps",
        "param_norm",
        "host_rss_mb",
        "compilations",
    }
)
"""The keys of a train event that are not the loss or a task metric.

The training loop writes exactly these in its train events besides "loss" and
the task's metrics; readers use the set to tell the task's metrics apart.
"""


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricWriter:
    """Appends one JSON object per event to `metrics.jsonl` in the workdir,
    and the same scalars to TensorBoard event files there.

    Args:
      workdir: the run's directory.
      resume_step: when resuming from a checkpoint at this step, events logged
        after it by the interrupted run are dropped, so the file reads as one
        uninterrupted run. None starts a fresh file.
      tensorboard: also write TensorBoard event files (see `TensorBoardWriter`).

    Example:
      >>> import tempfile
      >>> workdir = tempfile.mkdtemp()
      >>> writer = MetricWriter(workdir, tensorboard=False)
      >>> writer.write(10, "train", {"loss": 0.25, "grad_norm": float("nan")})
      >>> writer.close()
      >>> read_events(writer.path)
      [{'step': 10, 'split': 'train', 'loss': 0.25, 'grad_norm': 'nan'}]
    """

    def __init__(self, workdir: str, resume_step: int | None = None, tensorboard: bool = True):
        self._tb = TensorBoardWriter(workdir, resume_step) if tensorboard else None
        self.path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None and os.path.exists(self.path):
            kept = [e for e in read_events(self.path) if e.get("step", 0) <= resume_step]
            with open(self.path + ".tmp", "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in kept)
            os.replace(self.path + ".tmp", self.path)
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)
        self._file = open(self.path, "a")  # noqa: SIM115 -- held for the run

    def write(self, step: int, split: str, metrics: dict) -> None:
        """Appends the event `{"step": step, "split": split, **metrics}`."""
        event = {"step": int(step), "split": split}
        event.update({k: _clean(v) for k, v in metrics.items()})
        try:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()
        except OSError as e:
            raise WriteError(f"cannot write {self.path}: {e.strerror}") from e
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


def read_events(metrics_jsonl_path: str) -> list[dict]:
    """The events of a metrics.jsonl file, in file order.

    A line cut short (a run killed while writing it) is skipped.

    Raises:
      ConfigError: the file does not exist or cannot be read.
    """
    try:
        with open(metrics_jsonl_path) as f:
            lines = f.readlines()
    except OSError as e:
        raise ConfigError(f"cannot read metrics file {metrics_jsonl_path!r}: {e.strerror}") from e
    events = []
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def as_number(value) -> float | None:
    """A float from an event value; the strings "nan"/"inf" that metrics.jsonl uses count.

    Example:
      >>> as_number(3), as_number("nan"), as_number("adam"), as_number(True)
      (3.0, nan, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity"):
        return float(value)
    return None


def series(events: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one key of one split, in file order; non-numbers skipped.

    Example:
      >>> series([{"step": 1, "split": "train", "loss": 2.0},
      ...         {"step": 1, "split": "validation", "loss": 3.0}], "train", "loss")
      ([1], [2.0])
    """
    steps, values = [], []
    for e in events:
        if e.get("split") != split:
            continue
        v = as_number(e.get(key))
        if v is not None:
            steps.append(int(e["step"]))
            values.append(v)
    return steps, values


def export_metrics(metrics_jsonl_path: str, logdir: str, images: dict | None = None) -> int:
    """Writes a run's metrics.jsonl as TensorBoard event files (for runs logged without them).

    Args:
      metrics_jsonl_path: the run's metrics.jsonl.
      logdir: where the event file goes (usually the run's workdir).
      images: optional tag -> PNG path, written at the last step (e.g. learning curves).

    Returns:
      The number of events written.
    """
    events = read_events(metrics_jsonl_path)
    last = 0
    writer = TensorBoardWriter(logdir)
    try:
        for event in events:
            step = int(event.get("step", 0))
            last = max(last, step)
            values = {k: v for k, v in event.items() if k not in ("step", "split")}
            writer.scalars(step, str(event.get("split", "")), values)
        for tag, path in (images or {}).items():
            if os.path.isfile(path):
                writer.image(last, tag, path)
    finally:
        writer.close()
    return len(events)
