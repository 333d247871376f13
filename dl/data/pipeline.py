"""Splits, standardization and deterministic batching of in-memory datasets.

A `Dataset` holds every split as numpy arrays keyed by field ("x", "y", ...),
each with a leading example axis. Batches are chosen by *indices*: the order
of training examples in epoch e is a permutation drawn from (seed, e), so the
batch of any step can be recomputed after a restart without replaying the
run. The arrays themselves are put on the device once and gathered there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dl.config import option
from dl.data.arrays import check_finite, check_labels
from dl.data.preprocessing import Preprocessing, fit_inputs, fit_targets
from dl.data.source import Source
from dl.data.sources import load_source
from dl.data.splits import check_fractions, split_indices
from dl.errors import ConfigError


@dataclasses.dataclass
class Dataset:
    """A dataset split into train/validation/test.

    Attributes:
      name: the dataset's name.
      splits: split name -> field name -> array with a leading example axis.
      kind: "classification" or "regression".
      num_classes: classes of a classification set, else None.
      info: description stored with the run (sizes, standardization, source).
      preprocessing: what was fitted to the training split, to prepare new raw
        inputs the same way (`dl.data.preprocessing`).
    """

    name: str
    splits: dict[str, dict[str, np.ndarray]]
    kind: str
    num_classes: int | None
    info: dict
    preprocessing: Preprocessing = dataclasses.field(default_factory=Preprocessing)

    def size(self, split: str) -> int:
        return len(self.splits[split]["x"])

    @property
    def element_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-example shape of each field (no example axis)."""
        return {k: v.shape[1:] for k, v in self.splits["train"].items()}

    @property
    def target_dim(self) -> int:
        """Width of a regression target (1 for a scalar target)."""
        y = self.splits["train"]["y"]
        return 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))


STANDARDIZE = ("feature", "global", "imagenet", "none")


def _standardize(splits, info, how) -> tuple:
    """Standardizes inputs with statistics of the training split only (`fit_inputs`).

    Returns:
      (mean, std) as applied, or (None, None) for "none".
    """
    if how not in STANDARDIZE:
        raise ConfigError(f"dataset.standardize must be one of {STANDARDIZE}, got {how!r}")
    mean, std = fit_inputs(splits["train"]["x"], how)
    if mean is None:
        return None, None
    for s in splits.values():
        s["x"] = ((s["x"] - mean) / std).astype(np.float32)
    info["standardization"] = f"{how}: mean/std fitted on the training split"
    return mean, std


def make_dataset(source: Source, name: str, cfg) -> Dataset:
    """Splits a Source and standardizes it on its training split.

    Args:
      source: all examples.
      name: the dataset's name.
      cfg: dataset config: validation_fraction, test_fraction, split_seed,
        standardize, standardize_targets (regression).

    Returns:
      The Dataset.
    """
    idx = source_split_indices(source, name, cfg)
    _check_values(source, name, idx)
    splits = _split(source, idx)
    info = dict(source.info)
    info["sizes"] = {s: int(len(i)) for s, i in idx.items()}
    how = cfg.get("standardize", "feature")
    how = {True: "feature", False: "none"}.get(how, how)
    x_mean, x_std = _standardize(splits, info, how)
    y_mean = y_std = None
    if source.kind == "regression" and cfg.get("standardize_targets", True):
        y_mean, y_std = fit_targets(splits["train"]["y"])
        for s in splits.values():
            s["y"] = ((s["y"] - y_mean) / y_std).astype(np.float32)
        info["target_scale"] = {"mean": y_mean.tolist(), "std": y_std.tolist()}
    prep = Preprocessing(
        x_mean,
        x_std,
        y_mean,
        y_std,
        input_shape=tuple(int(d) for d in source.x.shape[1:]),
        info={
            "standardize": how,
            "kind": source.kind,
            "dataset": name,
            "num_classes": source.num_classes,
            # What the model and the task are built for, without the data.
            "fields": {
                k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)}
                for k, v in splits["train"].items()
            },
            **_prepared_facts(info),
        },
    )
    return Dataset(name, splits, source.kind, source.num_classes, info, prep)


def source_split_indices(source: Source, name: str, cfg) -> dict[str, np.ndarray]:
    """The example indices of each split of a Source, as `make_dataset` splits it.

    Raises:
      ConfigError: no examples, an empty training split, or a field whose
        number of examples differs from x's.
    """
    n = len(source.y)
    if n == 0:
        raise ConfigError(f"dataset {name!r} has no examples")
    fractions = [
        option(cfg, f, d) for f, d in (("validation_fraction", 0.15), ("test_fraction", 0.2))
    ]
    check_fractions(*fractions)  # also where the data fixes its splits and ignores them
    if source.fixed_splits is not None:
        idx = source.fixed_splits
    else:
        stratify = source.y if source.kind == "classification" else None
        idx = split_indices(n, *map(float, fractions), int(cfg.get("split_seed", 0)), stratify)
    for s in ("train",):
        if len(idx[s]) == 0:
            raise ConfigError(f"dataset {name!r}: the {s} split is empty; lower the fractions")
    for key, value in source.extra.items():
        if len(value) != n:
            raise ConfigError(
                f"dataset {name!r}: field {key!r} has {len(value)} examples, x has {n}"
            )
    return idx


def _split(source: Source, idx: dict) -> dict[str, dict[str, np.ndarray]]:
    return {
        s: {"x": source.x[i], "y": source.y[i], **{k: v[i] for k, v in source.extra.items()}}
        for s, i in idx.items()
    }


