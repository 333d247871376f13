"""One writer per workdir: the exclusive OS lock `train` holds on WORKDIR/.lock.

`train` takes the lock before it writes or restores anything in the workdir
and holds it until the run ends. It is an `fcntl.flock` lock, which the
kernel releases when the process ends however it ends: a SIGKILLed run
leaves a lock file that blocks nobody. Once held, the file records the
holder (pid, host, start time in UTC), which a second `train` names in its
refusal (a `WorkdirBusy`, exit status 2 in the binaries). Readers
(`experiments.evaluate`, `dl.load`, predict and export) take no lock.

In a run of several processes (jax.distributed), process 0 takes the lock
for the run and tells the others whether it got it, so that every process
of a refused run stops at once, with the same message, instead of waiting on
the others.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from dl.errors import ConfigError, WorkdirBusy
from dl.train.sharding import is_lead

LOCK_FILE = ".lock"
_MESSAGE_BYTES = 1024  # a refusal's message, as shared between the processes of a run


def prepare_workdir(workdir: str) -> None:
    """Creates the workdir if needed; ConfigError if it is a file or cannot be written."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir!r} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --workdir {workdir!r}: {e.strerror}") from e
    if not os.access(workdir, os.W_OK):
        raise ConfigError(f"--workdir {workdir!r} is not writable")


class WorkdirLock:
    """The exclusive lock on one workdir, taken by `acquire` and given back by `release`.

    Args:
      workdir: the run's directory (it must exist).
      wait: how long `acquire` retries while the lock is held by a process
        that has not recorded itself yet (it has just taken the lock, or is
        giving it back).
    """

    def __init__(self, workdir: str, wait: float = 2.0):
        self.workdir, self.wait = workdir, wait
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock and records the holder; WorkdirBusy if another process holds it.

        On a filesystem without locks, warns and goes on unlocked.
        """
        try:  # opened without truncating: the holder's record stays until the lock is ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot open the workdir's lock file {self.path}: {e}") from e
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    logging.warning("cannot lock %s (%s); training unlocked", self.path, e)
                    return
            holder = _holder(fd)
            if holder is not None or time.monotonic() > deadline:
                os.close(fd)
                raise WorkdirBusy(busy_message(self.workdir, holder))
            time.sleep(0.05)
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        except OSError as e:  # held all the same; a second train is refused without names
            logging.warning("cannot record the holder in %s: %s", self.path, e)

    def release(self) -> None:
        """Clears the record and gives the lock back (nothing if it is not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock goes with the file descriptor all the same
        os.close(fd)


def _holder(fd: int) -> dict | None:
    """The holder recorded in the lock file, or None while it records none."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "pid" in record else None


def busy_message(workdir: str, holder: dict | None) -> str:
    if holder is None:
        who = "another process (it has not recorded its pid yet)"
    else:
        who = f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
    return (
        f"{workdir} is being trained by {who}; wait for that run to end, or train into "
        "another workdir"
    )


@contextlib.contextmanager
def hold_workdir(workdir: str):
    """Prepares the workdir and holds its lock for the block (process 0 of a run locks).

    Raises:
      ConfigError: the workdir cannot be used; WorkdirBusy: another run holds it.
    """
    lock = WorkdirLock(workdir)
    error = None
    try:
        prepare_workdir(workdir)
        if is_lead():
            lock.acquire()
    except ConfigError as e:
        error = e
    try:
        error = _lead_outcome(error)
        if error is not None:
            raise error
        yield lock
    finally:
        lock.release()


def _lead_outcome(error: ConfigError | None) -> ConfigError | None:
    """Process 0's error, if it had one, in every process; else this process's own."""
    if jax.process_count() == 1:
        return error
    message = ""
    if is_lead() and error is not None:
        message = ("B" if isinstance(error, WorkdirBusy) else "C") + str(error)
    data = np.zeros(_MESSAGE_BYTES, np.uint8)
    encoded = message.encode()[:_MESSAGE_BYTES]
    data[: len(encoded)] = np.frombuffer(encoded, np.uint8)
    shared = bytes(np.asarray(multihost_utils.broadcast_one_to_all(data))).rstrip(b"\0")
    if not shared:
        return error
    if is_lead():
        return error
    kind, text = shared[:1], shared[1:].decode(errors="replace")
    return WorkdirBusy(text) if kind == b"B" else ConfigError(text)


__all__ = ["LOCK_FILE", "WorkdirLock", "busy_message", "hold_workdir", "prepare_workdir"]
