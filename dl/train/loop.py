"""The one training loop, for every model family.

`build(config)` turns a config into an `Experiment` (dataset, task, model,
optimizer, compiled steps) and checks shapes before anything compiles.
`train(config, workdir)` trains it, resuming from the workdir's latest
checkpoint, and returns the run's summary.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import threading
import time

import jax
import numpy as np
import optax

from dl.config import base_config
from dl.data import SPLITS, Dataset, TrainOrder, eval_order, load_dataset
from dl.errors import ConfigError
from dl.models import build_model
from dl.reporting import (
    CompilationCounter,
    MetricWriter,
    NullWriter,
    Progress,
    host_rss_mb,
)
from dl.tasks import Task, make_task
from dl.train.checkpoint import BEST, Checkpoints
from dl.train.optim import make_optimizer
from dl.train.sharding import (
    check_divisible,
    data_mesh,
    is_lead,
    put_replicated,
    replicated,
    sync,
    to_host,
)
from dl.train.step import StepConfig, Steps, TrainState, all_finite, finalize

# Fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {
        "num_train_steps",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "eval_batch_size",
    }
)


# XLA:CPU hangs, every device waiting at an all-reduce rendezvous, once more
# than about 32 calls that hold collectives are queued (measured with jax
# 0.10.2 on 2 CPU devices: 34 calls in flight ran, 40 hung, in one process or
# two). Over several CPU devices the host lets at most this many train calls
# run ahead of it.
CPU_MAX_CALLS_IN_FLIGHT = 16


class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient and stopped."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint of the current step was written before stopping."""

    def __init__(self, step: int, workdir: str):
        super().__init__(
            f"preempted (SIGTERM): checkpoint written at step {step} in {workdir}; "
            "run the same command again to resume"
        )
        self.step = step


class _PreemptionFlag:
    """Turns SIGTERM into a flag the loop checks between calls (main thread only).

    With several processes, JAX's preemption sync point decides instead, so
    that every process stops, and saves, at the same step: JAX catches
    SIGTERM in each process, and the processes agree, through the
    coordination service, on a step one past the furthest any of them has
    reported. That step is reached only if every step number is reported in
    turn, so a call of k steps reports all k (with steps_per_call > 1,
    reporting only the call's last step would never meet it and SIGTERM
    would go unheeded).
    """

    def __init__(self):
        self._raised = False
        self._previous = None

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def reached(self, step: int, steps_per_call: int = 1) -> bool:
        """Whether to stop after the call that ended at `step`."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            reached = [
                bool(multihost_utils.reached_preemption_sync_point(s))
                for s in range(step - steps_per_call + 1, step + 1)
            ]
            return any(reached)
        return self._raised

    def _handle(self, signum, frame):
        self._raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class Experiment:
    """Everything a config builds, before any state exists."""

    config: object
    dataset: Dataset
    task: Task
    model: object
    steps: Steps
    mesh: object = None

    def example_batch(self, size: int = 2) -> dict:
        return {k: v[:size] for k, v in self.dataset.splits["train"].items()}

    def init_state(self, from_data: bool = True) -> TrainState:
        """A fresh state; `from_data` passes the training split to the model's init_from_data."""
        return self.steps.init_state(
            jax.random.PRNGKey(int(self.config.seed)),
            self.example_batch(int(self.config.batch_size)),
            self.dataset.splits["train"] if from_data else None,
        )

    def placed_init_state(self) -> TrainState:
        """A fresh state, replicated over the experiment's mesh."""
        return put_replicated(self.init_state(), self.mesh)

    def abstract_state(self) -> TrainState:
        """The state's shapes, dtypes and placement, without computing it."""
        sharding = replicated(self.mesh)
        return jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
            jax.eval_shape(lambda: self.init_state(from_data=False)),
        )


