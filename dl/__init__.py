"""dl: a functional JAX research framework for deep learning.

`import dl` is light (no JAX); `dl.load(workdir)` (dl/train/predictor.py)
imports the training layer on first use and returns a Predictor of new raw
inputs for a trained run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dl.train.predictor import load

__version__ = "0.1.0"

__all__ = ["load"]


def __getattr__(name: str):
    if name == "load":
        # The training layer imports JAX: imported when dl.load is first used, not by `import dl`.
        from dl.train.predictor import load

        return load
    raise AttributeError(f"module 'dl' has no attribute {name!r}")
