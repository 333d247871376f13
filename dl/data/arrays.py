"""In-memory arrays as a dataset: `dl.data.from_arrays(x, y, ...)`.

    source = from_arrays(x, y, kind="classification", num_classes=3)
    dl.train.train(config, workdir, dataset=source)

Everything is checked before anything compiles: here lengths that differ,
labels outside [0, num_classes) and splits that index outside the arrays;
non-finite values when the dataset is split (`dl.data.pipeline.make_dataset`),
where the message can name the split of the example that holds one.
"""

from __future__ import annotations

import numpy as np

from dl.data.source import Source
from dl.data.splits import SPLITS
from dl.errors import ConfigError

KINDS = ("classification", "regression")


def from_arrays(
    x,
    y,
    *,
    kind: str = "classification",
    num_classes: int | None = None,
    splits: dict | None = None,
    extra: dict | None = None,
    info: dict | None = None,
) -> Source:
    """A Source of arrays in memory.

    Args:
      x: inputs [examples, ...], numbers.
      y: targets: class ids [examples] for classification, values [examples]
        or [examples, outputs] for regression.
      kind: "classification" or "regression".
      num_classes: the number of classes (default: the largest label + 1).
      splits: None to split by the dataset config's fractions, or split name
        -> example indices (e.g. {"train": idx, "validation": idx, "test":
        idx}), or split name -> (x, y) of that split (then x and y are None).
      extra: more per-example fields, name -> [examples, ...].
      info: a description stored with the run.

    Returns:
      The Source.

    Raises:
      ConfigError: naming what is wrong (lengths, a label outside [0,
        num_classes), a split index outside the examples). Non-finite values
        are refused when the dataset is split, naming the split.

    >>> s = from_arrays(np.zeros((4, 2)), [0, 1, 1, 0], num_classes=2)
    >>> s.x.shape, s.num_classes
    ((4, 2), 2)
    """
    fixed = None
    if splits is not None and x is None and y is None:
        x, y, fixed = _concatenate(splits)
    elif splits is not None:
        fixed = {k: np.asarray(v, np.int64) for k, v in splits.items()}
    if kind not in KINDS:
        raise ConfigError(f"from_arrays: kind must be one of {KINDS}, got {kind!r}")
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
    for name, values in (("y", y), *extra.items()):
        if len(values) != n:
            raise ConfigError(f"from_arrays: x has {n} examples but {name} has {len(values)}")
    if not np.issubdtype(x.dtype, np.number):
        raise ConfigError(f"from_arrays: x must hold numbers, got {x.dtype}")
    if kind == "classification":
        y, num_classes = _labels(y, num_classes)
    else:
        y = np.asarray(y, np.float32)
    if fixed is not None:
        _check_splits(fixed, n)
        fixed = {s: fixed.get(s, np.zeros(0, np.int64)) for s in SPLITS}
    x = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x
    return Source(x, y, kind, num_classes, fixed, dict(info or {"source": "arrays"}), extra)


def _concatenate(splits: dict):
    xs, ys, fixed, start = [], [], {}, 0
    for name, pair in splits.items():
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ConfigError(
                f"from_arrays: with x and y None, splits maps each split to (x, y); "
                f"{name!r} gave {type(pair).__name__}"
            )
        xs.append(np.asarray(pair[0]))
        ys.append(np.asarray(pair[1]))
        fixed[name] = np.arange(start, start + len(xs[-1]))
        start += len(xs[-1])
    return np.concatenate(xs), np.concatenate(ys), fixed


def _labels(y: np.ndarray, num_classes: int | None):
    if y.ndim != 1:
        raise ConfigError(f"from_arrays: class labels must have shape [examples], got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ConfigError("from_arrays: class labels must be integers")
    y = y.astype(np.int64)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1 if len(y) else 0
    check_labels(y, k, "from_arrays: y")
    return y.astype(np.int32), k


def check_finite(
    values: np.ndarray,
    what: str,
    splits: dict | None = None,
    columns: list[str] | None = None,
    first_line: int | None = None,
) -> None:
    """Raises ConfigError naming the first example holding a NaN or an infinity.

    Args:
      values: [examples, ...] the values of one field.
      what: names the field in the message, e.g. "dataset 'iris' field 'x'".
      splits: split name -> example indices: only examples of a split are
        checked, and the message names the split and the example's index in it.
      columns: names of the entries of a field [examples, columns] (a CSV
        file's feature columns), named in the message.
      first_line: the file line of example 0 (a CSV file's data rows), to name
        the example's line.

    >>> x = np.zeros((5, 2), np.float32); x[3, 1] = np.inf
    >>> try:
    ...     check_finite(x, "field 'x'", {"train": [0, 3], "test": [1, 2, 4]}, ["a", "b"])
    ... except ConfigError as e:
    ...     print(*str(e).split(" holds "), sep="\\n")
    field 'x': the train split's example 1 (example 3 of the data)
    inf at (1,), column 'b' (1 non-finite value in all); dl trains on finite numbers only
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    if splits is not None:
        used = np.zeros(len(values), bool)
        for idx in splits.values():
            used[np.asarray(idx, np.int64)] = True
        bad &= used.reshape((-1,) + (1,) * (values.ndim - 1))
    if not bad.any():
        return
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    example = f"example {where[0]}"
    line = f", line {where[0] + first_line}" if first_line is not None else ""
    for split, idx in (splits or {}).items():
        hits = np.flatnonzero(np.asarray(idx) == where[0])
        if hits.size:
            example = f"the {split} split's example {int(hits[0])} ({example} of the data{line})"
            break
    position = f" at {where[1:]}" if len(where) > 1 else ""
    if columns is not None and values.ndim == 2 and len(columns) == values.shape[1]:
        position += f", column {columns[where[1]]!r}"
    count = int(bad.sum())
    raise ConfigError(
        f"{what}: {example} holds {values[where]}{position} ({count} non-finite "
        f"value{'s' if count > 1 else ''} in all); dl trains on finite numbers only"
    )


def check_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    """Raises ConfigError naming the first label outside [0, num_classes)."""
    y = np.asarray(y)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(y), -1).any(axis=1))[0])
        raise ConfigError(
            f"{what}: example {i} has label {y[i]}, outside [0, {num_classes}) for "
            f"{num_classes} classes ({int(bad.sum())} labels out of range)"
        )


def _check_splits(fixed: dict, n: int) -> None:
    unknown = sorted(set(fixed) - set(SPLITS))
    if unknown:
        raise ConfigError(f"from_arrays: unknown split(s) {unknown}; splits are {SPLITS}")
    if not len(fixed.get("train", ())):
        raise ConfigError("from_arrays: splits needs a non-empty 'train' split")
    for name, idx in fixed.items():
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise ConfigError(
                f"from_arrays: split {name!r} indexes example {int(idx.max())}, but there are {n}"
            )