def check_shapes(model, task: Task, dataset: Dataset) -> None:
    """Checks, by abstract evaluation only, that the data fits the model and the task.

    Raises:
      ConfigError: naming the expected and the actual shapes.
    """
    example = {
        k: jax.ShapeDtypeStruct((2,) + v.shape[1:], v.dtype)
        for k, v in dataset.splits["train"].items()
    }
    shapes = {k: tuple(v.shape[1:]) for k, v in example.items()}
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}
    try:
        outputs, _ = jax.eval_shape(
            lambda b: model.init_with_output(rngs, *task.inputs(b), train=False), example
        )
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 -- any failure to build the model is a config problem
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = f"{type(e).__name__}: {first}"
        raise ConfigError(
            f"dataset {dataset.name!r} gives per-example shapes {shapes}, which "
            f"model {type(model).__name__} cannot take: {first}"
        ) from e
    problem = task.check_outputs(tuple(outputs.shape[1:]))
    if problem:
        raise ConfigError(problem)


def build(config) -> Experiment:
    """Builds the experiment a config describes.

    Args:
      config: an experiment ConfigDict (see dl/config.py for the fields).

    Returns:
      The Experiment.
    """
    dataset = load_dataset(config.dataset)
    task = make_task(config.task, dataset)
    model = build_model(config.model, task.num_outputs(), dtype=config.get("dtype"))
    problem = task.check_model(model)  # e.g. vocabulary sizes against the data
    if problem:
        raise ConfigError(problem)
    check_shapes(model, task, dataset)
    tx, schedule = make_optimizer(config)
    nonfinite = config.get("nonfinite", {})
    augment = config.get("augment", {})
    step_cfg = StepConfig(
        nonfinite_policy=nonfinite.get("policy", "stop"),
        max_consecutive_skips=int(nonfinite.get("max_consecutive_skips", 10)),
        crop_padding=int(augment.get("crop_padding", 0)),
        horizontal_flip=bool(augment.get("horizontal_flip", False)),
    )
    mesh = data_mesh()
    check_divisible(int(config.batch_size), mesh)
    return Experiment(
        config, dataset, task, model, Steps(model, task, tx, schedule, step_cfg, mesh), mesh
    )