def raw_splits(cfg, source=None) -> dict[str, dict[str, np.ndarray]]:
    """The splits of a config's dataset before standardization: raw inputs, targets in data units.

    The same examples as `load_dataset(cfg)`'s splits, in the same order, as
    the source gives them (a loader's own resizing done, nothing fitted).

    Args:
      cfg: the `dataset` field of an experiment config.
      source: as for `load_dataset`.

    Returns:
      split -> field -> array [examples, ...].

    >>> from dl.config import base_config
    >>> raw = raw_splits(base_config().dataset)
    >>> raw["test"]["x"].shape, float(raw["test"]["x"].max())
    ((359, 8, 8, 1), 16.0)
    """
    src = load_source(cfg, source)
    return _split(src, source_split_indices(src, cfg.name, cfg))


def _check_values(source: Source, name: str, idx: dict) -> None:
    """Refuses non-finite values and class labels outside [0, num_classes), naming the example.

    Without this a NaN in the data or a label of `num_classes` gives a NaN
    loss at the first step, where the advice would be to lower the learning
    rate. A non-finite value is named by its field, its split and its index
    in the split and in the data (with the column and the line of a CSV file).
    """
    csv = "feature_columns" in source.info  # a CSV file's rows, after its header line
    for field, values in (("x", source.x), ("y", source.y), *source.extra.items()):
        check_finite(
            values,
            f"dataset {name!r} field {field!r}",
            idx,
            columns=source.info["feature_columns"] if csv and field == "x" else None,
            first_line=2 if csv else None,
        )
    if source.kind == "classification" and source.num_classes is not None:
        check_labels(source.y, int(source.num_classes), f"dataset {name!r} field 'y'")


# Facts of a source's info that preparing new raw inputs needs.
PREPARED_FACTS = (
    "classes",
    "class_names",
    "vocab",
    "src_vocab",
    "tgt_vocab",
    "max_source_length",
    "max_target_length",
    "feature_columns",
    "label_column",
    "image_size",
    "channels",
    "resize",
)


def _prepared_facts(info: dict) -> dict:
    return {k: info[k] for k in PREPARED_FACTS if k in info}


def load_dataset(cfg, source=None) -> Dataset:
    """Loads, splits and standardizes the dataset a config names.

    Args:
      cfg: the `dataset` field of an experiment config.
      source: instead of `cfg.name`, a Source or a function of the dataset
        config returning one (see `dl.data.load_source`).

    Returns:
      The Dataset.
    """
    return make_dataset(load_source(cfg, source), cfg.name, cfg)


class TrainOrder:
    """Which training examples make up the batch of each step.

    Examples are read epoch after epoch in a fresh permutation drawn from
    (seed, epoch); a batch may straddle two epochs. `indices(step)` depends on
    nothing but its arguments, so a resumed run reads the same batches.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size > num_examples:
            raise ConfigError(
                f"batch_size {batch_size} is larger than the training split "
                f"({num_examples} examples); set --config.batch_size to at most {num_examples}"
            )
        self.n, self.batch_size, self.seed = num_examples, batch_size, seed
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 64:
                self._cache.pop(min(self._cache))
            rng = np.random.default_rng([self.seed, epoch])
            self._cache[epoch] = rng.permutation(self.n).astype(np.int32)
        return self._cache[epoch]

    def indices(self, first_step: int, num_steps: int = 1) -> np.ndarray:
        """Example indices for steps first_step .. first_step + num_steps - 1.

        Returns:
          int32 [num_steps, batch_size].
        """
        pos = first_step * self.batch_size + np.arange(num_steps * self.batch_size)
        epoch, offset = np.divmod(pos, self.n)
        out = np.empty(pos.shape, np.int32)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self.permutation(int(e))[offset[sel]]
        return out.reshape(num_steps, self.batch_size)

    def epoch(self, step: int) -> float:
        return step * self.batch_size / self.n

    # A window covers at least this many steps when its permutations stay
    # under WINDOW_MAX_INDICES, so that small datasets (one batch per epoch,
    # or one graph) do not send a new window every call.
    WINDOW_STEPS = 256
    WINDOW_MAX_INDICES = 1 << 20

    def window_size(self, num_steps: int) -> int:
        """Epochs a window holds: any num_steps consecutive steps fit in it.

        Where the indices stay under WINDOW_MAX_INDICES, the window covers at
        least WINDOW_STEPS steps.
        """
        needed = -(-num_steps * self.batch_size // self.n) + 1
        ahead = -(-max(num_steps, self.WINDOW_STEPS) * self.batch_size // self.n) + 1
        return max(needed, min(ahead, self.WINDOW_MAX_INDICES // self.n))

    def window(self, first_step: int, num_steps: int, current: int | None = None):
        """The permutations the device needs for steps first_step .. + num_steps - 1.

        The device computes each step's indices itself (dl.train.step.batch_indices)
        from a window of consecutive epochs' permutations, so the host sends a
        new window once per epoch, not indices every step.

        Args:
          first_step: the first step of the call.
          num_steps: steps in the call.
          current: first epoch of the window the device holds, if any.

        Returns:
          None if the current window still covers the call, else
          (first_epoch, permutations int32 [window_size, examples]).
        """
        lo = first_step * self.batch_size // self.n
        hi = ((first_step + num_steps) * self.batch_size - 1) // self.n
        size = self.window_size(num_steps)
        if current is not None and current <= lo and hi < current + size:
            return None
        return lo, np.stack([self.permutation(e) for e in range(lo, lo + size)])


def eval_order(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Covers every example exactly once in batches of a static size.

    Returns:
      indices int32 [num_batches, batch_size] and mask float32 of the same
      shape; the last batch is padded with index 0 and mask 0.
    """
    num_batches = -(-num_examples // batch_size)
    flat = np.arange(num_batches * batch_size)
    mask = (flat < num_examples).astype(np.float32)
    idx = np.where(flat < num_examples, flat, 0).astype(np.int32)
    return idx.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)
