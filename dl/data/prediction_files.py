"""New raw inputs read from files as training read its data, and predictions written to files.

`read_inputs(path, prep)` reads `.npz` (array `x`, plus the other fields a
model takes, e.g. graphs' `senders`), `.csv` (the training feature columns,
by name, in any order; other columns such as the label are ignored), `.txt`
(one source or prompt per line, for token models) or a folder of images
(flat, or one sub-folder per class), with the readers of dl/data/files.py.
`write_predictions(path, predictions)` writes `.npz` (one array per field)
or `.csv` (one row per example, a column per value).
"""

from __future__ import annotations

import csv
import os
import zipfile

import numpy as np

from dl.data.files import IMAGE_SUFFIXES, csv_columns, read_csv_rows, read_images
from dl.data.preprocessing import Preprocessing
from dl.data.source import read_npz
from dl.errors import ConfigError

INPUT_TYPES = "an .npz file, a .csv file, a .txt file (one source per line) or a folder of images"
OUTPUT_TYPES = (".npz", ".csv")


def read_inputs(path: str, prep: Preprocessing) -> dict[str, np.ndarray]:
    """New raw examples from a file or an image folder.

    Args:
      path: the file or folder.
      prep: the preprocessing of the run they are for (feature columns,
        image size and channels).

    Returns:
      field -> array [examples, ...] (`x` raw: not resized, not
      standardized; strings for text files), and for image folders `file`,
      each image's path relative to the folder.

    Raises:
      ConfigError: a missing path, an unknown file type, or a file that does
        not hold what the run's model takes.
    """
    if not path or not os.path.exists(path):
        raise ConfigError(f"input not found: {path!r}")
    if os.path.isdir(path):
        return _images(path, prep)
    ext = os.path.splitext(path)[1].lower()
    readers = {".npz": _npz, ".csv": _csv, ".txt": _text}
    if ext not in readers:
        kind = ext or "(none)"
        raise ConfigError(f"input {path!r} has unknown type {kind!r}; give {INPUT_TYPES}")
    return readers[ext](path, prep)


def _npz(path: str, prep: Preprocessing) -> dict[str, np.ndarray]:
    return read_npz(path, "npz", required=("x",))


def _csv(path: str, prep: Preprocessing) -> dict[str, np.ndarray]:
    columns = prep.info.get("feature_columns")
    if not columns:
        raise ConfigError(
            f"input {path!r} is a CSV file, but this model was not trained on one (no feature "
            "columns are recorded); give the inputs as an .npz file with an array x"
        )
    header, body = read_csv_rows(path)
    return {"x": csv_columns(path, header, body, columns)}


def _text(path: str, prep: Preprocessing) -> dict[str, np.ndarray]:
    if not prep.tokens:
        raise ConfigError(
            f"input {path!r} is a text file, which only token models take (seq2seq sources, "
            "char-LM prompts); give numeric inputs as .npz or .csv"
        )
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ConfigError(f"text file {path!r} is not UTF-8 text: {e}") from e
    if not lines:
        raise ConfigError(f"text file {path!r} is empty; write one source per line")
    return {"x": np.asarray(lines)}


def _images(path: str, prep: Preprocessing) -> dict[str, np.ndarray]:
    def images_in(folder: str) -> list[str]:
        names = sorted(os.listdir(folder))
        return [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)]

    files = images_in(path)  # a flat folder, else one sub-folder per class
    if not files:
        subs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
        files = [os.path.join(d, f) for d in subs for f in images_in(os.path.join(path, d))]
    if not files:
        raise ConfigError(
            f"image folder {path!r} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or "
            "in sub-folders"
        )
    resize = prep.info.get("resize") or {}
    size = int(resize.get("size", 0)) if resize.get("method") == "pil_bilinear" else 0
    shape = tuple(prep.input_shape or ())
    channels = int(prep.info.get("channels") or (shape[-1] if len(shape) == 3 else 0))
    if channels not in (1, 3):
        raise ConfigError(
            f"this model takes inputs of shape {shape} per example, not images; give .npz or .csv"
        )
    x, _ = read_images([os.path.join(path, f) for f in files], size, channels)
    return {"x": x, "file": np.asarray(files)}


def check_output(path: str) -> None:
    """Refuses an output path of an unknown type or in a folder that does not exist."""
    ext = os.path.splitext(path or "")[1].lower()
    if ext not in OUTPUT_TYPES:
        kind = ext or "(none)"
        raise ConfigError(f"output {path!r} has unknown type {kind!r}; give .npz or .csv")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"output {path!r}: the folder {folder!r} does not exist")


def write_predictions(path: str, predictions: dict) -> None:
    """Writes predictions, field -> array [examples, ...], to .npz or .csv (atomically).

    A CSV file has one row per example and one column per value: a field of
    shape [examples] is one column `name`, a wider one is flattened into
    `name_i` (`name_i_j`, ...) columns.

    Raises:
      ConfigError: an unknown output type, or a path that cannot be written.
    """
    check_output(path)
    ext = os.path.splitext(path)[1].lower()
    tmp = f"{path}.tmp{ext}"
    try:
        if ext == ".npz":
            _write_npz(tmp, predictions)
        else:
            _write_csv(tmp, predictions)
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write the output {path!r}: {e.strerror or e}") from None


def _write_npz(path: str, arrays: dict) -> None:
    """np.savez's format, for any field name (savez takes `file` as its own argument)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def _write_csv(path: str, predictions: dict) -> None:
    header, columns = [], []
    for name, value in predictions.items():
        value = np.asarray(value)
        flat = value.reshape(len(value), -1)  # [examples, values]
        if value.ndim == 1:
            header.append(name)
        else:
            header += ["_".join([name, *map(str, index)]) for index in np.ndindex(*value.shape[1:])]
        columns.append(flat)
    rows = zip(*(c.tolist() for c in columns), strict=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for parts in rows:
            writer.writerow([v for part in parts for v in part])
