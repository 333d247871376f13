"""Any dataset dl reads, written as ArrayRecord shards for the streaming pipeline.

`convert(cfg, output, shards)` splits the dataset as a run in memory would
(`source_split_indices`, the same checks of values), and writes each split's
examples in that order (`dl.data.records`). Sources that are read whole
(built-in sets, npz, csv) also get the training split's standardization
statistics, computed exactly as in memory (`fit_inputs`, `fit_targets`), so
a streamed run of the converted data prepares its inputs bit for bit as a
run of the source in memory. Image folders and Parquet files are read one
example at a time (their statistics are then fitted by the streamed run).
"""

from __future__ import annotations

import os

import numpy as np

from dl.data.pipeline import _check_values, _prepared_facts, source_split_indices
from dl.data.preprocessing import fit_inputs, fit_targets
from dl.data.records import field_spec, write_metadata, write_split
from dl.data.sources import load_source
from dl.data.splits import SPLITS
from dl.data.stream_sources import open_stream
from dl.errors import ConfigError

STREAMED_INPUTS = ("images", "parquet")  # read one example at a time, never whole


def _kind_checked(kind: str) -> str:
    if kind not in ("classification", "regression"):
        raise ConfigError(
            f"the streaming pipeline trains classification and regression data; this "
            f"dataset is {kind!r} (train it with dataset.pipeline='memory')"
        )
    return kind


def _from_memory(cfg):
    """(splits: split -> (count, examples iterator factory), kind, classes, info, statistics)."""
    source = load_source(cfg)
    idx = source_split_indices(source, cfg.name, cfg)
    _check_values(source, cfg.name, idx)
    if source.extra:
        raise ConfigError(
            f"dataset {cfg.name!r} has fields {sorted(source.extra)} beyond x and y; the "
            "streaming pipeline reads x and y"
        )
    fields = {"x": source.x, "y": source.y}
    splits = {
        s: (len(i), lambda i=i: ({k: v[j] for k, v in fields.items()} for j in i))
        for s, i in idx.items()
    }
    x_train = source.x[idx["train"]].astype(np.float32)
    statistics = {}
    for how in ("feature", "global"):
        mean, std = fit_inputs(x_train, how)
        statistics[how] = {"mean": np.asarray(mean).tolist(), "std": np.asarray(std).tolist()}
    if source.kind == "regression":
        mean, std = fit_targets(source.y[idx["train"]].astype(np.float32))
        statistics["targets"] = {"mean": mean.tolist(), "std": std.tolist()}
    info = {**_prepared_facts(source.info), "source": source.info.get("source", cfg.name)}
    return splits, _kind_checked(source.kind), source.num_classes, info, statistics


def _from_stream(cfg):
    src = open_stream(cfg)
    splits = {
        s: (len(items), lambda items=items: (items[j] for j in range(len(items))))
        for s, items in src.splits.items()
    }
    info = {k: v for k, v in src.info.items() if k != "sizes"}
    return splits, _kind_checked(src.kind), src.num_classes, info, {}


def _repeated(count: int, examples, times: int):
    if times == 1:
        return count, examples
    return count * times, lambda: (e for _ in range(times) for e in examples())


def convert(cfg, output: str, shards: int, repeat: int = 1, compression: str = "default") -> dict:
    """Writes the dataset `cfg` names into `output` (a new or empty directory).

    Returns:
      What experiments.convert prints: the output, the splits' sizes, the bytes written.
    """
    prefix = cfg.name.partition(":")[0]
    read = _from_stream if prefix in STREAMED_INPUTS else _from_memory
    splits, kind, num_classes, info, statistics = read(cfg)
    if repeat > 1:
        splits["train"] = _repeated(*splits["train"], repeat)
    first = next(iter(splits["train"][1]()))
    spec = field_spec(
        {
            "x": np.asarray(first["x"], np.float32),
            "y": np.asarray(first["y"], np.int32 if kind == "classification" else np.float32),
        }
    )
    os.makedirs(output, exist_ok=True)
    written = {}
    for split in SPLITS:
        if split in splits:
            count, examples = splits[split]
            written[split] = write_split(
                output, split, examples(), count, spec, shards, compression
            )
    metadata = {
        "source": cfg.name,
        "kind": kind,
        "num_classes": None if num_classes is None else int(num_classes),
        "fields": spec,
        "splits": written,
        "split": {k: cfg.get(k) for k in ("validation_fraction", "test_fraction", "split_seed")},
        "repeat": int(repeat),
        "compression": compression,
        "info": info,
        "statistics": statistics if repeat == 1 else {},
    }
    write_metadata(output, metadata)
    size = sum(os.path.getsize(os.path.join(output, f)) for f in os.listdir(output))
    return {
        "output": os.path.abspath(output),
        "splits": {s: w["records"] for s, w in written.items()},
        "shards": {s: len(w["shards"]) for s, w in written.items()},
        "bytes": size,
    }
