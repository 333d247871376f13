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


# Variables the forked binaries may be given: read when XLA's first client is made,
# which the forking process never makes (checked there before each fork).
LATE_ENV = ("XLA_FLAGS",)


def _child_env(env: dict | None) -> tuple[dict, bool]:
    """(the binary's environment, whether a process forked from the zygote may have it)."""
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    base = dict(full_env)
    full_env.update(env or {})
    changed = {k for k in set(base) | set(full_env) if base.get(k) != full_env.get(k)}
    return full_env, changed <= set(LATE_ENV) and full_env["JAX_PLATFORMS"] == "cpu"


def start_binary(module: str, *args: str, env: dict | None = None, cwd: str = ROOT):
    """Starts `python -m module args...`; returns a handle like subprocess.Popen's.

    The binary runs in a process of its own, forked from one per test worker
    that has imported the heavy libraries once (`_Zygote`): its `__main__`,
    its flags, its environment, its exit status and its output are those of
    `python -m`, without paying Python's and JAX's start-up again. An `env`
    that changes more than `LATE_ENV` (a variable that may be read at
    import) gets a fresh interpreter. The handle has `pid`, `returncode`,
    `poll()`, `send_signal()`, `kill()`, `wait()` and `communicate()`
    (text output, as Popen's with `text=True`).
    """
    full_env, forkable = _child_env(env)
    if not forkable:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return _Zygote.get().start(module, list(args), cwd, full_env)


def run_binary(
    module: str, *args: str, timeout: float = 300, env: dict | None = None, cwd: str = ROOT
):
    """Runs `python -m module args...` (from the repository root by default) to its end.

    As `start_binary` starts it; returns a subprocess.CompletedProcess (text
    stdout and stderr) and raises subprocess.TimeoutExpired after `timeout`
    seconds, the binary killed.
    """
    child = start_binary(module, *args, env=env, cwd=cwd)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        child.kill()
        out, err = child.communicate()
        raise subprocess.TimeoutExpired([module, *args], timeout, out, err) from e
    return subprocess.CompletedProcess([module, *args], child.returncode, out, err)


# Answers requests (JSON lines on stdin): "start" forks a process that runs `python
# -m MODULE ARGS...`'s `__main__` in its own process group, its output in files;
# "poll" and "wait" report its exit status. Nothing that defines a binary's absl
# flags is imported before the fork, and no XLA client exists at a fork.
_ZYGOTE = r"""
import json, os, runpy, sys, tempfile, time, traceback
import jax, flax, optax, orbax.checkpoint, matplotlib  # noqa: F401
import dl.train, dl.train.evaluation, dl.tools.lr_finder, dl.tools.sweep  # noqa: F401
import dl.tools.recurrent, dl.train.predictor, dl.data.prediction_files  # noqa: F401
from jax._src import xla_bridge
print("ready", flush=True)

def start(request):
    assert not xla_bridge._backends, "an XLA client exists before the fork"
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
    return {"pid": pid, "out": fds[0][1], "err": fds[1][1]}

def wait(request):
    deadline = time.monotonic() + (request["timeout"] or 0)
    while True:
        done, status = os.waitpid(request["pid"], os.WNOHANG)
        if done:
            return {"code": os.waitstatus_to_exitcode(status)}
        if request["timeout"] is not None and time.monotonic() >= deadline:
            return {"code": None}
        time.sleep(0.005)

for line in sys.stdin:
    request = json.loads(line)
    reply = start(request) if request["op"] == "start" else wait(request)
    print(json.dumps(reply), flush=True)
"""


class _Zygote:
    """The process of this test worker that forks the binaries (`start_binary`)."""

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

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, module, args, cwd, env):
        reply = self.ask(op="start", module=module, args=args, cwd=str(cwd), env=env)
        return _Forked(self, [module, *args], reply)


