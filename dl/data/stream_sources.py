"""What a streamed dataset reads: converted ArrayRecord shards, Parquet files, image folders.

`open_stream(cfg)` returns a `StreamSource`: per split, a random-access
collection of raw examples (field -> array, before standardization), read
from disk one example at a time and never all at once. Each is picklable,
so Grain's worker processes read and decode in parallel.

- `array_record:DIR`: a directory written by `python -m experiments.convert`;
  its splits are the converter's.
- `parquet:PATH`: a Parquet file, or a directory of them read in name order;
  `dataset.label_column` (default "label", else the last column) is y, the
  numeric columns (`dataset.feature_columns` to choose) or one list column
  are x. Split by dl's split of the example indices (seeded, not stratified:
  that would read every label).
- `images:DIR` (with `dataset.pipeline='stream'`): one sub-folder per class,
  decoded with Pillow per example, resized to `dataset.image_size`;
  stratified split (the labels are the folder names, known without reading).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from dl.config import option
from dl.data.files import image_channels, list_image_folder, read_images
from dl.data.records import DataError, RecordShards, read_metadata
from dl.data.splits import SPLITS, check_fractions, split_indices
from dl.errors import ConfigError

STREAM_PREFIXES = ("array_record", "parquet", "images")


@dataclasses.dataclass
class StreamSource:
    """The splits of a streamed dataset, and what is known of it without reading it.

    Attributes:
      splits: split -> random-access raw examples (`len`, `[i]` -> field -> array).
      kind: "classification" or "regression".
      num_classes: for classification.
      info: facts stored with the run (source, classes, sizes).
      statistics: standardization statistics of the training split computed
        by the converter ("feature" / "global" -> {"mean", "std"}), or {}.
    """

    splits: dict
    kind: str
    num_classes: int | None
    info: dict
    statistics: dict = dataclasses.field(default_factory=dict)


class Subset:
    """Examples `indices` of a random-access collection, in that order (picklable)."""

    def __init__(self, items, indices: np.ndarray):
        self.items, self.indices = items, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.items[int(self.indices[int(i)])]


def open_stream(cfg) -> StreamSource:
    """The StreamSource that `cfg.name` (`PREFIX:PATH`) names."""
    prefix, _, path = cfg.name.partition(":")
    if prefix not in STREAM_PREFIXES or not path:
        raise ConfigError(
            f"dataset.pipeline='stream' reads {', '.join(p + ':PATH' for p in STREAM_PREFIXES)}; "
            f"got dataset.name={cfg.name!r} (convert other data with python -m experiments.convert)"
        )
    return {"array_record": _array_record, "parquet": _parquet, "images": _images}[prefix](
        path, cfg
    )


def _array_record(path: str, cfg) -> StreamSource:
    metadata = read_metadata(path)
    splits = {s: RecordShards(path, s, metadata) for s in SPLITS if s in metadata["splits"]}
    info = dict(metadata.get("info", {}))
    info.update(source=f"array_record:{path}", converted_from=metadata.get("source"))
    return StreamSource(
        splits, metadata["kind"], metadata.get("num_classes"), info, metadata.get("statistics", {})
    )


def _split_by_fraction(n: int, cfg, stratify=None) -> dict[str, np.ndarray]:
    fractions = [
        float(option(cfg, f, d)) for f, d in (("validation_fraction", 0.15), ("test_fraction", 0.2))
    ]
    check_fractions(*fractions)
    return split_indices(n, *fractions, int(option(cfg, "split_seed", 0)), stratify)


class ImageFiles:
    """Image files and labels; `[i]` decodes file i with Pillow (as `dl.data.files` reads them)."""

    def __init__(self, files: list[str], labels: np.ndarray, size: int, channels: int):
        self.files, self.labels, self.size, self.channels = files, labels, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        try:
            x, _ = read_images([self.files[int(i)]], self.size, self.channels)
        except ConfigError as e:
            raise DataError(f"example {int(i)}: {e}") from e
        return {"x": x[0], "y": np.int32(self.labels[int(i)])}


def _images(path: str, cfg) -> StreamSource:
    classes, files, labels = list_image_folder(path)
    size = int(option(cfg, "image_size", 0) or 0)
    channels = image_channels(cfg)
    first, channels = read_images(files[:1], size, channels)  # fixes the shape of every example
    size = size or int(first.shape[1])
    if first.shape[1] != first.shape[2] and not option(cfg, "image_size", 0):
        raise ConfigError(
            f"image {files[0]!r} is {first.shape[1]}x{first.shape[2]}: set dataset.image_size "
            "to stream images resized to a square"
        )
    y = np.asarray(labels, np.int32)
    items = ImageFiles(files, y, size, channels)
    idx = _split_by_fraction(len(files), cfg, stratify=y)
    info = {
        "source": f"images:{path}",
        "folder": path,
        "classes": classes,
        "channels": channels,
        "image_size": size,
        "resize": {"method": "pil_bilinear", "size": size},
    }
    splits = {s: Subset(items, i) for s, i in idx.items()}
    return StreamSource(splits, "classification", len(classes), info)


class ParquetRows:
    """Rows of Parquet files; `[i]` reads row i's row group (the last one read is kept)."""

    def __init__(self, files: list[str], features: list[str], label: str, list_feature: bool):
        import pyarrow.parquet as pq  # heavy (Arrow): Parquet inputs only

        self.files, self.features, self.label = files, features, label
        self.list_feature = list_feature
        counts = []
        for f in files:
            meta = pq.ParquetFile(f).metadata
            counts.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self.groups = [(fi, g) for fi, c in enumerate(counts) for g in range(len(c))]
        self.starts = np.cumsum([0] + [n for c in counts for n in c])  # of each row group
        self.file_starts = np.cumsum([0] + [sum(c) for c in counts])
        self._cached = (None, None)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cached"}

    def __setstate__(self, state):
        self.__dict__.update(state, _cached=(None, None))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq  # heavy (Arrow): Parquet inputs only

        i = int(i)
        g = int(np.searchsorted(self.starts, i, side="right")) - 1
        key, table = self._cached
        if key != g:
            fi, group = self.groups[g]
            try:
                table = pq.ParquetFile(self.files[fi]).read_row_group(
                    group, columns=[*self.features, self.label]
                )
            except (OSError, ValueError) as e:
                raise DataError(f"cannot read row group {group} of {self.files[fi]!r}: {e}") from e
            table = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
            self._cached = (g, table)
        row = i - int(self.starts[g])
        if self.list_feature:
            x = np.asarray(table[self.features[0]][row], np.float32)
        else:
            x = np.asarray([table[c][row] for c in self.features], np.float32)
        y = table[self.label][row]
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            fi, _ = self.groups[g]
            raise DataError(
                f"row {i - int(self.file_starts[fi])} of {self.files[fi]!r} holds a "
                "non-finite value"
            )
        return {"x": x, "y": y}


