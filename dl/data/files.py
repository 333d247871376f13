"""Datasets from the user's own files: `npz:PATH`, `csv:PATH` and `images:PATH`.

Each loader takes the path after the prefix and the dataset config and
returns a `Source`; `dl.data.sources` names them.
"""

from __future__ import annotations

import csv
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from dl.config import option
from dl.data.source import Source, check_file, read_npz
from dl.errors import ConfigError


def _infer_kind(y: np.ndarray, cfg) -> tuple[str, int | None]:
    kind = option(cfg, "kind", None)
    if kind is None:
        kind = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    if kind not in ("classification", "regression"):
        raise ConfigError(f"dataset.kind must be 'classification' or 'regression', got {kind!r}")
    if kind == "classification":
        if y.ndim != 1:
            raise ConfigError(f"classification labels must have shape [examples], got {y.shape}")
        if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0:
            raise ConfigError("classification labels must be non-negative integers")
        return kind, int(y.max()) + 1
    return kind, None


def load_npz(path: str, cfg=None) -> Source:
    """Loads arrays `x` and `y` from an `.npz` file.

    Args:
      path: the file.
      cfg: dataset config; `kind` overrides the guess from y's dtype.

    Returns:
      The Source.
    """
    arrays = read_npz(path, "npz", required=("x", "y"))
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise ConfigError(f"npz file {path!r}: x has {len(x)} examples but y has {len(y)}")
    kind, num_classes = _infer_kind(y, cfg)
    y = y.astype(np.int32) if kind == "classification" else y.astype(np.float32)
    return Source(x.astype(np.float32), y, kind, num_classes, info={"file": path})