class _Forked:
    """A binary forked by the zygote, handled as a subprocess.Popen with text pipes."""

    def __init__(self, zygote: _Zygote, args: list[str], reply: dict):
        self.zygote, self.args = zygote, args
        self.pid, self._files = reply["pid"], (reply["out"], reply["err"])
        self.returncode = None

    def _wait(self, timeout: float | None):
        if self.returncode is None:
            self.returncode = self.zygote.ask(op="wait", pid=self.pid, timeout=timeout)["code"]
        return self.returncode

    def poll(self):
        return self._wait(0)

    def wait(self, timeout: float | None = None):
        if self._wait(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the binary's process group (its input workers too)."""
        if self.returncode is None:
            os.killpg(self.pid, 9)

    def terminate(self) -> None:
        self.send_signal(15)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """(stdout, stderr) once the binary has ended; its output files then removed."""
        self.wait(timeout)
        texts = []
        for path in self._files:
            try:
                with open(path, errors="replace") as f:
                    texts.append(f.read())
                os.remove(path)
            except FileNotFoundError:  # read already
                texts.append("")
        return texts[0], texts[1]


def pytest_collection_modifyitems(items):
    """The long tests (marked slow) first: test workers then end on short ones, together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def run_binaries(cases, timeout: float = 300, env: dict | None = None, cwd: str = ROOT):
    """Runs many `python -m module args...`, one after the other, as `run_binary` runs each.

    Args:
      cases: [(module, [arg, ...]), ...].

    Returns:
      One subprocess.CompletedProcess per case (returncode, stdout, stderr).
    """
    return [run_binary(m, *a, timeout=timeout, env=env, cwd=cwd) for m, a in cases]


def assert_resume_is_exact(config, tmp_path, stop: int):
    """Trains `config` straight, and to `stop` then on, in-process: the final states bitwise equal.

    The schedule must not depend on num_train_steps (a constant one) for the
    two runs to take the same steps.
    """
    import io

    import numpy as np

    from dl.train import Checkpoints, build, train

    total = config.num_train_steps
    train(config, str(tmp_path / "a"), stream=io.StringIO())
    config.num_train_steps = stop
    train(config, str(tmp_path / "b"), stream=io.StringIO())
    config.num_train_steps = total
    train(config, str(tmp_path / "b"), stream=io.StringIO())
    abstract = build(config).abstract_state()
    a = Checkpoints(str(tmp_path / "a"), read_only=True).restore(abstract)[0]
    b = Checkpoints(str(tmp_path / "b"), read_only=True).restore(abstract)[0]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def metric_events(workdir, split: str) -> list[dict]:
    """The events of one split in a workdir's metrics.jsonl, in the order written."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [e for e in map(json.loads, f) if e["split"] == split]


def train_losses(workdir) -> list[float]:
    """The logged training losses of a workdir, in step order."""
    return [e["loss"] for e in metric_events(workdir, "train")]


def summary_of(stdout: str) -> dict:
    """The last `summary {...}` line a training binary printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("summary ")]
    assert lines, stdout
    return json.loads(lines[-1][len("summary ") :])


# How far a low-precision compute dtype may end from float32 on the digits MLP
# (1500 steps, test split): bfloat16's tolerance, which float16 must meet too.
LOW_PRECISION_TOLERANCE = {"accuracy": 0.02, "loss": 0.05}


def train_digits_beside_float32(tmp_path, dtype: str):
    """Trains mlp_digits 1500 steps in float32 and with `dtype` compute, in-process.

    Asserts that the built model computes in `dtype`, that the parameters stay
    float32 and that the test metrics are within LOW_PRECISION_TOLERANCE of
    float32's. Returns the low-precision run's final state.
    """
    import io

    import jax.numpy as jnp
    import numpy as np

    from dl.train import Checkpoints, build, train

    c = load_config("mlp_digits")
    c.num_train_steps = 1500
    f32 = train(c, str(tmp_path / "float32"), stream=io.StringIO())
    c.dtype = dtype  # --config.dtype=...
    exp = build(c)
    assert exp.model.dtype == jnp.dtype(dtype)
    low = train(c, str(tmp_path / dtype), stream=io.StringIO())
    state = Checkpoints(str(tmp_path / dtype), read_only=True).restore(exp.abstract_state())[0]
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(state.params))
    for metric, tolerance in LOW_PRECISION_TOLERANCE.items():
        assert abs(low["test"][metric] - f32["test"][metric]) <= tolerance, (metric, low, f32)
    return state


# A short digits run logging every step: the runs that compare device layouts.
DEVICE_RUN_ARGS = [
    "--config.num_train_steps=24",
    "--config.log_every_steps=1",
    "--config.eval_every_steps=12",
    "--config.checkpoint_every_steps=12",
    "--config.batch_size=64",
    "--config.model.dropout_rate=0.0",
]


def devices_env(n: int) -> dict:
    """The environment of a binary that sees n CPU devices."""
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


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
