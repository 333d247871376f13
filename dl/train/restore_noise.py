"""One line per unreadable checkpoint step, instead of orbax's and asyncio's tracebacks.

When orbax fails to read a step, the reads tensorstore still has in flight
finish after orbax's event loop is closed: each prints "RuntimeError: Event
loop is closed" through `sys.unraisablehook`, and asyncio logs "Task
exception was never retrieved" with the full tensorstore spec. None of it
says more than the step's own error. `quiet()` drops exactly these (and is
a no-op from `--verbosity=1` up, where they are kept as details);
`summary(e)` is the step's error in one line.
"""

from __future__ import annotations

import logging as std_logging
import re
import sys

from absl import logging

_installed = False


def verbose() -> bool:
    """Whether the user asked for details (absl --verbosity=1 or more)."""
    return logging.get_verbosity() >= logging.DEBUG


def _closed_loop_noise(unraisable) -> bool:
    e = unraisable.exc_value
    return isinstance(e, RuntimeError) and str(e) == "Event loop is closed"


class _DropUnretrieved(std_logging.Filter):
    def filter(self, record) -> bool:
        return verbose() or not str(record.msg).startswith("Task exception was never retrieved")


def quiet() -> None:
    """Installs (once per process) the filters for the noise of a failed restore."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = sys.unraisablehook

    def hook(unraisable):
        if verbose() or not _closed_loop_noise(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook
    std_logging.getLogger("asyncio").addFilter(_DropUnretrieved())


_SPEC = re.compile(r"\s*\[tensorstore_spec.*$|\s*See full TensorStore details.*$")


def summary(e: BaseException, limit: int = 400) -> str:
    """The first line of an orbax or tensorstore error, without the tensorstore specs."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    line = _SPEC.sub("", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."
