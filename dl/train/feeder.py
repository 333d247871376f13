"""The batch feeder: the compiled training call, fed K steps at a time from the device.

The training split lives on the device; each step's batch is gathered there
by indices the device computes from a window of epoch permutations
(`dl.data.TrainOrder.window`). The host uploads a new window when the steps
leave the current one, about once per epoch, and otherwise only calls. The
training loop, the learning-rate finder and the benchmark all train through
a `Feeder`.
"""

from __future__ import annotations

import collections
import time

import jax
import numpy as np

from dl.data import TrainOrder
from dl.train.sharding import put_replicated

# Over several CPU devices, XLA:CPU deadlocks once too many calls that hold
# collectives are queued (BUILD_NOTES.md, "At most 16 calls in flight"); the host lets at
# most this many train calls run ahead of it.
CPU_MAX_CALLS_IN_FLIGHT = 16


class Feeder:
    """Calls the experiment's compiled training step, `steps_per_call` steps per call.

    Args:
      experiment: a built `dl.train.Experiment`.
      train_arrays: its training split on the device (`device_arrays(...)["train"]`).
      batch_size: examples per step.
      steps_per_call: steps fused into one call (`lax.scan`).
      seed: seeds the epoch permutations.
      first_step: the step of the state the first call gets.

    Example (the loop's use; `state` at step `first_step`)::

        feeder = Feeder(exp, arrays["train"], batch_size=32, steps_per_call=1, seed=0)
        feeder.compile(state)
        state, metrics = feeder(state)  # feeder.step is now first_step + 1
    """

    def __init__(
        self,
        experiment,
        train_arrays: dict,
        *,
        batch_size: int,
        steps_per_call: int,
        seed: int,
        first_step: int = 0,
    ):
        self.exp, self.arrays = experiment, train_arrays
        self.batch_size, self.steps_per_call = int(batch_size), int(steps_per_call)
        self.order = TrainOrder(experiment.dataset.size("train"), self.batch_size, int(seed))
        self.step = int(first_step)
        self._first_epoch: int | None = None
        self._window = None  # (perms, first epoch) on the device
        self._call = None
        self._in_flight: collections.deque = collections.deque()
        mesh = experiment.mesh
        self._throttle = mesh is not None and mesh.size > 1 and jax.default_backend() == "cpu"

    def args(self, state) -> tuple:
        """The arguments of the call at `self.step`, a new window uploaded if needed."""
        moved = self.order.window(self.step, self.steps_per_call, self._first_epoch)
        if moved is not None:
            self._first_epoch = moved[0]
            self._window = put_replicated((moved[1], np.int32(moved[0])), self.exp.mesh)
        return (state, self.arrays, *self._window)

    def trace(self, *args):
        """The training call traced for `args` (`jax.stages.Traced`)."""
        return self.exp.steps.train_many.trace(
            *args, steps=self.steps_per_call, batch_size=self.batch_size
        )

    def compile(self, state) -> float:
        """Compiles the call for `state` ahead of time; returns the seconds it took."""
        t0 = time.perf_counter()
        self._call = self.trace(*self.args(state)).lower().compile()
        return time.perf_counter() - t0

    def __call__(self, state):
        """Runs `steps_per_call` steps from `self.step` (donating `state`).

        Returns:
          (state, metrics) as device arrays; metrics are stacked over the
          steps when steps_per_call > 1.
        """
        if self._call is None:
            self.compile(state)
        state, metrics = self._call(*self.args(state))
        self.step += self.steps_per_call
        if self._throttle:
            self._in_flight.append(metrics)
            if len(self._in_flight) > CPU_MAX_CALLS_IN_FLIGHT:
                jax.block_until_ready(self._in_flight.popleft())
        return state, metrics

    def epoch(self, step: int | None = None) -> float:
        """Epochs of the training split read by `step` (default: the current step)."""
        return self.order.epoch(self.step if step is None else step)
