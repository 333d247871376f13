"""What every dl binary does before and around its work."""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from dl.errors import ConfigError

EXIT_CONFIG = 2  # a flag, config or input that needs changing; the message says what
EXIT_NONFINITE = 3  # training met non-finite values and stopped
EXIT_NO_CHECKPOINT = 4  # nothing could be restored
EXIT_INPUT_WORKER = 71  # a worker process of the streamed input died (EX_OSERR); re-run to resume
EXIT_IO = 74  # a file of the workdir could not be written (EX_IOERR); what was saved is intact
EXIT_PREEMPTED = 75  # SIGTERM: checkpoint written at the current step; re-run to resume

flags.DEFINE_string(
    "compilation_cache_dir",
    os.path.join(os.path.expanduser("~"), ".cache", "dl", "jax"),
    "Persistent XLA compilation cache; '' turns it off.",
)


flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0, to train over several processes with "
    "jax.distributed (with --num_processes and --process_id).",
)
flags.DEFINE_integer("num_processes", None, "Number of processes (jax.distributed).")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")
flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() with the settings a cluster scheduler "
    "gives (Slurm, and the other environments JAX detects).",
)


def setup_distributed() -> None:
    """Starts jax.distributed if the flags (or --distributed) ask for it.

    Must run before anything touches a JAX device.
    """
    import jax

    f = flags.FLAGS
    explicit = [f.coordinator_address, f.num_processes, f.process_id]
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            fail(
                "--coordinator_address, --num_processes and --process_id go together; "
                f"got {explicit}"
            )
        if not 0 <= f.process_id < f.num_processes:
            fail(f"--process_id must be in [0, {f.num_processes}), got {f.process_id}")
    elif not f.distributed:
        return
    if (os.environ.get("JAX_PLATFORMS") or "cpu").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit[0] is not None:
        jax.distributed.initialize(
            coordinator_address=f.coordinator_address,
            num_processes=f.num_processes,
            process_id=f.process_id,
        )
    else:
        jax.distributed.initialize()


def setup_jax() -> None:
    """Quiets library logs, starts jax.distributed if asked, turns on the compilation cache.

    Also applies dl's measured fix of orbax's telemetry leak (dl/train/orbax_patch.py).

    Library log lines (orbax writes several per checkpoint) go to stderr from
    WARNING up unless --verbosity is given; progress and results go to stdout.
    """
    import jax

    from dl.train.orbax_patch import stop_io_metrics_leak

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    setup_distributed()
    stop_io_metrics_leak()

    path = flags.FLAGS.compilation_cache_dir
    if path:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def exit_on_sigterm() -> None:
    """SIGTERM outside the training loop (before `train` takes it over, or after): exit 75.

    Before the loop starts nothing is written, and after it every checkpoint
    is: either way the same command run again resumes where the run is. The
    loop itself turns SIGTERM into a checkpoint of the step it reached. The
    handler leaves at once (os._exit): an exception raised from a signal
    handler can land in a callback that swallows it, and the run would go on.
    """
    import signal

    def handler(signum, frame):
        os.write(
            2,
            b"error: stopped by SIGTERM outside the training loop (no checkpoint was being "
            b"written); run the same command again to resume\n",
        )
        os._exit(EXIT_PREEMPTED)

    signal.signal(signal.SIGTERM, handler)


def fail(message: str, code: int = EXIT_CONFIG) -> None:
    """Prints a user-facing error (no traceback) and exits with `code`."""
    logging.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _describe(e: BaseException) -> str:
    text = str(e.args[0] if e.args else e).strip().replace("\\n", " ").replace("\\'", "'")
    if isinstance(e, SyntaxError):
        return f"{e.filename} line {e.lineno}: {e.msg}"
    if text[:1] in "'\"" and text[-1:] == text[:1] and "Did you mean" in text:
        text = text[1:-1]
    if isinstance(e, KeyError | AttributeError) and "Did you mean" not in text:
        if text.strip("'\"").isidentifier():
            text = f"the config has no field {text.strip(chr(34))}"
    return " ".join(text.split())


def parse_flags(argv, flag_values=None):
    """absl flag parsing that reports every problem as one message and exit status 2.

    Pass as `app.run(main, flags_parser=common.parse_flags)`.
    """
    try:
        return (flag_values or flags.FLAGS)(argv)
    except flags.Error as e:
        fail(f"{_describe(e)}. Pass --helpfull to see the flags.")
    except Exception as e:  # noqa: BLE001 -- config files and overrides fail in many ways
        fail(f"bad flag or config: {type(e).__name__}: {_describe(e)}")


def define_config_dict(name: str, config, **kwargs):
    """config_flags.DEFINE_config_dict, with a bad `--NAME.FIELD=VALUE` as a message and exit 2.

    DEFINE_config_dict reads the overrides of sys.argv when it defines the
    flag, so a misspelt field or a value of the wrong type fails there, at
    import, before parse_flags sees it.
    """
    try:
        return config_flags.DEFINE_config_dict(name, config, **kwargs)
    except Exception as e:  # noqa: BLE001 -- overrides fail in many ways, as in parse_flags
        fail(f"bad flag or config: {type(e).__name__}: {_describe(e)}")


def load_config_flag(name: str = "config", flag_values=None):
    """The config of a config_flags flag, with load or override errors as messages."""
    try:
        config = getattr(flag_values or flags.FLAGS, name)
        list(config.keys())  # a config file that failed to load raises here
        return config
    except (
        KeyError,
        AttributeError,
        ValueError,
        TypeError,
        OSError,
        SyntaxError,
        ImportError,
    ) as e:
        fail(f"cannot load --{name}: {_describe(e)}")


def reject_positional(argv) -> None:
    if len(argv) > 1:
        fail(
            f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --helpfull)"
        )


def guard(fn):
    """Runs fn, turning ConfigError into a message and exit status 2."""
    try:
        return fn()
    except ConfigError as e:
        fail(str(e))


def read_workdir(fn) -> None:
    """The main of a binary that reads a workdir: prints fn()'s result as one JSON line.

    A ConfigError exits 2 and a checkpoint that cannot be restored exits 4,
    each with its message and no traceback.
    """
    from dl.train import CheckpointError  # after setup_jax: jax.distributed comes first

    try:
        result = guard(fn)
    except CheckpointError as e:
        fail(str(e), EXIT_NO_CHECKPOINT)
    print(json.dumps(result), flush=True)
