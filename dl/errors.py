"""User-facing errors, each mapped by the binaries to its own exit status.

Library code raises `ConfigError` for anything a user can fix by changing a
config, a flag or an input file. The binaries print its message (no
traceback) and exit with status 2.
"""


class ConfigError(ValueError):
    """A config, flag or input that dl cannot use; the message says what to change."""


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """Builds the error for a name missing from one of dl's explicit tables.

    Args:
      kind: what the name is for, e.g. "model" or "optimizer".
      name: the name that was asked for.
      known: the valid names.

    Returns:
      A ConfigError listing the valid names.
    """
    return ConfigError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")


class WorkdirBusy(ConfigError):
    """Another `train` holds the workdir's lock; the message names its pid, host and start."""


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


class WriteError(RuntimeError):
    """A file of the workdir could not be written (disk full, I/O error).

    What was saved before it is intact; the binaries exit with status 74
    (EX_IOERR) and re-running the same command resumes.
    """


class InputWorkerError(RuntimeError):
    """A worker process of the streamed input died (killed, out of memory).

    The checkpoints written before are intact; the binaries exit with status
    71 (EX_OSERR) and re-running the same command resumes.
    """
