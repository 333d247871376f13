"""Shared fixtures: configs for fast runs and a runner for the binaries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_binary(
    module: str, *args: str, timeout: float = 300, env: dict | None = None, cwd: str = ROOT
):
    """Runs `python -m module args...` (from the repository root by default)."""
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


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
