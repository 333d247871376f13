"""The one training loop, for every model family.

`train(config, workdir)` builds the experiment, restores the workdir's latest
checkpoint if it has one, compiles the training call, calls it until the
last step, and finishes with the summary. What happens every N steps
(logging, evaluation, the best checkpoint, early stopping, the target,
checkpointing, preemption) is an `Action` (dl/train/actions.py) that the
`Loop` asks after every call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time

import jax
import optax
from absl import logging

import dl.train.actions as A
from dl.data.preprocessing import FILE as PREPROCESSING_FILE
from dl.data.stream import StreamDataset
from dl.errors import ConfigError, NonFiniteError
from dl.reporting import (
    MetricWriter,
    NullWriter,
    Progress,
    format_metrics,
    host_rss_mb,
)
from dl.reporting.curves import plot_learning_curves
from dl.train.checkpoint import BEST, LATEST, Checkpoints
from dl.train.compilations import CompilationCounter
from dl.train.experiment import Experiment, build, check_intervals, recorded_config
from dl.train.finetune import initial_weights
from dl.train.orbax_patch import stop_io_metrics_leak
from dl.train.preemption import PreemptionFlag
from dl.train.resume import check_resumable, config_to_dict
from dl.train.sharding import is_lead, sync, to_host
from dl.train.state import TrainState, param_count
from dl.train.step import all_finite, nonfinite_advice
from dl.train.stream_feeder import InputPosition, inputs_for
from dl.train.window import TrainWindow
from dl.train.workdir_lock import hold_workdir


def train(
    config, workdir: str, *, model=None, dataset=None, task=None, callbacks=(), stream=None
) -> dict:
    """Trains the experiment of `config` in `workdir`, resuming if it holds a checkpoint.

    Writes config.json, metrics.jsonl, checkpoints/, best/, summary.json and
    learning_curves.png into workdir (README.md, "Using dl", says what each holds).

    Args:
      config: the experiment config.
      workdir: the run's directory, locked for the run (another train raises WorkdirBusy).
      model: instead of `config.model.name`, a flax Module class (built with
        the config's model fields) or instance.
      dataset: instead of `config.dataset.name`, a `dl.data.Source` (e.g. from
        `dl.data.from_arrays`) or a function taking the dataset config and
        returning one.
      task: instead of `config.task.name`, a `dl.tasks.Task` subclass.
      callbacks: `dl.train.Action`s the loop runs with its own; each may stop
        training, and its `state_dict` is checkpointed.
      stream: where progress goes (stdout by default).
      An object is recorded in config.json by its import path, or by a marker
      saying it must be handed in again to read the workdir.

    Returns:
      The summary: final step, train/validation/test metrics, timings.

    >>> import tempfile
    >>> from dl.config import base_config
    >>> config = base_config()
    >>> config.model.hidden_sizes, config.optimizer.learning_rate = (32,), 0.01
    >>> config.num_train_steps = config.checkpoint_every_steps = 100
    >>> config.log_every_steps = config.eval_every_steps = 50
    >>> summary = train(config, tempfile.mkdtemp(), stream=io.StringIO())
    >>> summary["step"], summary["test"]["accuracy"] > 0.9
    (100, True)
    """
    t_start = time.perf_counter()
    stop_io_metrics_leak()
    with contextlib.ExitStack() as stack:
        # SIGTERM from here on is caught, so that a preemption during start-up
        # still ends with a checkpoint rather than the default abrupt exit.
        flag = stack.enter_context(PreemptionFlag())
        compilations = stack.enter_context(CompilationCounter())
        intervals = check_intervals(config)
        exp = build(config, model=model, dataset=dataset, task=task)
        config = exp.config = recorded_config(config, model=model, dataset=dataset, task=task)
        stack.enter_context(hold_workdir(workdir))  # one writer: a second train is refused
        ckpts = Checkpoints(workdir, keep=int(config.keep_checkpoints))
        stack.callback(ckpts.close)
        actions = make_actions(config, exp, intervals, flag, callbacks)
        config_dict = config_to_dict(config)
        state, resume_step = _restore(exp, ckpts, config_dict, workdir, actions)
        if is_lead():
            _write_json(os.path.join(workdir, "config.json"), config_dict)
        writer = MetricWriter(workdir, resume_step) if is_lead() else NullWriter()
        stack.callback(writer.close)
        feeder, evaluator = inputs_for(exp, intervals, int(to_host(state.step)), actions, stack)
        if config.get("ema", {}).get("select_best", False):
            evaluator = OnMovingAverage(evaluator)
        compile_seconds = feeder.compile(state)
        loop = Loop(config, workdir, exp, ckpts, writer, stream, actions, compilations, config_dict)
        loop.start(state, feeder, evaluator)
        loop.progress.log(
            f"{config.get('name', '') or 'experiment'}: model {config.model.name}, "
            f"{param_count(state.params):,} parameters, dataset {exp.dataset.name} "
            f"{exp.dataset.info['sizes']}, step {loop.step}/{loop.total}, compiled in "
            f"{compile_seconds:.2f}s"
        )
        loop.run()
        summary = loop.finish(compile_seconds, time.perf_counter() - t_start)
        if is_lead():  # under the workdir's lock still
            _write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def make_actions(config, exp: Experiment, intervals: dict, flag, callbacks=()) -> list:
    """The loop's actions for a config, in the order they run after a call.

    Preemption first (a stop must save the step that was reached), then
    logging, evaluation and the actions that listen to it (early stopping,
    the best checkpoint, the target), the user's callbacks, and checkpointing
    last, so that a stop asked for at a step is saved at that step.
    """
    out = [A.Preemption(flag), A.LogMetrics(intervals["log_every_steps"])]
    if isinstance(exp.dataset, StreamDataset):
        out.append(InputPosition())  # where the streamed input is, saved with each checkpoint
    out.append(A.Evaluate(intervals["eval_every_steps"]))
    metric = config.get("best_metric", "") or ""
    early = config.get("early_stopping", {})
    patience = int(early.get("patience", 0) or 0)
    if patience < 0:
        raise ConfigError(f"early_stopping.patience must be >= 0, got {patience}")
    if patience and not metric:
        raise ConfigError(
            "early_stopping.patience needs best_metric (the validation metric to watch)"
        )
    if metric:
        direction = exp.task.direction(metric)
        best = A.KeepBest(metric, direction)
        if patience:
            min_delta = float(early.get("min_delta", 0.0) or 0.0)
            out.append(A.EarlyStopping(metric, direction, patience, min_delta, best))
        out.append(best)
    target = _target(config, exp)
    if target is not None:
        out.append(target)
    names = [a.name for a in out]
    for callback in callbacks:
        if not isinstance(callback, A.Action):
            raise ConfigError(
                f"callback {callback!r} is not a dl.train.actions.Action; subclass it and "
                "override the hooks it needs"
            )
        if callback.name in names:
            raise ConfigError(f"two actions are named {callback.name!r}; give each its own name")
        names.append(callback.name)
        out.append(callback)
    out.append(A.Checkpointing(intervals["checkpoint_every_steps"]))
    return out


class Loop:
    """A training run in progress: what the actions see and use.

    Attributes:
      config, workdir, exp, ckpts, writer, progress: the run's parts.
      state: the current TrainState (on the device).
      step: the step the state is at (host-side; no device read).
      total: the last step (num_train_steps).
      stop_reason: None while training goes on; set by `stop`.
    """

    def __init__(
        self, config, workdir, exp, ckpts, writer, stream, actions, compilations, config_dict
    ):
        self.config, self.workdir, self.exp = config, workdir, exp
        self.ckpts, self.writer, self.actions = ckpts, writer, actions
        self.compilations, self.config_dict = compilations, config_dict
        self.stream = stream if is_lead() else io.StringIO()
        self.total = int(config.num_train_steps)
        self.steps_per_call = int(config.get("steps_per_call", 1))
        self.policy = config.get("nonfinite", {}).get("policy", "stop")
        self.stop_reason: str | None = None
        self.window, self.pending, self._synced = TrainWindow(), [], True
        self._preprocessing_saved = False
        self.last_train: dict | None = None  # the task metrics of the last logged window

    @property
    def step(self) -> int:
        return self.feeder.step

    def start(self, state, feeder, evaluator) -> None:
        """Sets the state to train from and tells the actions training starts."""
        self.state, self.feeder, self.evaluator = state, feeder, evaluator
        self.progress = Progress(self.total, self.step, stream=self.stream)
        self._window_start, self._window_time = self.step, time.perf_counter()
        for action in self.actions:
            action.on_start(self)

    def run(self) -> None:
        """Calls the training step until the last step or a stop; after each call, the actions."""
        try:
            while self.step < self.total and self.stop_reason is None:
                self.state, metrics = self.feeder(self.state)
                self.ckpts.check()  # a checkpoint that failed in the background stops the run
                self.pending.append(metrics)
                self._synced = False
                self.progress.update(self.step)
                for action in self.actions:
                    if action.due(self):
                        self.sync()
                        action.run(self)
        finally:
            self.progress.close()
        self.ckpts.wait()

    def finish(self, compile_seconds: float, seconds: float) -> dict:
        """The summary of the run (final metrics of every split), and the learning curves."""
        self.emit("on_finish")
        summary = {
            "name": self.config.get("name", ""),
            "step": self.step,
            "workdir": os.path.abspath(self.workdir),
            "parameters": param_count(self.state.params),
            "compile_seconds": round(compile_seconds, 3),
            "seconds": round(seconds, 3),
        }
        # A streamed training split may be far larger than memory: the summary gives the
        # last logged window's training metrics rather than a whole pass over it.
        streamed = isinstance(self.exp.dataset, StreamDataset)
        for split in ("train", "validation", "test"):
            if split == "train" and streamed:
                summary["train"] = dict(
                    self.last_train or {}, evaluated="the last logged window, in training mode"
                )
                continue
            summary[split] = self.evaluator(self.state, split)
        if self.stop_reason is not None:
            summary["stopped"] = {"step": self.step, "reason": self.stop_reason}
        self.emit("on_end", summary)
        if is_lead():
            png = plot_learning_curves(
                os.path.join(self.workdir, "metrics.jsonl"),
                os.path.join(self.workdir, "learning_curves.png"),
                best_metric=self.config.get("best_metric", "") or "",
            )
            if png:
                summary["learning_curves"] = png
                self.writer.image(self.step, "learning_curves", png)
        return summary

    def stop(self, reason: str) -> None:
        """Asks the loop to end training after the actions of this step."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def emit(self, event: str, *args) -> None:
        """Calls hook `event` of every action, in order."""
        for action in self.actions:
            getattr(action, event)(self, *args)

    def sync(self) -> None:
        """Reads the metrics of the calls since the last sync; stops on non-finite values."""
        if self._synced:
            return
        for metrics in to_host(self.pending):
            bad = self.window.add(metrics)
            if bad is not None and self.policy == "stop":
                self._stop_nonfinite(bad)
        self.pending.clear()
        if int(to_host(self.state.halted)):
            nan = float("nan")
            bad = {"step": int(to_host(self.state.step)), "loss": nan, "grad_norm": nan}
            self._stop_nonfinite(bad, "too many consecutive non-finite steps were skipped")
        self._synced = True

    def evaluate(self, split: str) -> dict:
        """The task's metrics of the current state on `split`."""
        return self.evaluator(self.state, split)

    def log_window(self) -> dict | None:
        """Writes the training metrics since the last log (None if no step was taken)."""
        if not (self.window.steps + self.window.skipped):
            return None
        now = time.perf_counter()
        result = self.window.result()
        self.last_train = {
            k: v for k, v in result.items() if k not in ("learning_rate", "grad_norm")
        }
        elapsed = max(now - self._window_time, 1e-9)
        result["steps_per_second"] = (self.step - self._window_start) / elapsed
        result["param_norm"] = float(to_host(_global_norm(self.state.params)))
        result["epoch"] = self.feeder.epoch()
        result["host_rss_mb"] = round(host_rss_mb(), 2)
        result["compilations"] = self.compilations.count
        take_waited = getattr(self.feeder, "take_waited", None)
        if take_waited is not None:  # the streamed input: the share of time spent waiting for it
            result["input_wait_fraction"] = round(take_waited() / elapsed, 4)
        self.writer.write(self.step, "train", result)
        if self.progress.tty:  # the bar shows the loss; a log file gets every train metric
            self.progress.update(self.step, {"loss": result.get("loss", float("nan"))})
        else:
            shown = {k: v for k, v in result.items() if k != "steps_per_second"}
            self.progress.update(self.step, "train " + format_metrics(shown))
        self.window.reset()
        self._window_start, self._window_time = self.step, now
        return result

    def meta(self) -> dict:
        """The JSON metadata of a checkpoint: the config and the actions' states."""
        states = {a.name: a.state_dict() for a in self.actions}
        return {
            "config": self.config_dict,
            "loop": {k: v for k, v in states.items() if v},
            "step": self.step,
        }

    def save(self, kind: str = LATEST) -> None:
        """Starts writing a checkpoint of the current state (refused if it is not finite)."""
        state = self.state
        if not bool(to_host(all_finite((state.params, state.opt_state, state.model_state)))):
            raise NonFiniteError(
                f"step {self.step}: the state holds non-finite values; not saving it"
            )
        self._save_preprocessing()
        self.ckpts.save(self.step, state, self.meta(), kind)
        self.emit("on_checkpoint", kind)

    def _save_preprocessing(self) -> None:
        """Writes WORKDIR/preprocessing.npz once, before the run's first checkpoint (lead only).

        `dl.load` prepares new inputs with it, without loading the dataset.
        """
        path = os.path.join(self.workdir, PREPROCESSING_FILE)
        if is_lead() and not self._preprocessing_saved and not os.path.exists(path):
            self.exp.dataset.preprocessing.save(path)
        self._preprocessing_saved = True

    def _stop_nonfinite(self, bad: dict, reason: str = "") -> None:
        self.writer.write(
            bad["step"], "nonfinite", {"loss": bad["loss"], "grad_norm": bad["grad_norm"]}
        )
        self.writer.close()
        self.ckpts.wait()
        raise NonFiniteError(
            f"non-finite values at training step {bad['step']} (loss={bad['loss']}, "
            f"grad_norm={bad['grad_norm']}){': ' + reason if reason else ''}; training "
            f"stopped. Checkpoints kept in {self.workdir}: steps {self.ckpts.steps()}. "
            + nonfinite_advice(self.config)
        )


class OnMovingAverage:
    """An evaluator that scores the state's moving average of the parameters (ema.select_best)."""

    def __init__(self, evaluate):
        self.evaluate = evaluate

    def __call__(self, state, split: str) -> dict:
        return self.evaluate(state.with_ema_weights(), split)


def _restore(exp: Experiment, ckpts: Checkpoints, config_dict: dict, workdir: str, actions):
    """The state to train from: the latest readable checkpoint, else a fresh one.

    Returns:
      (state, step restored or None); the actions' states are loaded.
    """
    check_resumable(ckpts, config_dict, workdir)
    restored = ckpts.restore(exp.abstract_state()) if ckpts.steps() else None
    source = exp.config.get("init_from", {}).get("workdir", "")
    if restored is None:
        state = exp.init_state()
        if source:
            params, model_state = initial_weights(exp.config.init_from, state)
            state = TrainState.create(
                params,
                model_state,
                exp.steps.tx,
                state.rng,
                exp.steps.ema,
                loss_scale=exp.steps.loss_scale(),
            )
        return exp.place(state), None
    if source:
        logging.info("resuming from %s's own checkpoints: init_from is not used", workdir)
    state, meta, step = restored
    if is_lead():
        ckpts.quarantine(step)
        ckpts.discard_after(step, BEST)
    sync("dl-resume")
    states = _action_states(meta.get("loop", {}))
    for action in actions:
        action.load_state_dict(states.get(action.name, {}))
    return state, step


def _action_states(loop_meta: dict) -> dict:
    """The actions' states in a checkpoint's metadata, also from checkpoints written before
    each action kept its own (one flat dict of the best value and the patience counter)."""
    if "best_value" not in loop_meta and "bad_evals" not in loop_meta:
        return loop_meta
    return {
        "best": {"value": loop_meta.get("best_value"), "step": loop_meta.get("best_step")},
        "early_stopping": {
            "reference": loop_meta.get("best_value"),
            "bad_evals": loop_meta.get("bad_evals", 0),
            "stopped_step": loop_meta.get("early_stopped_step"),
        },
    }


def _target(config, exp: Experiment) -> A.StopAtTarget | None:
    target = config.get("target_metric", "") or ""
    if not target:
        return None
    split, _, metric = target.rpartition("/")
    split = split or "train"
    if split not in ("train", "validation", "test"):
        raise ConfigError(
            f"target_metric {target!r}: split must be one of ('train', 'validation', 'test')"
        )
    direction = exp.task.direction(metric)
    value = config.get("target_value", None)
    if value is None:
        raise ConfigError("target_metric is set but target_value is not")
    return A.StopAtTarget(split, metric, float(value), direction)


@jax.jit
def _global_norm(tree):
    return optax.tree.norm(tree)


def _write_json(path: str, obj) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)


__all__ = ["Loop", "make_actions", "train"]
