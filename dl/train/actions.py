"""The periodic work of the training loop, as small actions, and the callbacks API.

After every compiled call the loop asks each action, in order, whether it
is due, and runs the ones that are. An action owns its condition and its
state; state that must survive a resume (the best value, the patience
counter) is returned by `state_dict` and saved in every checkpoint's
metadata under the action's `name`.

Actions also hear the loop's events: `on_log` (the training metrics of a
logging window), `on_evaluate` (a split's metrics), `on_checkpoint`,
`on_finish` (training is over, before the summary) and `on_end` (the
summary). A user callback is an `Action` like the loop's own: override the
hooks it needs and call `loop.stop(reason)` to end training.

    class StopAtAccuracy(Action):
        name = "stop_at_accuracy"

        def on_evaluate(self, loop, split, metrics):
            if split == "validation" and metrics["accuracy"] >= 0.95:
                loop.stop("validation accuracy reached 0.95")
"""

from __future__ import annotations

import numpy as np
from absl import logging

from dl.errors import ConfigError, Preempted
from dl.reporting import format_metrics
from dl.train.checkpoint import BEST, LATEST


class Action:
    """Something the loop does at some steps, or on some events.

    Subclasses override `due` and `run` for periodic work, and any of the
    `on_*` hooks; all default to doing nothing.

    Attributes:
      name: the key of the action's state in checkpoint metadata.
    """

    name = "action"

    def due(self, loop) -> bool:
        """Whether to `run` after the call that ended at `loop.step`."""
        return False

    def run(self, loop) -> None:
        """The periodic work; the loop has synced its metrics before."""

    def on_start(self, loop) -> None:
        """Training is about to start (or resume) at `loop.step`."""

    def on_log(self, loop, metrics: dict) -> None:
        """The training metrics of the window that ended at `loop.step` were logged."""

    def on_evaluate(self, loop, split: str, metrics: dict) -> None:
        """`split` was evaluated at `loop.step`."""

    def on_checkpoint(self, loop, kind: str) -> None:
        """A checkpoint of `kind` ("checkpoints" or "best") was written at `loop.step`."""

    def on_finish(self, loop) -> None:
        """Training is over; `loop.state` may still be replaced (e.g. by the best state)."""

    def on_end(self, loop, summary: dict) -> None:
        """The run's summary, which the action may add to."""

    def state_dict(self) -> dict:
        """What must survive a resume (JSON types)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores `state_dict()` from a checkpoint."""


def every(interval: int, loop) -> bool:
    """True at multiples of `interval` and at the last step."""
    return loop.step % interval == 0 or loop.step == loop.total


class Preemption(Action):
    """On SIGTERM: writes a checkpoint of the current step and stops (raises Preempted)."""

    name = "preemption"

    def __init__(self, flag):
        self.flag = flag

    def due(self, loop) -> bool:
        return self.flag.reached(loop.step, loop.steps_per_call)

    def run(self, loop) -> None:
        loop.save(LATEST)
        loop.ckpts.wait()
        loop.writer.close()
        raise Preempted(loop.step, loop.workdir)


class Periodic(Action):
    """An action due every `interval` steps and at the last step."""

    def __init__(self, interval: int):
        self.interval = interval

    def due(self, loop) -> bool:
        return every(self.interval, loop)


class LogMetrics(Periodic):
    """Every `interval` steps: the training metrics of the window since the last log."""

    name = "log"

    def __init__(self, interval: int):
        super().__init__(interval)
        self.window = None  # the loop's TrainWindow, from on_start
        self._restored: dict = {}

    def on_start(self, loop) -> None:
        self.window = loop.window
        self.window.load_state_dict(self._restored)

    def run(self, loop) -> None:
        result = loop.log_window()
        if result is not None:
            loop.emit("on_log", result)

    def state_dict(self) -> dict:
        """The sums of the window since the last log: a resume at a step that is not a
        log step logs the same means as the run that was not interrupted."""
        return self.window.state_dict() if self.window is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._restored = dict(state)


class Evaluate(Periodic):
    """Every `interval` steps: the validation split's metrics."""

    name = "evaluate"

    def run(self, loop) -> None:
        metrics = loop.evaluate("validation")
        loop.writer.write(loop.step, "validation", metrics)
        loop.progress.log(f"step {loop.step}/{loop.total} validation " + format_metrics(metrics))
        loop.emit("on_evaluate", "validation", metrics)


def is_better(value: float, best: float | None, direction: str) -> bool:
    """Whether `value` improves on `best` ("max" or "min"); a non-finite value never does."""
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if direction == "max" else value < best


def _watched(metric: str, metrics: dict, task) -> float:
    if not metrics:
        raise ConfigError(
            f"best_metric {metric!r} is watched on the validation split, which is empty; "
            "give it examples (dataset.validation_fraction, or a 'validation' split) or set "
            "best_metric=''"
        )
    if metric not in metrics:
        raise ConfigError(
            f"best_metric {metric!r} is not a metric of task {task.name!r}: "
            f"{', '.join(sorted(metrics))}"
        )
    return metrics[metric]


