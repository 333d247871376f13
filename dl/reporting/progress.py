"""Progress of a run on the console: a tqdm bar on a terminal, plain lines elsewhere.

    progress = Progress(total_steps=1000, first_step=0)   # stdout
    for step in range(1, 1001):
        ...
        progress.update(step)                        # every call of the train step
        if step % 100 == 0:
            progress.update(step, {"loss": loss})    # a log point
            progress.log(f"step {step} validation ...")
    progress.close()

On a terminal the bar (steps done, steps per second, ETA, the last status)
is redrawn in place by tqdm. When the stream is a file or a pipe nothing is
redrawn: no bar characters and no carriage returns reach it, only the lines
given to `log` and a status line (steps done, steps per second, ETA) at each
log point, or after `every_seconds` without any line, so a log file holds
a few lines per log point however fast the steps are.

`RunCounter` numbers the runs of a binary that trains several one after
another ("[2/3] lstm: ...") and gives each run a stream that forwards its
status lines.
"""

from __future__ import annotations

import numbers
import os
import sys
import time
from collections.abc import Callable, Mapping

from tqdm import tqdm


def format_metrics(metrics: Mapping[str, object]) -> str:
    """`name=value` pairs for a log line; floats with 4 significant digits.

    Example:
      >>> format_metrics({"loss": 0.123456, "epoch": 3, "lr": 1e-5, "mse": float("nan")})
      'loss=0.1235 epoch=3 lr=1e-05 mse=nan'
    """
    parts = []
    for name, value in metrics.items():
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            parts.append(f"{name}={float(value):.4g}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _rate(steps_per_second: float) -> str:
    if steps_per_second >= 100:
        return f"{steps_per_second:.0f}"
    return f"{steps_per_second:.3g}"


def _bar_size(stream) -> dict:
    """tqdm's size arguments: follow the terminal's size, or 80 x 24 where it reports none.

    A pseudo-terminal that was never sized reports 0 x 0, in which tqdm draws nothing.
    """
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return {"dynamic_ncols": True}
    if size.columns and size.lines:
        return {"dynamic_ncols": True}
    return {"ncols": 80, "nrows": 24, "dynamic_ncols": False}


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class Progress:
    """A progress bar with ETA on a terminal; plain periodic lines otherwise.

    Args:
      total_steps: the step the run ends at.
      first_step: the step it starts from (a resumed run's checkpoint step);
        rates and the ETA count the steps from there.
      stream: where to write; stdout by default. A stream that has a method
        `write_status(line)` receives the status lines through it and the
        lines given to `log` through `write` (see `RunStream`).
      every_seconds: without a terminal, the longest time without a line
        before `update` writes a status line by itself.

    Attributes:
      tty: whether the stream is a terminal (then a bar is drawn).

    Example:
      >>> import io
      >>> out = io.StringIO()
      >>> progress = Progress(100, stream=out)
      >>> progress.update(50)
      >>> progress.update(100, {"loss": 0.25})
      >>> progress.close()
      >>> out.getvalue().startswith("step 100/100 (100%): ")
      True
    """

    def __init__(
        self,
        total_steps: int,
        first_step: int = 0,
        stream=None,
        *,
        every_seconds: float = 30.0,
    ):
        self.stream = stream if stream is not None else sys.stdout
        self.tty = _is_terminal(self.stream)
        self.total, self.first, self.step = int(total_steps), int(first_step), int(first_step)
        self.every_seconds = float(every_seconds)
        self._start = self._last_line = time.perf_counter()
        self._status = ""
        self._bar = None
        if self.tty:
            self._bar = tqdm(
                total=self.total,
                initial=self.first,
                file=self.stream,
                unit="step",
                mininterval=0.2,
                **_bar_size(self.stream),
            )

    def update(self, step: int, status: Mapping[str, object] | str | None = None) -> None:
        """Records that training reached `step`; `status` (e.g. the loss) marks a log point.

        A status is metrics (written as `format_metrics` writes them) or a string.
        """
        self.step = int(step)
        if status is not None:
            self._status = status if isinstance(status, str) else format_metrics(status)
        if self._bar is not None:
            if status is not None:
                self._bar.set_postfix_str(self._status, refresh=False)
            if self.step != self._bar.n:
                self._bar.update(self.step - self._bar.n)
            elif status is not None:
                self._bar.refresh()
            return
        if status is not None or time.perf_counter() - self._last_line >= self.every_seconds:
            self._write_status(self.status_line())

    def status_line(self) -> str:
        """'step 200/1000 (20%): 45.1 steps/s, ETA 00:17, elapsed 00:04; loss=0.3'."""
        elapsed = time.perf_counter() - self._start
        done = self.step - self.first
        rate = done / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.step, 0)
        eta = tqdm.format_interval(left / rate) if rate > 0 else "?"
        percent = 100.0 * self.step / self.total if self.total else 100.0
        line = (
            f"step {self.step}/{self.total} ({percent:.0f}%): {_rate(rate)} steps/s, "
            f"ETA {eta}, elapsed {tqdm.format_interval(elapsed)}"
        )
        return line + (f"; {self._status}" if self._status else "")

    def _write_status(self, line: str) -> None:
        write_status = getattr(self.stream, "write_status", None)
        if write_status is not None:
            write_status(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last_line = time.perf_counter()

    def log(self, line: str) -> None:
        """Writes one line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last_line = time.perf_counter()

    def close(self) -> None:
        """Leaves the bar's last state on the terminal; nothing otherwise."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RunStream:
    """The stream of one of several runs: its whole log to a file, its status to the console.

    Pass it as `dl.train.train(..., stream=...)`. Every line the run writes
    goes to `file`; the status lines (steps done, steps per second, ETA; see
    `Progress`) also go to the run counter's log with the run's "[i/n] name: "
    prefix, at most one every `every_seconds`.

    Args:
      counter: the `RunCounter` of the runs.
      file: an open text file for the run's whole log, or None.
      every_seconds: least time between two status lines on the console.
    """

    def __init__(self, counter: RunCounter, file=None, every_seconds: float = 10.0):
        self.counter, self.file, self.every_seconds = counter, file, float(every_seconds)
        self._last = -float("inf")

    def write(self, text: str) -> int:
        if self.file is not None:
            self.file.write(text)
        return len(text)

    def write_status(self, line: str) -> None:
        self.write(line + "\n")
        self.flush()
        now = time.perf_counter()
        if now - self._last >= self.every_seconds:
            self._last = now
            self.counter.log(line)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def isatty(self) -> bool:
        return False


class RunCounter:
    """Numbers the runs of a binary that trains several, one after another.

    Each line is "[i/n] name: message". `finish` adds the run's time, and the
    stream of `stream` forwards the run's status lines, so a long run shows
    how far it is.

    Args:
      total: how many runs there are.
      log: called with each line; `print` by default.
      every_seconds: least time between two status lines of one run.

    Example:
      >>> runs = RunCounter(2)
      >>> runs.start("rnn", "training in runs/rnn")
      [1/2] rnn: training in runs/rnn
      >>> runs.log("step 100/500 (20%)")
      [1/2] rnn: step 100/500 (20%)
      >>> runs.start("lstm")
      [2/2] lstm: started
    """

    def __init__(
        self, total: int, log: Callable[[str], object] = print, every_seconds: float = 10.0
    ):
        self.total, self.every_seconds = int(total), float(every_seconds)
        self.index, self.name = 0, ""
        self._log = log
        self._start = time.perf_counter()

    def start(self, name: str, message: str = "started") -> None:
        """Begins the next run and writes its first line."""
        self.index += 1
        self.name = name
        self._start = time.perf_counter()
        self.log(message)

    def log(self, message: str) -> None:
        """Writes a line of the current run."""
        self._log(f"[{self.index}/{self.total}] {self.name}: {message}")

    def stream(self, file=None) -> RunStream:
        """A stream for the current run's training (see `RunStream`)."""
        return RunStream(self, file, self.every_seconds)

    def finish(self, message: str = "done") -> float:
        """Writes the run's last line with the time since `start`; returns those seconds."""
        seconds = time.perf_counter() - self._start
        self.log(f"{message} ({_duration(seconds)})")
        return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
