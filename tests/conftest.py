"""Shared fixtures: configs for fast runs and a runner for the binaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tests that train in this process use JAX's persistent compilation cache,
# the one the binaries use (experiments/common.py, --compilation_cache_dir):
# many tests build the same step for the same shapes, and a hit skips XLA's
# compile. Compilation counts are unchanged (a hit counts, dl/train/compilations.py).
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "dl", "jax")
os.makedirs(CACHE_DIR, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_binary(
    module: str, *args: str, timeout: float = 300, env: dict | None = None, cwd: str = ROOT
):
    """Runs `python -m module args...` (from the repository root by default).

    The binary runs in a process of its own, forked from one per test worker
    that has imported the heavy libraries once (`_Zygote`): its `__main__`,
    its flags, its exit status and its output are those of `python -m`,
    without paying Python's and JAX's start-up again. With `env` it runs in a
    fresh interpreter (an environment variable may be read at import).
    """
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    if env:
        full_env.update(env)
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
    return _Zygote.get().run(module, list(args), cwd, full_env, timeout)


# Forks, for each request (a JSON line on stdin), a process that runs `python -m
# MODULE ARGS...`'s `__main__` in its own process group, and answers with its exit
# status and the files holding its output. Nothing that defines a binary's absl
# flags is imported before the fork.
_ZYGOTE = r"""
import json, os, runpy, sys, tempfile, time, traceback
import jax, flax, optax, orbax.checkpoint, matplotlib  # noqa: F401
import dl.train, dl.train.evaluation, dl.tools.lr_finder, dl.tools.sweep  # noqa: F401
import dl.tools.recurrent, dl.train.predictor, dl.data.prediction_files  # noqa: F401
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    fds = [tempfile.mkstemp(prefix="dl-binary-") for _ in range(2)]
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        os.chdir(request["cwd"])
        os.environ.clear(); os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0); os.dup2(fds[0][0], 1); os.dup2(fds[1][0], 2)
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = request["cwd"]
        code = 0
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    for fd, _ in fds:
        os.close(fd)
    deadline, timed_out = time.monotonic() + request["timeout"], False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(pid, 9)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    code = os.waitstatus_to_exitcode(status)
    reply = {"code": code, "out": fds[0][1], "err": fds[1][1], "timed_out": timed_out}
    print(json.dumps(reply), flush=True)
"""


class _Zygote:
    """The process of this test worker that forks the binaries (`run_binary`)."""

    _instance = None

    @classmethod
    def get(cls):
        if cls._instance is None or cls._instance.proc.poll() is not None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready", "the binaries' zygote did not start"

    def run(self, module, args, cwd, env, timeout):
        request = {"module": module, "args": args, "cwd": str(cwd), "env": env, "timeout": timeout}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        texts = []
        for key in ("out", "err"):
            with open(reply[key], errors="replace") as f:
                texts.append(f.read())
            os.remove(reply[key])
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired([module, *args], timeout, *texts)
        return subprocess.CompletedProcess([module, *args], reply["code"], *texts)


def run_binaries(cases, timeout: float = 300, env: dict | None = None, cwd: str = ROOT):
    """Runs many `python -m module args...`, one after the other, as `run_binary` runs each.

    Args:
      cases: [(module, [arg, ...]), ...].

    Returns:
      One subprocess.CompletedProcess per case (returncode, stdout, stderr).
    """
    return [run_binary(m, *a, timeout=timeout, env=env, cwd=cwd) for m, a in cases]


def config_path(name: str) -> str:
    return os.path.join(ROOT, "experiments", "configs", f"{name}.py")


@pytest.fixture
def binary():
    return run_binary


def load_config(name: str):
    """An experiment's config, loaded as the binaries load it."""
    import importlib

    return importlib.import_module(f"experiments.configs.{name}").get_config()


def read_tensorboard(logdir: str):
    """The scalars and images in `logdir` as TensorBoard's own reader gives them.

    Returns:
      (tag -> [(step, value), ...], tag -> [(step, PNG bytes), ...]), after
      TensorBoard has dropped what a restarted run superseded.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in tags["scalars"]}
    images = {
        t: [(e.step, e.encoded_image_string) for e in events.Images(t)] for t in tags["images"]
    }
    # A tag whose every value was purged is still listed, with no values.
    return {t: v for t, v in scalars.items() if v}, {t: v for t, v in images.items() if v}
