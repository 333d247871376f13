"""In-memory datasets, splits and deterministic batching."""

from dl.data.pipeline import (
    SPLITS,
    Dataset,
    TrainOrder,
    eval_order,
    load_dataset,
    make_dataset,
    split_indices,
)
from dl.data.sources import FILE_SOURCES, SOURCES, Source, load_csv, load_npz, load_source

__all__ = [
    "FILE_SOURCES",
    "SOURCES",
    "SPLITS",
    "Dataset",
    "Source",
    "TrainOrder",
    "eval_order",
    "load_csv",
    "load_dataset",
    "load_npz",
    "load_source",
    "make_dataset",
    "split_indices",
]
