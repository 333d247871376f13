"""Deterministic train/validation/test splits."""

from __future__ import annotations

import numpy as np

from dl.config import Range, check_ranges
from dl.errors import ConfigError

SPLITS = ("train", "validation", "test")
FRACTION = Range(0, 1, high_open=True)


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Refuses split fractions outside [0, 1), or that leave no training examples.

    Raises:
      ConfigError: naming the field and its value.
    """
    fractions = {"validation_fraction": validation_fraction, "test_fraction": test_fraction}
    check_ranges(fractions, dict.fromkeys(fractions, FRACTION), "dataset.")
    if validation_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"dataset.validation_fraction + dataset.test_fraction must be < 1, got "
            f"{validation_fraction} + {test_fraction}"
        )


def split_indices(
    n: int,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic train/validation/test split of n examples.

    Classification sets are split per class (stratified), so every split keeps
    the class proportions.

    Args:
      n: number of examples.
      validation_fraction: fraction for validation, in [0, 1).
      test_fraction: fraction for test, in [0, 1).
      seed: the split's seed.
      labels: class ids to stratify by, or None.

    Returns:
      split name -> sorted example indices.

    >>> parts = split_indices(10, 0.2, 0.2, seed=0)
    >>> {k: len(v) for k, v in parts.items()}
    {'train': 6, 'validation': 2, 'test': 2}
    """
    check_fractions(validation_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    out = {s: [] for s in SPLITS}
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(validation_fraction * len(idx)))
        out["test"].append(idx[:n_test])
        out["validation"].append(idx[n_test : n_test + n_val])
        out["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in out.items()}