def _parquet_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet"))
        if not files:
            raise DataError(f"parquet directory {path!r} holds no .parquet files")
        return files
    if not os.path.isfile(path):
        raise DataError(f"parquet file not found: {path!r}")
    return [path]


def _parquet(path: str, cfg) -> StreamSource:
    import pyarrow as pa  # heavy (Arrow): Parquet inputs only
    import pyarrow.parquet as pq  # heavy (Arrow): Parquet inputs only

    files = _parquet_files(path)
    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"cannot read parquet file {f!r}: {e}") from e
    schema = schemas[0]
    names = list(schema.names)
    label = option(cfg, "label_column", "") or ("label" if "label" in names else names[-1])
    wanted = list(option(cfg, "feature_columns", ()) or [n for n in names if n != label])
    for f, s in zip(files, schemas, strict=True):
        missing = [c for c in [label, *wanted] if c not in s.names]
        if missing:
            raise DataError(f"parquet file {f!r} lacks columns {missing}; it has {list(s.names)}")
    ltype = schema.field(label).type
    if pa.types.is_integer(ltype):
        kind = "classification"
    elif pa.types.is_floating(ltype):
        kind = "regression"
    else:
        raise DataError(
            f"parquet file {files[0]!r}: label column {label!r} is {ltype}; it must hold "
            "integers (classes) or floats (regression values)"
        )
    types = {c: schema.field(c).type for c in wanted}
    lists = [c for c, t in types.items() if pa.types.is_list(t) or pa.types.is_fixed_size_list(t)]
    bad = [
        c
        for c, t in types.items()
        if c not in lists and not (pa.types.is_integer(t) or pa.types.is_floating(t))
    ]
    if bad or (lists and len(wanted) > 1):
        raise DataError(
            f"parquet file {files[0]!r}: feature columns must be numbers, or one list of "
            f"numbers; {', '.join(f'{c} is {types[c]}' for c in bad or lists)}"
        )
    rows = ParquetRows(files, wanted, label, bool(lists))
    info = {"source": f"parquet:{path}", "label_column": label}
    if not lists:
        info["feature_columns"] = wanted
    num_classes = None
    if kind == "classification":
        num_classes = int(option(cfg, "num_classes", 0) or 0) or _max_label(files, label) + 1
    idx = _split_by_fraction(len(rows), cfg)
    return StreamSource({s: Subset(rows, i) for s, i in idx.items()}, kind, num_classes, info)


def _max_label(files: list[str], label: str) -> int:
    """The largest class id of the label column (read alone, one file at a time)."""
    import pyarrow.parquet as pq  # heavy (Arrow): Parquet inputs only

    best = -1
    for f in files:
        best = max(best, int(np.max(pq.read_table(f, columns=[label]).column(label).to_numpy())))
    return best
