"""SIGTERM as a flag the training loop checks between calls."""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils


class PreemptionFlag:
    """Turns SIGTERM into a flag the loop checks between calls (a context manager).

    In one process, the handler is installed on entry (main thread only) and
    the previous one put back on exit. With several processes, JAX's
    preemption sync point decides instead, so that every process stops, and
    saves, at the same step: JAX catches SIGTERM in each process, and the
    processes agree, through the coordination service, on a step one past the
    furthest any of them has reported. That step is reached only if every step
    number is reported in turn, so a call of k steps reports all k.
    """

    def __init__(self):
        self._raised = False
        self._previous = None

    def __enter__(self) -> PreemptionFlag:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def reached(self, step: int, steps_per_call: int = 1) -> bool:
        """Whether to stop after the call that ended at `step`."""
        if jax.process_count() > 1:
            reached = [
                bool(multihost_utils.reached_preemption_sync_point(s))
                for s in range(step - steps_per_call + 1, step + 1)
            ]
            return any(reached)
        return self._raised

    def _handle(self, signum, frame):
        self._raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
