"""A fix for a host-memory leak in orbax's I/O telemetry, applied explicitly where measured.

orbax-checkpoint asks tensorstore for its raw-bytes metrics before and after
writing (and reading) each batch of arrays, only to report them through
`jax.monitoring`; with tensorstore 0.1.86 every ask leaks the Python objects
it returns, so every checkpoint left memory behind, without bound
(BUILD_NOTES.md, "orbax's raw-bytes I/O telemetry is off"). dl reads none of them.

`stop_io_metrics_leak()` replaces the probe by one that reports 0, for the
(orbax-checkpoint, tensorstore) versions in `MEASURED` only; the binaries
and `dl.train.train` call it. On other versions it changes nothing and says
so, so that an upgrade is measured again before the fix is carried over.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from absl import logging

# (orbax-checkpoint, tensorstore) versions on which the leak and its fix were measured.
MEASURED = frozenset({("0.12.8", "0.1.86")})
MODULE = "orbax.checkpoint._src.serialization.tensorstore_utils"
PROBE = "get_tensorstore_raw_bytes"


def installed_versions() -> tuple[str, str]:
    """The installed (orbax-checkpoint, tensorstore) versions."""
    return (
        importlib.metadata.version("orbax-checkpoint"),
        importlib.metadata.version("tensorstore"),
    )


def _no_raw_bytes(*args, **kwargs) -> int:
    return 0  # before and after a batch: orbax records no raw-bytes metric


def stop_io_metrics_leak(versions: tuple[str, str] | None = None) -> bool:
    """Turns off orbax's raw-bytes I/O telemetry where that stops a measured leak.

    Args:
      versions: (orbax-checkpoint, tensorstore) versions to decide for
        (default: the installed ones).

    Returns:
      True if the probe is replaced (now or by an earlier call).

    Raises:
      RuntimeError: the versions are measured ones but orbax's layout is not the
        one measured (the probe is missing): re-measure before upgrading.
    """
    versions = versions or installed_versions()
    if versions not in MEASURED:
        logging.info("orbax %s / tensorstore %s: I/O telemetry left as it is", *versions)
        return False
    module = importlib.import_module(MODULE)
    if not callable(getattr(module, PROBE, None)):
        raise RuntimeError(
            f"{MODULE}.{PROBE} is missing in orbax-checkpoint {versions[0]}: the layout "
            "dl's leak fix was measured on has changed"
        )
    setattr(module, PROBE, _no_raw_bytes)
    return True
