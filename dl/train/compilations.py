"""Counting XLA compilations, so that a recompilation shows in a run's metrics."""

from __future__ import annotations

import threading

import jax


class CompilationCounter:
    """Counts XLA compilations in this process while it is open (a context manager).

    Every compilation JAX asks of the backend counts, including one answered
    from the persistent compilation cache: a recompilation is a cost either
    way (tracing, lowering), and a count that still grows after the first
    evaluation and checkpoint means something recompiles every time.

    Example:
      >>> import jax, numpy as np
      >>> triple = jax.jit(lambda x: x * 3)
      >>> with CompilationCounter() as compilations:
      ...     _ = triple(np.ones(5))
      ...     _ = triple(np.ones(5))  # the same shapes: no new compilation
      ...     _ = triple(np.ones(7))
      >>> compilations.count
      2
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
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)
