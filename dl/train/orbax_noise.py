"""One line per failed checkpoint read or write, instead of orbax's and asyncio's tracebacks.

When orbax fails to read or write a step, four kinds of noise follow, none
saying more than the error dl reports itself (the step, the path, the
cause):

- the reads and writes tensorstore still has in flight finish after orbax's
  event loop is closed, and each prints "RuntimeError: Event loop is
  closed" through `sys.unraisablehook`;
- asyncio logs "Task exception was never retrieved" (or "_GatheringFuture
  exception ...") with the full tensorstore spec;
- orbax's read coroutines that are closed unfinished raise on the way out,
  and Python prints "Exception ignored in: <coroutine object ...>" with the
  tensorstore spec ("See full TensorStore details: <bound method ...>");
- orbax's background threads log the exception with its traceback
  (`logging.exception`) before it reaches `wait_until_finished`, where dl
  catches it.

`quiet()` (called when a `Checkpoints` is opened) drops exactly these; from
`--verbosity=1` up they are kept, as details. `summary(e)` is an orbax or
tensorstore error in one line, and `os_error(e)` the operating-system error
inside it ("No space left on device").
"""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys

from absl import logging

_installed = False
_ORBAX = os.sep + "orbax" + os.sep


def verbose() -> bool:
    """Whether the user asked for details (absl --verbosity=1 or more)."""
    return logging.get_verbosity() >= logging.DEBUG


class _Drop(std_logging.Filter):
    def filter(self, record) -> bool:
        if verbose():
            return True
        if record.name == "asyncio":
            return "exception was never retrieved" not in str(record.msg)
        # orbax's own report of a failed background save or read (dl reports it once).
        return not (record.levelno >= std_logging.ERROR and _ORBAX in record.pathname)


def quiet() -> None:
    """Installs (once per process) the filters for the noise of failed reads and writes."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = sys.unraisablehook

    def hook(unraisable):
        e = unraisable.exc_value
        closed_loop = isinstance(e, RuntimeError) and str(e) == "Event loop is closed"
        if verbose() or not (closed_loop or _from_orbax(unraisable)):
            previous(unraisable)

    sys.unraisablehook = hook
    drop = _Drop()
    std_logging.getLogger("asyncio").addFilter(drop)
    std_logging.getLogger("absl").addFilter(drop)


def _from_orbax(unraisable) -> bool:
    """Whether an unraisable exception is one of orbax's: its coroutine's, or raised in its code."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and _ORBAX in code.co_filename:
        return True
    tb = unraisable.exc_traceback
    while tb is not None:
        if _ORBAX in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


_SPEC = re.compile(r"\s*\[tensorstore_spec.*$|\s*See full TensorStore details.*$")
_OS_CODE = re.compile(r"\[os_error_code='(\d+)'\]")


def summary(e: BaseException, limit: int = 400) -> str:
    """The first line of an orbax or tensorstore error, without the tensorstore specs."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    line = _SPEC.sub("", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def os_error(e: BaseException) -> str | None:
    """The operating-system error of a failed write ("No space left on device"), if it has one.

    Looks through the exception's causes, and into tensorstore's messages,
    which carry it as `[os_error_code='28']`.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e.strerror or os.strerror(e.errno)
        match = _OS_CODE.search(str(e))
        if match:
            return os.strerror(int(match.group(1)))
        e = e.__cause__ or e.__context__
    return None