def read_csv_rows(path: str) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a CSV file (training data or new inputs).

    Raises:
      ConfigError: the file is missing, or has no header row and data row.
    """
    check_file(path, "csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ConfigError(f"csv file {path!r} needs a header row and at least one data row")
    return rows[0], rows[1:]


def csv_columns(path: str, header: list[str], body: list[list[str]], columns, hint=None):
    """The named columns of CSV rows as numbers, float32 [rows, len(columns)], in that order.

    Args:
      path: the file, for messages.
      header: its header row.
      body: its data rows.
      columns: the column names to read.
      hint: a function of a column name that says what to do when one of its
        cells is not a number (e.g. name it the label column), or None.

    Raises:
      ConfigError: a column is missing, a row has another number of cells than
        the header, or a cell is not a number (naming its line and column).
    """
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"csv file {path!r} lacks the columns {missing}; its columns: {header}")
    index = [header.index(c) for c in columns]
    x = np.empty((len(body), len(index)), np.float32)
    for r, row in enumerate(body):
        line = r + 2  # the header is line 1
        if len(row) != len(header):
            raise ConfigError(
                f"csv file {path!r}: line {line} has {len(row)} cells, the header {len(header)}"
            )
        for j, i in enumerate(index):
            try:
                x[r, j] = float(row[i])
            except ValueError:
                advice = f" {hint(header[i])}" if hint is not None else ""
                raise ConfigError(
                    f"csv file {path!r}, line {line}, column {header[i]!r}: {row[i]!r} is not "
                    f"a number.{advice}"
                ) from None
    return x


def _label_hint(header: list[str], label_given):
    """What to do about a non-numeric feature cell of a training CSV."""
    if label_given:
        return lambda column: (
            f"Every column but the label column {label_given!r} is a feature and must be numeric"
        )
    return lambda column: (
        f"Without dataset.label_column the label is the last column ({header[-1]!r}) and the "
        f"others are numeric features; if {column!r} holds the labels, set "
        f"--config.dataset.label_column={column}"
    )


def load_csv(path: str, cfg=None) -> Source:
    """Loads a CSV file with a header row; `dataset.label_column` names the target.

    Args:
      path: the file.
      cfg: dataset config with `label_column` (default: the last column) and
        optional `kind`.

    Returns:
      The Source. String labels of a classification set are mapped to ids in
      sorted order (stored in info["classes"]).
    """
    header, body = read_csv_rows(path)
    label = option(cfg, "label_column", None) or header[-1]
    if label not in header:
        raise ConfigError(f"csv file {path!r} has no column {label!r}; columns: {header}")
    col = header.index(label)
    features = [i for i in range(len(header)) if i != col]
    x = csv_columns(
        path,
        header,
        body,
        [header[i] for i in features],
        _label_hint(header, option(cfg, "label_column", None)),
    )
    raw = [r[col] for r in body]
    info = {"file": path, "label_column": label, "feature_columns": [header[i] for i in features]}
    kind = option(cfg, "kind", None)
    try:
        values = np.array([float(v) for v in raw])
    except ValueError:
        values = None
    if values is None or kind == "classification":
        if values is not None and np.all(values == np.round(values)):
            y = values.astype(np.int32)
            return Source(x, y, "classification", int(y.max()) + 1, info=info)
        classes = sorted(set(raw))
        y = np.array([classes.index(v) for v in raw], np.int32)
        info["classes"] = classes
        return Source(x, y, "classification", len(classes), info=info)
    if kind is None:
        kind = "classification" if np.all(values == np.round(values)) else "regression"
    if kind == "classification":
        y = values.astype(np.int32)
        return Source(x, y, kind, int(y.max()) + 1, info=info)
    return Source(x, values.astype(np.float32), "regression", info=info)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def list_image_folder(path: str) -> tuple[list[str], list[str], list[int]]:
    """(class names, image files, their class ids) of a folder of one sub-folder per class.

    Class ids follow the sorted sub-folder names. Nothing is read but the listing.

    Raises:
      ConfigError: no such folder, no class sub-folders, or a class without images.
    """
    if not path or not os.path.isdir(path):
        raise ConfigError(f"image folder not found: {path!r}")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ConfigError(f"image folder {path!r} has no class sub-folders")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        found = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise ConfigError(
                f"class folder {folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        files += [os.path.join(folder, f) for f in found]
        labels += [label] * len(found)
    return classes, files, labels


def image_channels(cfg) -> int:
    """`dataset.channels`, checked: 1 (grayscale), 3 (RGB) or 0 (the first image decides)."""
    channels = int(option(cfg, "channels", 0) or 0)
    if channels not in (0, 1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {channels}")
    return channels


def load_image_folder(path: str, cfg=None) -> Source:
    """Images in one sub-folder per class, read with Pillow.

    Class ids follow the sorted sub-folder names (stored in info["classes"]).
    `dataset.image_size` resizes every image to a square of that size;
    without it all images must have the same size. `dataset.channels` (1 or
    3) converts to grayscale or RGB; without it the first image decides.

    Args:
      path: the folder.
      cfg: dataset config.

    Returns:
      The Source, x [examples, H, W, C] float32 in [0, 1].
    """
    classes, files, labels = list_image_folder(path)
    size = int(option(cfg, "image_size", 0) or 0)
    channels = image_channels(cfg)
    x, channels = read_images(files, size, channels)
    info = {"folder": path, "classes": classes, "channels": channels}
    if size:  # new images of any size are resized as these were (dl.data.Preprocessing)
        info.update(image_size=size, resize={"method": "pil_bilinear", "size": size})
    return Source(x, np.asarray(labels, np.int32), "classification", len(classes), info=info)


def read_images(files: list[str], size: int = 0, channels: int = 0) -> tuple[np.ndarray, int]:
    """Image files as one array, read with Pillow (training data or new inputs).

    Args:
      files: the image files.
      size: resize each to size x size (bilinear), or 0 to keep their size,
        which must then be the same for all.
      channels: 1 (grayscale) or 3 (RGB); 0: the first image decides.

    Returns:
      (x [images, H, W, channels] float32 in [0, 1], channels).

    Raises:
      ConfigError: an unreadable image, or images of different sizes.
    """
    images, shape = [], None
    for file in files:
        try:
            with Image.open(file) as im:
                if not channels:
                    channels = 1 if im.mode in ("L", "1", "I", "F") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if size:
                    im = im.resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"cannot read image {file!r}: {e}") from e
        arr = arr.reshape(arr.shape[0], arr.shape[1], channels)
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise ConfigError(
                f"image {file!r} has shape {arr.shape}, the others {shape}; "
                "set dataset.image_size to resize them all"
            )
        images.append(arr)
    return np.stack(images), channels


def resize_pixels(x: np.ndarray, size: int) -> np.ndarray:
    """Images [n, H, W, C] in [0, 1] resized as `read_images` resizes files (Pillow, bilinear).

    Pixels are rounded to 8 bits first, as an image file holds them, so an
    image read at its own size and resized here equals the image read at `size`.
    """
    out = []
    for image in np.asarray(x, np.float32):
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        im = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)  # L or RGB
        arr = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) / 255.0
        out.append(arr.reshape(size, size, pixels.shape[-1]))
    return np.stack(out)
