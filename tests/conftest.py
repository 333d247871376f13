"""Shared fixtures: configs for fast runs and a runner for the binaries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_binary(module: str, *args: str, timeout: float = 300, env: dict | None = None):
    """Runs `python -m module args...` from the repository root; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
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