class KeepBest(Action):
    """Writes best/ whenever the validation `metric` improves."""

    name = "best"

    def __init__(self, metric: str, direction: str):
        self.metric, self.direction = metric, direction
        self.value: float | None = None
        self.step: int | None = None

    def on_start(self, loop) -> None:
        # A run stopped by a failed write of best/ (a full disk) may have
        # committed checkpoints/ at the same step: that state is the best one,
        # so best/ is written again from it, as the run would have.
        if self.step is not None and self.step not in loop.ckpts.steps(BEST):
            if self.step == loop.step:
                loop.save(BEST)
            else:
                logging.warning(
                    "best/ lacks the best step %d (its write failed); the best checkpoint "
                    "is %s until the metric improves again",
                    self.step,
                    loop.ckpts.steps(BEST) or "none",
                )

    def on_evaluate(self, loop, split: str, metrics: dict) -> None:
        if split != "validation":
            return
        value = _watched(self.metric, metrics, loop.exp.task)
        if is_better(value, self.value, self.direction):
            self.value, self.step = value, loop.step
            loop.save(BEST)

    def on_end(self, loop, summary: dict) -> None:
        if self.step is not None:
            summary["best"] = {"step": self.step, self.metric: self.value}

    def state_dict(self) -> dict:
        return {"value": self.value, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.step = state.get("value"), state.get("step")


class EarlyStopping(Action):
    """Stops when the validation `metric` has not improved by `min_delta` for `patience` evals.

    The run then ends on the best state (restored from best/).
    """

    name = "early_stopping"

    def __init__(self, metric: str, direction: str, patience: int, min_delta: float, best):
        self.metric, self.direction = metric, direction
        self.patience, self.min_delta = patience, min_delta
        self.best = best  # the KeepBest action whose state is restored at the end
        self.reference: float | None = None  # the best value so far
        self.bad_evals = 0
        self.stopped_step: int | None = None

    def on_start(self, loop) -> None:
        if self.stopped_step is not None:
            loop.stop("early stopping")

    def on_evaluate(self, loop, split: str, metrics: dict) -> None:
        if split != "validation":
            return
        value = _watched(self.metric, metrics, loop.exp.task)
        margin = self.min_delta if self.direction == "max" else -self.min_delta
        ref = self.reference
        improved = ref is None or is_better(value, ref + margin, self.direction)
        self.bad_evals = 0 if improved else self.bad_evals + 1
        if is_better(value, ref, self.direction):
            self.reference = value
        if self.bad_evals >= self.patience:
            self.stopped_step = loop.step
            loop.stop("early stopping")

    def on_finish(self, loop) -> None:
        if self.stopped_step is None:
            return
        loop.state = loop.ckpts.restore(loop.exp.abstract_state(), "best")[0]
        loop.progress.log(
            f"early stopping at step {self.stopped_step}: {self.metric} did not improve "
            f"for {self.patience} evaluations; restored the best step {self.best.step}"
        )

    def on_end(self, loop, summary: dict) -> None:
        if self.stopped_step is not None:
            summary["early_stopping"] = {
                "stopped_step": self.stopped_step,
                "restored_best_step": self.best.step,
            }

    def state_dict(self) -> dict:
        return {
            "reference": self.reference,
            "bad_evals": self.bad_evals,
            "stopped_step": self.stopped_step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.reference = state.get("reference")
        self.bad_evals = int(state.get("bad_evals", 0))
        self.stopped_step = state.get("stopped_step")


class StopAtTarget(Action):
    """Stops once `split/metric` reaches `value`, checked at every evaluation."""

    name = "target"

    def __init__(self, split: str, metric: str, value: float, direction: str):
        self.split, self.metric, self.value, self.direction = split, metric, value, direction
        self.converged_step: int | None = None

    def on_evaluate(self, loop, split: str, metrics: dict) -> None:
        if split != "validation":
            return
        got = metrics if self.split == "validation" else loop.evaluate(self.split)
        value = got[self.metric]
        if value >= self.value if self.direction == "max" else value <= self.value:
            self.converged_step = loop.step
            loop.stop("target reached")

    def on_end(self, loop, summary: dict) -> None:
        summary["converged"] = self.converged_step is not None
        sign = ">=" if self.direction == "max" else "<="
        summary["target"] = f"{self.split}/{self.metric} {sign} {self.value}"
        if self.converged_step is not None:
            summary["converged_step"] = self.converged_step
        else:
            reached = summary[self.split].get(self.metric, float("nan"))
            summary["message"] = (
                f"did not converge: {self.split}/{self.metric} = {reached:.4g} after "
                f"{loop.step} steps, target {self.value}"
            )


class Checkpointing(Periodic):
    """Every `interval` steps, at the last step and when the loop stops: checkpoints/."""

    name = "checkpointing"

    def due(self, loop) -> bool:
        return super().due(loop) or loop.stop_reason is not None

    def run(self, loop) -> None:
        loop.save(LATEST)
