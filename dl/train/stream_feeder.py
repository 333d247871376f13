"""Training and evaluation fed by the streaming pipeline (`dataset.pipeline='stream'`).

`StreamFeeder` stands where `Feeder` stands for in-memory data: the same
compiled step (`Steps.train_window`, K fused steps over K batches handed
in), fed by a thread that pulls batches from Grain, stacks K of them and
puts them on the devices, so that the next call's batches are there while
the current call runs. It keeps Grain's iterator state as of the last
batch a call consumed: the `InputPosition` action saves it with every
checkpoint, and a resumed run reads on from exactly there.

`StreamEvaluator` evaluates a split read from disk: every example once, the
last batch padded and masked, one compiled call per batch.
"""

from __future__ import annotations

import queue
import re
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from dl.data.records import DataError
from dl.data.stream import StreamDataset, eval_stream, train_stream
from dl.errors import ConfigError, InputWorkerError
from dl.train.actions import Action
from dl.train.evaluator import Evaluator, device_arrays
from dl.train.feeder import Feeder
from dl.train.sharding import batch_axes, put_batches, to_host
from dl.train.step import finalize

PREFETCH_CALLS = 2  # windows of K batches waiting on the devices


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def data_error(e: BaseException) -> BaseException:
    """An error of the input pipeline as dl reports it (Grain re-raises a worker's as its own)."""
    if isinstance(e, (DataError, ConfigError)):
        return e
    text = str(e)
    died = re.search(r"Worker process was terminated unexpectedly with exit code (-?\d+)", text)
    if died:
        code = int(died.group(1))
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return InputWorkerError(
            f"a worker process of the streamed input died ({how}; out of memory?); the "
            "checkpoints written before are kept: run the same command again to resume"
        )
    lines = [ln for ln in text.splitlines() if "DataError: " in ln]
    if lines:
        return DataError(lines[-1].split("DataError: ", 1)[1].strip())
    return e


