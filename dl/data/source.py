"""`Source`, what every dataset loader returns, and the helpers loaders share.

A leaf module: every loader in dl/data imports it, and it imports nothing of
dl but its errors.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from dl.config import option
from dl.errors import ConfigError


@dataclasses.dataclass
class Source:
    """All examples of a dataset, before splitting.

    Attributes:
      x: inputs, [examples, ...features].
      y: targets, [examples] (class ids or values) or [examples, outputs].
      kind: "classification", "regression", "sequence" or "detection".
      num_classes: number of classes for classification, else None.
      fixed_splits: optional mapping split -> example indices, for datasets
        whose splits are part of the data (truth tables use every example for
        every split).
      info: free-form description stored with the run.
      extra: more per-example fields (e.g. boxes and their mask for detection,
        edges for graphs), each with a leading example axis; split with x and y.
    """

    x: np.ndarray
    y: np.ndarray
    kind: str
    num_classes: int | None = None
    fixed_splits: dict[str, np.ndarray] | None = None
    info: dict = dataclasses.field(default_factory=dict)
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def num_samples(cfg, default: int, name: str) -> int:
    """The config's `num_samples` (default `default`), refused below 1, naming dataset `name`."""
    n = int(option(cfg, "num_samples", default))
    if n < 1:
        raise ConfigError(f"dataset {name!r}: num_samples must be >= 1, got {n}")
    return n


def check_file(path: str, what: str) -> None:
    """Raises ConfigError unless `path` names an existing file.

    Args:
      path: the path after `what:` in `dataset.name`.
      what: the file type's prefix (`npz`, `csv`, ...), named in messages.
    """
    if not path:
        raise ConfigError(f"{what} needs a path: use dataset.name='{what}:/path/to/file'")
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file not found: {path!r}")


def read_npz(path: str, what: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file, with errors that say what is wrong.

    Args:
      path: the file.
      what: the file type's prefix (`npz`, `detection_npz`, `graph_npz`).
      required: arrays the file must hold.

    Returns:
      array name -> numpy array.

    Raises:
      ConfigError: the file is missing or unreadable, or lacks a required array.
    """
    check_file(path, what)
    try:
        with np.load(path) as f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise ConfigError(
                    f"{what} file {path!r} lacks arrays {missing}; it has {sorted(f.files)}"
                )
            return {k: np.asarray(f[k]) for k in f.files}
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"cannot read {what} file {path!r}: {e}") from e
