"""dl's fix of orbax's telemetry leak applies where it was measured, and only there."""

import importlib
import inspect

from dl.train.orbax_patch import MEASURED, MODULE, PROBE, installed_versions, stop_io_metrics_leak


def test_the_leak_fix_applies_to_the_installed_orbax():
    versions = installed_versions()
    assert versions in MEASURED, (
        f"orbax-checkpoint / tensorstore {versions} are not the versions the leak was measured "
        "on: run tests/test_long_run.py without the fix, then add them to MEASURED or drop it"
    )
    # orbax's callers read the probe through its module, so replacing the attribute reaches them.
    handlers = importlib.import_module("orbax.checkpoint._src.serialization.jax_array_handlers")
    assert f"ts_utils.{PROBE}(" in inspect.getsource(handlers)
    assert stop_io_metrics_leak()
    assert getattr(importlib.import_module(MODULE), PROBE)() == 0


def test_unmeasured_versions_are_left_alone():
    assert not stop_io_metrics_leak(("0.0.1", "0.0.1"))
