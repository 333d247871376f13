"""The streaming input pipeline (`dataset.pipeline='stream'`), on Grain.

Examples are read from disk (`dl.data.stream_sources`) one at a time, by
index, in Grain's pipeline:

    MapDataset.source(train split)  raw examples, random access
      .shuffle(seed).repeat()       epoch e a permutation drawn from (seed, e)
      [p::P]                        P processes: process p's share of every global batch
      .batch(global batch / P,      batch k: a fixed set of examples, decoded and
             batch_fn=Collate)      standardized at once (in the workers)
      .to_iter_dataset().mp_prefetch(workers)

The batch of step k is a function of (seed, k) alone: the same for any
number of workers, and a resumed iterator (Grain's state, saved in every
checkpoint) reads on from where the run was. Augmentation stays in the
compiled step, keyed by the step, as in memory.

`load_stream_dataset` opens the data and fits the standardization in one
pass over the training split (or takes the converter's statistics); the
`StreamDataset` it returns stands where the in-memory `Dataset` stands,
its `splits` holding only a sample of the training split, for shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time

import numpy as np
from absl import flags

from dl.config import option
from dl.data.pipeline import STANDARDIZE, Dataset, _prepared_facts
from dl.data.preprocessing import Preprocessing, fit_inputs
from dl.data.records import DataError, RecordShards
from dl.data.stream_sources import StreamSource, open_stream
from dl.errors import ConfigError

PIPELINES = ("memory", "stream")
SAMPLE = 64  # training examples kept in memory, for shapes and the model's init


def ensure_grain():
    """Imports Grain, its absl flags marked parsed outside an absl app (a test, a notebook)."""
    import grain  # heavy (2 s): imported by streamed runs only

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return grain


@dataclasses.dataclass
class StreamDataset(Dataset):
    """A dataset read from disk as it trains; `splits` holds a sample of the training split.

    Attributes:
      stream: the opened StreamSource (raw examples of every split).
      sizes: examples per split.
    """

    stream: StreamSource | None = None
    sizes: dict = dataclasses.field(default_factory=dict)

    def size(self, split: str) -> int:
        return int(self.sizes.get(split, 0))

    def prepare(self):
        """The Grain Map that turns a raw example into a model input, as training sees it."""
        return Prepare(self.preprocessing, self.kind, self.num_classes)


class Prepare:
    """Raw batch -> training batch: x standardized to float32, y as the task takes it.

    Works on whole batches (field -> [batch, ...]), so its numpy operations
    run once per batch, not once per example. A picklable callable: Grain
    runs it in the worker processes.
    """

    def __init__(self, prep: Preprocessing, kind: str, num_classes: int | None):
        self.prep, self.kind, self.num_classes = prep, kind, num_classes

    def __call__(self, fields: dict, where=None) -> dict:
        """`fields` prepared; `where(k)` names example k of the batch in a bad label's error."""
        x = fields["x"]
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        prep = self.prep
        out = {"x": x if prep.x_mean is None else (x - prep.x_mean) / prep.x_std}
        y = np.asarray(fields["y"])
        if self.kind == "classification":
            bad = np.flatnonzero((y < 0) | (y >= self.num_classes)) if y.ndim == 1 else [0]
            if len(bad):
                at = f" ({where(int(bad[0]))})" if where else ""
                raise DataError(
                    f"label {y[bad[0]].tolist()}{at} is not a class id in [0, {self.num_classes})"
                )
            out["y"] = y if y.dtype == np.int32 else y.astype(np.int32)
        else:
            out["y"] = prep.standardize_targets(y)
        for k, v in fields.items():
            out.setdefault(k, v)
        return out


class Collate:
    """Grain's batch function: a batch's raw examples -> one prepared batch (picklable).

    With `records` (a RecordShards), the elements are (index, bytes) pairs
    and the batch is decoded at once; otherwise they are examples, stacked.
    """

    def __init__(self, prepare: Prepare, records=None):
        self.prepare, self.records = prepare, records

    def __call__(self, items) -> dict:
        if self.records is None:
            return self.prepare({k: np.stack([e[k] for e in items]) for k in items[0]})
        fields = self.records.decode_batch(items)
        return self.prepare(fields, lambda k: self.records.where(items[k][0]))