class StreamFeeder:
    """Calls the compiled training step on batches streamed from disk, K per call.

    Args:
      experiment: a built Experiment whose dataset is a `StreamDataset`.
      batch_size: examples per step (all processes together).
      steps_per_call: K, steps fused into one call.
      seed: seeds the epochs' permutations.
      first_step: the step of the state the first call gets.
      position: the iterator state saved with that step's checkpoint
        (`InputPosition`), or None for a fresh run.
    """

    def __init__(
        self, experiment, *, batch_size, steps_per_call, seed, first_step=0, position=None
    ):
        self.exp, self.batch_size = experiment, int(batch_size)
        self.steps_per_call, self.step = int(steps_per_call), int(first_step)
        cfg = experiment.config.dataset
        self._ds = train_stream(
            experiment.dataset,
            cfg,
            batch_size=self.batch_size,
            seed=int(seed),
            process=jax.process_index(),
            processes=jax.process_count(),
        )
        if self.step and not position:
            raise ConfigError(
                f"the checkpoint at step {self.step} holds no position of the streamed input "
                "(it was written by a run of another pipeline); train into a new workdir"
            )
        if position and int(position["step"]) != self.step:
            raise ConfigError(
                f"the checkpoint at step {self.step} holds the input position of step "
                f"{position['step']}"
            )
        self._it = iter(self._ds)
        if position:
            self._it.set_state(position["iterator"])
        self.position = {"step": self.step, "iterator": position["iterator"] if position else None}
        self.waited = 0.0  # seconds the loop waited for input, since the last `take_waited`
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_CALLS)
        self._stop = threading.Event()
        self._thread = None
        self._call = None

    # -- the prefetching thread --------------------------------------------------------
    def _fill(self) -> None:
        mesh = self.exp.mesh
        try:
            while not self._stop.is_set():
                batches = [next(self._it) for _ in range(self.steps_per_call)]
                window = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
                item = (put_batches(window, mesh, axis=1), self._it.get_state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 -- handed to the loop, which raises it
            self._queue.put(_Failed(e))

    def _next(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="dl-input", daemon=True)
            self._thread.start()
        t0 = time.perf_counter()
        item = self._queue.get()
        self.waited += time.perf_counter() - t0
        if isinstance(item, _Failed):
            raise data_error(item.error) from item.error
        return item

    def take_waited(self) -> float:
        """Seconds waited for input since the last call of this method."""
        waited, self.waited = self.waited, 0.0
        return waited

    # -- the Feeder interface ------------------------------------------------------------
    def abstract_window(self) -> dict:
        """The shapes of one call's batches, field -> [K, batch, ...] (no data read)."""
        sharding = jax.sharding.NamedSharding(
            self.exp.mesh, jax.sharding.PartitionSpec(None, batch_axes(self.exp.mesh))
        )
        return {
            k: jax.ShapeDtypeStruct(
                (self.steps_per_call, self.batch_size, *v.shape[1:]), v.dtype, sharding=sharding
            )
            for k, v in self.exp.dataset.splits["train"].items()
        }

    def trace(self, state, window):
        return self.exp.steps.train_window.trace(state, window, steps=self.steps_per_call)

    def compile(self, state) -> float:
        t0 = time.perf_counter()
        self._call = self.trace(state, self.abstract_window()).lower().compile()
        return time.perf_counter() - t0

    def __call__(self, state):
        if self._call is None:
            self.compile(state)
        window, iterator_state = self._next()
        state, metrics = self._call(state, window)
        self.step += self.steps_per_call
        self.position = {"step": self.step, "iterator": iterator_state}
        return state, metrics

    def epoch(self, step: int | None = None) -> float:
        step = self.step if step is None else step
        return step * self.batch_size / self.exp.dataset.size("train")

    def close(self) -> None:
        """Stops the thread and Grain's workers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class InputPosition(Action):
    """Saves the streamed input's position with every checkpoint (the state of Grain's iterator)."""

    name = "data"

    def __init__(self):
        self.loaded: dict | None = None
        self.feeder: StreamFeeder | None = None

    def state_dict(self) -> dict:
        return dict(self.feeder.position) if self.feeder is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state or None


class StreamEvaluator:
    """Evaluates a state on splits read from disk; every example once (the last batch masked)."""

    def __init__(self, experiment, batch_size: int):
        self.exp = experiment
        mesh = experiment.mesh.size
        self.batch_size = -(-int(batch_size) // mesh) * mesh
        steps = experiment.steps

        def add(total, state, batch):
            sums = steps.eval_step(state, batch)
            return jax.tree_util.tree_map(jnp.add, total, sums) if total is not None else sums

        self._first = jax.jit(lambda state, batch: add(None, state, batch))
        self._add = jax.jit(add, donate_argnums=0)
        self._predict = None
        self.fields: dict = {}
        if experiment.task.has_host_metrics:
            raise ConfigError(
                f"task {experiment.task.name!r} computes metrics on the host over a whole split, "
                "which the streaming pipeline does not hold; use dataset.pipeline='memory'"
            )

    def batches(self, split: str):
        """The batches of `split` on the devices, each with its mask; every example once."""
        data = self.exp.dataset
        n = data.size(split)
        size = min(self.batch_size, -(-n // self.exp.mesh.size) * self.exp.mesh.size)
        ds, count = eval_stream(
            data,
            self.exp.config.dataset,
            split,
            batch_size=size,
            process=jax.process_index(),
            processes=jax.process_count(),
        )
        it = iter(ds)
        try:
            for _ in range(count):
                try:
                    batch = next(it)
                except Exception as e:  # noqa: BLE001 -- a worker's error, reported as dl's
                    raise data_error(e) from e
                yield put_batches(batch, self.exp.mesh, axis=0)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __call__(self, state, split: str) -> dict[str, float]:
        """The task's metrics of `state` over every example of `split` ({} if it is empty)."""
        if not self.exp.dataset.size(split):
            return {}
        total = None
        for batch in self.batches(split):
            total = self._first(state, batch) if total is None else self._add(total, state, batch)
        return finalize(to_host(total))

    def predict(self, state, split: str):
        """Raw outputs and task predictions for every example of `split`, in split order.

        Returns:
          (outputs, predictions) as numpy arrays [examples, ...]; `self.fields`
          then holds the split's other fields but x (and x of its first example).
        """
        exp = self.exp
        if self._predict is None:

            def predict(state, batch):
                variables = {"params": state.params, **state.model_state}
                out = exp.model.apply(variables, *exp.task.inputs(batch), train=False)
                return out, exp.task.predictions(out, batch)

            self._predict = jax.jit(predict)
        parts, fields = [], []
        for batch in self.batches(split):
            keep = to_host(batch["mask"]) > 0
            out = to_host(self._predict(state, batch))
            parts.append(jax.tree_util.tree_map(lambda a, keep=keep: np.asarray(a)[keep], out))
            host = {k: to_host(v)[keep] for k, v in batch.items() if k not in ("x", "mask")}
            if not fields:
                host["x"] = to_host(batch["x"])[:1]
            fields.append(host)
        self.fields = {k: np.concatenate([f[k] for f in fields if k in f]) for k in fields[0]}
        return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


def evaluator_for(experiment, batch_size: int):
    """The evaluator of an experiment's data: streamed from disk, or on the devices whole."""
    if isinstance(experiment.dataset, StreamDataset):
        return StreamEvaluator(experiment, batch_size)
    return Evaluator(experiment, device_arrays(experiment.dataset, experiment.mesh), batch_size)


def inputs_for(exp, intervals: dict, first_step: int, actions, stack):
    """The feeder of the training call and the evaluator, for in-memory or streamed data."""
    config = exp.config
    common = dict(
        batch_size=intervals["batch_size"],
        steps_per_call=intervals["steps_per_call"],
        seed=int(config.seed),
        first_step=first_step,
    )
    if isinstance(exp.dataset, StreamDataset):
        (position,) = [a for a in actions if isinstance(a, InputPosition)]
        feeder = StreamFeeder(exp, position=position.loaded, **common)
        stack.callback(feeder.close)
        position.feeder = feeder
        return feeder, StreamEvaluator(exp, int(config.eval_batch_size))
    evaluator = evaluator_for(exp, int(config.eval_batch_size))
    return Feeder(exp, evaluator.arrays["train"], **common), evaluator
