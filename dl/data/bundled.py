"""scikit-learn's bundled datasets, read from the files scikit-learn ships.

`sklearn.datasets.load_digits()` and its siblings cost about a second of
imports (scikit-learn pulls in scipy.stats) before reading a few hundred
kilobytes. dl reads the same files directly: the package is found without
being imported, and its CSV files are parsed here as scikit-learn parses
them. Where the files are not where this version keeps them, the loaders
fall back to scikit-learn's own. tests/test_data.py checks that both give
the same arrays.
"""

from __future__ import annotations

import csv
import importlib.util
import os

import numpy as np

# loader name -> (file, layout); "headed": scikit-learn's load_csv_data layout
# (a first row "n_samples,n_features,class names...", the target last).
_FILES = {
    "load_iris": ("iris.csv", "headed"),
    "load_breast_cancer": ("breast_cancer.csv", "headed"),
    "load_wine": ("wine_data.csv", "headed"),
    "load_digits": ("digits.csv.gz", "digits"),
    "load_diabetes": ("diabetes_data_raw.csv.gz", "diabetes"),
}


def _data_dir() -> str | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


def _headed(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8") as f:
        rows = csv.reader(f)
        n, _ = (int(v) for v in next(rows)[:2])
        table = [row for row in rows if row]
    if len(table) != n:
        raise ValueError(f"{path}: {len(table)} rows, the header says {n}")
    x = np.array([row[:-1] for row in table], np.float64)
    return x, np.array([row[-1] for row in table], np.int64)


def _digits(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _diabetes(path: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.loadtxt(path)
    y = np.loadtxt(os.path.join(os.path.dirname(path), "diabetes_target.csv.gz"))
    # scikit-learn's default (scaled=True): each feature centred, scaled to
    # unit variance, then divided by sqrt(n_samples).
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x / np.sqrt(x.shape[0]), y


_READERS = {"headed": _headed, "digits": _digits, "diabetes": _diabetes}


def load(loader_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(data [examples, features] float64, target) of `sklearn.datasets.<loader_name>()`."""
    directory = _data_dir()
    name, layout = _FILES[loader_name]
    path = os.path.join(directory, name) if directory else ""
    if path and os.path.isfile(path):
        return _READERS[layout](path)
    from sklearn import datasets  # heavy (scipy): only where the files are not found

    bunch = getattr(datasets, loader_name)()
    return bunch.data, bunch.target