def _moments(items, n: int, batch: int = 512):
    """Per-feature count, mean and M2 of raw x over `items` (Chan et al.'s merge, float64)."""
    count, mean, m2 = 0, None, None
    for lo in range(0, n, batch):
        x = np.stack([np.asarray(items[i]["x"], np.float64) for i in range(lo, min(n, lo + batch))])
        b_mean, b_m2 = x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = len(x), b_mean, b_m2
            continue
        total = count + len(x)
        delta = b_mean - mean
        mean = mean + delta * len(x) / total
        m2 = m2 + b_m2 + delta**2 * count * len(x) / total
        count = total
    return count, mean, m2


def stream_statistics(items, how: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`fit_inputs`'s statistics, in one pass over the raw examples of `items`.

    "feature": per-feature mean and std (a constant feature left unscaled);
    "global": one mean and std over every value; "imagenet" and "none" read nothing.
    """
    if how in ("none", "imagenet"):
        sample = np.asarray(items[0]["x"], np.float32)[None]
        return fit_inputs(sample, how)
    count, mean, m2 = _moments(items, len(items))
    if how == "feature":
        std = np.sqrt(m2 / count)
        return mean.astype(np.float32), np.where(std < 1e-6, 1.0, std).astype(np.float32)
    values = count * mean.size
    g_mean = mean.mean()
    g_m2 = m2.sum() + count * ((mean - g_mean) ** 2).sum()
    return np.float32(g_mean), np.float32(max(float(np.sqrt(g_m2 / values)), 1e-6))


def _target_statistics(items) -> tuple[np.ndarray, np.ndarray]:
    ys = np.stack([np.asarray(items[i]["y"], np.float64) for i in range(len(items))])
    return ys.mean(axis=0).astype(np.float32), np.maximum(ys.std(axis=0), 1e-6).astype(np.float32)


def load_stream_dataset(cfg) -> StreamDataset:
    """Opens a streamed dataset and fits its standardization on the training split.

    Raises:
      ConfigError / DataError: a name that is not a stream format, missing or
        damaged files, an empty training split.
    """
    src = open_stream(cfg)
    sizes = {s: len(items) for s, items in src.splits.items()}
    if not sizes.get("train"):
        raise ConfigError(f"dataset {cfg.name!r}: the train split is empty")
    how = cfg.get("standardize", "feature")
    how = {True: "feature", False: "none"}.get(how, how)
    if how not in STANDARDIZE:
        raise ConfigError(f"dataset.standardize must be one of {STANDARDIZE}, got {how!r}")
    train = src.splits["train"]
    known = src.statistics.get(how)
    if known is not None:  # the converter's, fitted exactly as the in-memory path fits them
        x_mean, x_std = (np.asarray(known[k], np.float32) for k in ("mean", "std"))
    else:
        x_mean, x_std = stream_statistics(train, how)
    info = dict(src.info, sizes=sizes, pipeline="stream")
    if x_mean is not None:
        info["standardization"] = f"{how}: mean/std fitted on the training split"
    y_mean = y_std = None
    if src.kind == "regression" and cfg.get("standardize_targets", True):
        known = src.statistics.get("targets")
        if known is not None:
            y_mean, y_std = (np.asarray(known[k], np.float32) for k in ("mean", "std"))
        else:
            y_mean, y_std = _target_statistics(train)
        info["target_scale"] = {"mean": y_mean.tolist(), "std": y_std.tolist()}
    raw = [train[i] for i in range(min(SAMPLE, sizes["train"]))]
    prep = Preprocessing(x_mean, x_std, y_mean, y_std, input_shape=tuple(raw[0]["x"].shape))
    fields = Collate(Prepare(prep, src.kind, src.num_classes))(raw)
    prep.info = {
        "standardize": how,
        "kind": src.kind,
        "dataset": cfg.name,
        "num_classes": src.num_classes,
        "fields": {
            k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in fields.items()
        },
        **_prepared_facts(info),
    }
    return StreamDataset(
        cfg.name, {"train": fields}, src.kind, src.num_classes, info, prep, src, sizes
    )


def is_streamed(cfg) -> bool:
    """Whether a dataset config asks for the streaming pipeline (refusing unknown values)."""
    pipeline = option(cfg, "pipeline", "memory") or "memory"
    if pipeline not in PIPELINES:
        raise ConfigError(f"dataset.pipeline must be one of {PIPELINES}, got {pipeline!r}")
    return pipeline == "stream"


def _read_options(grain, cfg):
    return grain.ReadOptions(
        num_threads=int(option(cfg, "read_threads", 2)),
        prefetch_buffer_size=int(option(cfg, "prefetch", 4)),
    )


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def worker_init(worker: int, workers: int, *, parent: int) -> None:
    """Run in each Grain worker: it exits once the training process `parent` is gone.

    A worker outlives a SIGKILLed parent otherwise (spawned processes are
    not told), holding its memory and the shared-memory blocks. `parent` is
    the pid the worker was started by, fixed before the start: a worker may
    only get here after its parent has died.
    """
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="dl-parent-watch", daemon=True
    ).start()


def _parallel(grain, ds, cfg):
    workers = int(option(cfg, "workers", 0))
    if workers < 0:
        raise ConfigError(f"dataset.workers must be >= 0, got {workers}")
    if workers:
        ds = ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2),
            worker_init_fn=functools.partial(worker_init, parent=os.getpid()),
        )
    return ds


def train_stream(
    data: StreamDataset, cfg, *, batch_size: int, seed: int, process: int, processes: int
):
    """The training batches of this process, as a Grain IterDataset (batch k: step k).

    Args:
      data: the StreamDataset.
      cfg: the dataset config (workers, read_threads, prefetch).
      batch_size: the global batch (all processes together).
      seed: the run's seed (the epochs' permutations).
      process, processes: this process's index and the number of processes.
    """
    grain = ensure_grain()
    if batch_size % processes:
        raise ConfigError(f"batch_size {batch_size} must be divisible by the {processes} processes")
    if batch_size > data.size("train"):
        raise ConfigError(
            f"batch_size {batch_size} is larger than the training split "
            f"({data.size('train')} examples); set --config.batch_size to at most "
            f"{data.size('train')}"
        )
    split = data.stream.splits["train"]
    records = split if isinstance(split, RecordShards) else None
    items = split.indexed() if records else split  # records: decoded a batch at a time
    ds = grain.MapDataset.source(items).shuffle(seed=int(seed) % 2**32).repeat(None)
    if processes > 1:  # examples k*B + j*P + p of global batch k are process p's
        ds = ds[process::processes]
    # Batching last (Grain's workers then hand batches over in shared memory), and
    # preparing with it: decoding and standardizing run once per batch.
    collate = Collate(data.prepare(), records)
    ds = ds.batch(batch_size // processes, drop_remainder=True, batch_fn=collate)
    return _parallel(grain, ds.to_iter_dataset(_read_options(grain, cfg)), cfg)


class _Padded:
    """Raw examples 0..n-1 of a split then copies of example 0, each with its mask (picklable)."""

    def __init__(self, items, n: int):
        self.items, self.n = items, n

    def __call__(self, i: int) -> dict:
        i = int(i)
        return {**self.items[i if i < self.n else 0], "mask": np.float32(i < self.n)}


def eval_stream(
    data: StreamDataset, cfg, split: str, *, batch_size: int, process: int, processes: int
):
    """Every example of `split` once, in batches of `batch_size` (the last padded and masked).

    Returns:
      (IterDataset of this process's share of each batch, number of batches).
    """
    grain = ensure_grain()
    n = data.size(split)
    batches = -(-n // batch_size)
    padded = _Padded(data.stream.splits[split], n)
    ds = grain.MapDataset.range(batches * batch_size).map(padded)
    ds = ds.batch(batch_size // processes, batch_fn=Collate(data.prepare()))[process::processes]
    # Read by threads of this process: worker processes would start anew for every
    # evaluation, and stay beside the training input's.
    return ds.to_iter_dataset(_read_options(grain, cfg)), batches
