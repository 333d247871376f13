"""Datasets: sources, splits, standardization and deterministic batching.

`dl.data` imports nothing of dl.models (the two sit side by side at the
bottom of dl's layers).
"""

from dl.data.arrays import from_arrays
from dl.data.files import load_csv, load_image_folder, load_npz
from dl.data.pipeline import (
    Dataset,
    TrainOrder,
    eval_order,
    load_dataset,
    make_dataset,
    raw_splits,
)
from dl.data.source import Source
from dl.data.sources import FILE_SOURCES, SOURCES, load_source
from dl.data.splits import SPLITS, split_indices

__all__ = [
    "FILE_SOURCES",
    "SOURCES",
    "SPLITS",
    "Dataset",
    "Source",
    "TrainOrder",
    "eval_order",
    "from_arrays",
    "load_csv",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "load_source",
    "make_dataset",
    "raw_splits",
    "split_indices",
]