def config_differences(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Fields whose values differ between two config dicts, as 'field: a -> b'."""
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif _normalise(a) != _normalise(b):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _normalise(value):
    return json.loads(json.dumps(value))


def config_to_dict(config) -> dict:
    return json.loads(config.to_json())


class Evaluator:
    """Evaluates a state on the splits of a dataset, one compiled call per split."""

    def __init__(self, experiment: Experiment, arrays: dict, batch_size: int):
        self.exp, self.arrays = experiment, arrays
        self.orders = {}
        for split in SPLITS:
            n = experiment.dataset.size(split)
            if n:
                # A static batch that every device gets an equal share of.
                size = min(batch_size, n)
                size = -(-size // experiment.mesh.size) * experiment.mesh.size
                idx, mask = eval_order(n, size)
                self.orders[split] = put_replicated((idx, mask), experiment.mesh)
        self._compiled = {}

    def __call__(self, state, split: str) -> dict[str, float]:
        if split not in self.orders:
            return {}
        idx, mask = self.orders[split]
        if split not in self._compiled:
            self._compiled[split] = self.exp.steps.evaluate_all.lower(
                state, self.arrays[split], idx, mask
            ).compile()
        sums = self._compiled[split](state, self.arrays[split], idx, mask)
        metrics = finalize(to_host(sums))
        if self.exp.task.has_host_metrics:
            _, predictions = self.predict(state, split)
            metrics.update(self.exp.task.host_metrics(predictions, self.exp.dataset.splits[split]))
        return metrics

    def predict(self, state, split: str):
        """Raw outputs and task predictions for every example of a split.

        Returns:
          (outputs, predictions) as numpy arrays [examples, ...], in split order.
        """
        idx, mask = self.orders[split]
        key = ("predict", split)
        if key not in self._compiled:
            self._compiled[key] = self.exp.steps.predict_all.lower(
                state, self.arrays[split], idx
            ).compile()
        out = to_host(self._compiled[key](state, self.arrays[split], idx))
        keep = np.asarray(mask).reshape(-1) > 0
        return jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1, *a.shape[2:])[keep], out)


def device_arrays(dataset: Dataset, mesh=None) -> dict:
    """Every split's arrays, put on every device of the mesh once."""
    return put_replicated(dataset.splits, mesh if mesh is not None else data_mesh())


def _is_better(value: float, best: float | None, direction: str) -> bool:
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if direction == "max" else value < best


def _parse_target(config, task: Task):
    target = config.get("target_metric", "") or ""
    if not target:
        return None
    split, _, metric = target.rpartition("/")
    split = split or "train"
    if split not in SPLITS:
        raise ConfigError(f"target_metric {target!r}: split must be one of {SPLITS}")
    direction = task.direction(metric)
    value = config.get("target_value", None)
    if value is None:
        raise ConfigError("target_metric is set but target_value is not")
    return split, metric, float(value), direction


def _check_intervals(config) -> dict[str, int]:
    k = int(config.get("steps_per_call", 1))
    if k < 1:
        raise ConfigError(f"steps_per_call must be >= 1, got {k}")
    out = {"steps_per_call": k}
    for name in (
        "num_train_steps",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "batch_size",
    ):
        value = int(config[name])
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
        if name != "batch_size" and value % k:
            raise ConfigError(f"{name}={value} must be a multiple of steps_per_call={k}")
        out[name] = value
    return out


class _Window:
    """Training metrics accumulated on the host between two log events."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.steps, self.loss, self.grad_norm, self.lr = 0, 0.0, 0.0, float("nan")
        self.sums: dict[str, list[float]] = {}
        self.skipped = 0

    def add(self, metrics):
        """Adds host metrics of K steps; returns the first non-finite step, if any."""
        metrics = jax.tree_util.tree_map(np.atleast_1d, metrics)
        finite = metrics["finite"]
        bad = None
        for i in range(len(finite)):
            if not finite[i]:
                self.skipped += 1
                if bad is None:
                    bad = {
                        "step": int(metrics["step"][i]),
                        "loss": float(metrics["loss"][i]),
                        "grad_norm": float(metrics["grad_norm"][i]),
                    }
                continue
            self.steps += 1
            self.loss += float(metrics["loss"][i])
            self.grad_norm += float(metrics["grad_norm"][i])
            for k, (n, d) in metrics["sums"].items():
                acc = self.sums.setdefault(k, [0.0, 0.0])
                acc[0] += float(n[i])
                acc[1] += float(d[i])
        self.lr = float(metrics["learning_rate"][-1])
        return bad

    def result(self) -> dict:
        out = {k: n / d if d else float("nan") for k, (n, d) in self.sums.items()}
        if self.steps:
            out["loss"] = self.loss / self.steps
            out["grad_norm"] = self.grad_norm / self.steps
        out["learning_rate"] = self.lr
        if self.skipped:
            out["skipped_steps"] = self.skipped
        return out


def train(config, workdir: str, *, stream=None) -> dict:
    """Trains the experiment of `config` in `workdir`, resuming if it holds a checkpoint.

    Writes config.json, metrics.jsonl, checkpoints/ and best/ into workdir.
    Besides the training metrics, each train event of metrics.jsonl holds
    `host_rss_mb` (the process's resident memory then) and `compilations`
    (XLA compilations in this process since `train` began), so that growing
    host memory or a recompilation shows in the run's own record.

    Args:
      config: the experiment config.
      workdir: the run's directory.
      stream: where progress goes (stdout by default).

    Returns:
      The summary: final step, train/validation/test metrics, timings.
    """
    t_start = time.perf_counter()
    # SIGTERM from here on is caught, so that a preemption during start-up
    # still ends with a checkpoint rather than the default abrupt exit.
    preemption = _PreemptionFlag().__enter__()
    try:
        with CompilationCounter() as compilations:
            return _train(config, workdir, stream, preemption, compilations, t_start)
    finally:
        preemption.__exit__()


def _train(
    config, workdir: str, stream, preemption, compilations: CompilationCounter, t_start: float
) -> dict:
    intervals = _check_intervals(config)
    exp = build(config)
    _prepare_workdir(workdir)
    config_dict = config_to_dict(config)
    config_path = os.path.join(workdir, "config.json")
    ckpts = Checkpoints(workdir, keep=int(config.keep_checkpoints))
    task = exp.task
    best_metric = config.get("best_metric", "") or ""
    best_direction = task.direction(best_metric) if best_metric else None
    target = _parse_target(config, task)

    _check_resumable(ckpts, config_dict, workdir)
    restored = ckpts.restore(exp.abstract_state()) if ckpts.steps() else None
    if restored is None:
        state = exp.placed_init_state()
        loop_meta = {"best_value": None, "best_step": None}
        resume_step = None
    else:
        state, meta, resume_step = restored
        if is_lead():
            ckpts.quarantine(resume_step)
            ckpts.discard_after(resume_step, BEST)
        sync("dl-resume")
        loop_meta = meta.get("loop", {"best_value": None, "best_step": None})
    if is_lead():
        _write_json(config_path, config_dict)

    writer = MetricWriter(workdir, resume_step) if is_lead() else NullWriter()
    arrays = device_arrays(exp.dataset, exp.mesh)
    evaluator = Evaluator(exp, arrays, int(config.get("eval_batch_size", 256)))
    order = TrainOrder(exp.dataset.size("train"), intervals["batch_size"], int(config.seed))
    k, total = intervals["steps_per_call"], intervals["num_train_steps"]
    step = int(to_host(state.step))
    if step % k:
        raise ConfigError(f"checkpoint step {step} is not a multiple of steps_per_call={k}")

    first_epoch_host, perms = order.window(step, k)
    perms, first_epoch = put_replicated((perms, np.int32(first_epoch_host)), exp.mesh)
    t0 = time.perf_counter()
    train_call = exp.steps.train_many.lower(
        state, arrays["train"], perms, first_epoch, steps=k, batch_size=intervals["batch_size"]
    ).compile()
    compile_seconds = time.perf_counter() - t0
    progress = Progress(total, step, stream=stream if is_lead() else io.StringIO())
    progress.log(
        f"{config.get('name', 'experiment')}: model {config.model.name}, "
        f"{_param_count(state.params):,} parameters, dataset {exp.dataset.name} "
        f"{exp.dataset.info['sizes']}, step {step}/{total}, compiled in "
        f"{compile_seconds:.2f}s"
    )

    window, pending = _Window(), []
    multi_device_cpu = exp.mesh.size > 1 and jax.default_backend() == "cpu"
    t_window, window_start = time.perf_counter(), step
    converged_step = None
    last_eval: dict[str, dict] = {}

    def drain():
        for m in to_host(pending):
            bad = window.add(m)
            if bad is not None and (config.get("nonfinite", {}).get("policy", "stop") == "stop"):
                _stop_nonfinite(bad, writer, workdir, ckpts)
        pending.clear()
        if int(to_host(state.halted)):
            _stop_nonfinite(
                {"step": int(to_host(state.step)), "loss": float("nan"), "grad_norm": float("nan")},
                writer,
                workdir,
                ckpts,
                reason="too many consecutive non-finite steps were skipped",
            )

    def meta():
        return {"config": config_dict, "loop": loop_meta, "step": step}

    early = config.get("early_stopping", {})
    patience = int(early.get("patience", 0) or 0)
    min_delta = float(early.get("min_delta", 0.0) or 0.0)
    if patience and not best_metric:
        raise ConfigError(
            "early_stopping.patience needs best_metric (the validation metric to watch)"
        )
    loop_meta.setdefault("bad_evals", 0)
    stopped_early = loop_meta.get("early_stopped_step")
    try:
        while step < total and stopped_early is None:
            moved = order.window(step, k, int(first_epoch_host))
            if moved is not None:
                first_epoch_host = moved[0]
                perms, first_epoch = put_replicated((moved[1], np.int32(moved[0])), exp.mesh)
            state, metrics = train_call(state, arrays["train"], perms, first_epoch)
            pending.append(metrics)
            if multi_device_cpu and len(pending) > CPU_MAX_CALLS_IN_FLIGHT:
                jax.block_until_ready(pending[-CPU_MAX_CALLS_IN_FLIGHT - 1])
            step += k
            progress.update(step)
            if preemption.reached(step, k):
                drain()
                _save(ckpts, step, state, meta())
                ckpts.wait()
                writer.close()
                raise Preempted(step, workdir)
            log_now = step % intervals["log_every_steps"] == 0 or step == total
            eval_now = step % intervals["eval_every_steps"] == 0 or step == total
            ckpt_now = step % intervals["checkpoint_every_steps"] == 0 or step == total
            if not (log_now or eval_now or ckpt_now):
                continue
            drain()
            if log_now and window.steps + window.skipped:
                now = time.perf_counter()
                result = window.result()
                result["steps_per_second"] = (step - window_start) / max(now - t_window, 1e-9)
                result["param_norm"] = float(to_host(_global_norm(state.params)))
                result["epoch"] = order.epoch(step)
                rss = host_rss_mb()
                if rss is not None:
                    result["host_rss_mb"] = round(rss, 2)
                result["compilations"] = compilations.count
                writer.write(step, "train", result)
                progress.update(step, {"loss": result.get("loss", float("nan"))})
                if not progress.tty:
                    progress.log(f"step {step}/{total} train " + _fmt(result))
                window.reset()
                t_window, window_start = now, step
            if eval_now:
                val = evaluator(state, "validation")
                last_eval["validation"] = val
                writer.write(step, "validation", val)
                progress.log(f"step {step}/{total} validation " + _fmt(val))
                if best_metric:
                    if best_metric not in val:
                        raise ConfigError(
                            f"best_metric {best_metric!r} is not a metric of task "
                            f"{task.name!r}: {', '.join(sorted(val))}"
                        )
                    value, best = val[best_metric], loop_meta["best_value"]
                    margin = min_delta if best_direction == "max" else -min_delta
                    if best is None or _is_better(value, best + margin, best_direction):
                        loop_meta["bad_evals"] = 0
                    else:
                        loop_meta["bad_evals"] += 1
                    if _is_better(value, best, best_direction):
                        loop_meta.update(best_value=value, best_step=step)
                        _save(ckpts, step, state, meta(), BEST)
                    if patience and loop_meta["bad_evals"] >= patience:
                        stopped_early = loop_meta["early_stopped_step"] = step
                        ckpt_now = True
                if target is not None:
                    split, metric, value, direction = target
                    got = val if split == "validation" else evaluator(state, split)
                    reached = got[metric] >= value if direction == "max" else got[metric] <= value
                    if reached:
                        converged_step = step
                        ckpt_now = True
            if ckpt_now:
                _save(ckpts, step, state, meta())
            if converged_step is not None or stopped_early is not None:
                break
    finally:
        progress.close()
    ckpts.wait()
    if stopped_early is not None:
        # Early stopping ends on the best state, not the last one.
        state = ckpts.restore(exp.abstract_state(), "best")[0]
        progress.log(
            f"early stopping at step {stopped_early}: {best_metric} did not improve "
            f"for {patience} evaluations; restored the best step "
            f"{loop_meta['best_step']}"
        )

    summary = {
        "name": config.get("name", ""),
        "step": step,
        "workdir": os.path.abspath(workdir),
        "parameters": _param_count(state.params),
        "compile_seconds": round(compile_seconds, 3),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    for split in ("train", "validation", "test"):
        summary[split] = evaluator(state, split)
    if loop_meta.get("best_step") is not None:
        summary["best"] = {"step": loop_meta["best_step"], best_metric: loop_meta["best_value"]}
    if stopped_early is not None:
        summary["early_stopping"] = {
            "stopped_step": stopped_early,
            "restored_best_step": loop_meta["best_step"],
        }
    if target is not None:
        split, metric, value, _ = target
        summary["converged"] = converged_step is not None
        summary["target"] = f"{split}/{metric} {'>=' if target[3] == 'max' else '<='} {value}"
        if converged_step is not None:
            summary["converged_step"] = converged_step
        else:
            summary["message"] = (
                f"did not converge: {split}/{metric} = "
                f"{summary[split].get(metric, float('nan')):.4g} after "
                f"{step} steps, target {value}"
            )
    if is_lead():
        from dl.reporting.curves import plot_learning_curves

        png = plot_learning_curves(
            os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "learning_curves.png")
        )
        if png:
            summary["learning_curves"] = png
            writer.image(step, "learning_curves", png)
    writer.close()
    ckpts.close()
    if is_lead():
        _write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _check_resumable(ckpts: Checkpoints, config_dict: dict, workdir: str) -> None:
    """Refuses to resume a workdir whose checkpoints were written with another config."""
    # A shared field added to dl after a checkpoint was written (e.g. dtype) had
    # its default's behaviour then.
    defaults = config_to_dict(base_config())
    for step in reversed(ckpts.steps()):
        try:
            stored = ckpts.read_meta(step).get("config", {})
        except Exception:  # noqa: BLE001 -- an unreadable step is reported by restore
            continue
        stored = {**{k: v for k, v in defaults.items() if k not in stored}, **stored}
        diffs = [
            d
            for d in config_differences(stored, config_dict)
            if d.split(":")[0] not in RESUMABLE_CHANGES
        ]
        if diffs:
            raise ConfigError(
                f"the config differs from the one checkpoint step {step} in {workdir} was "
                "written with:\n  " + "\n  ".join(diffs) + "\nuse a new --workdir to start "
                "afresh, or resume with the stored config (config.json)"
            )
        return


def _fmt(metrics: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )


@jax.jit
def _global_norm(tree):
    return optax.tree.norm(tree)


def _param_count(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def _save(ckpts: Checkpoints, step: int, state, meta: dict, kind: str = "checkpoints") -> None:
    if not bool(to_host(all_finite((state.params, state.opt_state, state.model_state)))):
        raise NonFiniteError(f"step {step}: the state holds non-finite values; not saving it")
    ckpts.save(step, state, meta, kind)


def _stop_nonfinite(bad: dict, writer, workdir, ckpts, reason: str = "") -> None:
    writer.write(bad["step"], "nonfinite", {"loss": bad["loss"], "grad_norm": bad["grad_norm"]})
    writer.close()
    ckpts.wait()
    saved = ckpts.steps()
    raise NonFiniteError(
        f"non-finite values at training step {bad['step']} (loss={bad['loss']}, "
        f"grad_norm={bad['grad_norm']}){': ' + reason if reason else ''}; training stopped. "
        f"Checkpoints kept in {workdir}: steps {saved}. Lower optimizer.learning_rate, set "
        "grad_clip_norm, or set nonfinite.policy='skip'."
    )


def _prepare_workdir(workdir: str) -> None:
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir!r} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --workdir {workdir!r}: {e.strerror}") from e
    if not os.access(workdir, os.W_OK):
        raise ConfigError(f"--workdir {workdir!r} is not writable")


def _write_json(path: str, obj) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)
