"""dl's example records in ArrayRecord shards: the layout, the writer and the reader.

A converted dataset is a directory:

    metadata.json                      fields, splits, kind, classes, statistics
    train-00000-of-00004.array_record  the training split's examples, in order
    ...
    validation-00000-of-00001.array_record
    test-00000-of-00001.array_record

Every example has the same fields with fixed shapes and dtypes (metadata
"fields"); a record is the raw bytes of its fields, one after the other, in
that order, so that a record decodes without a parser and a record of the
wrong size is caught. The splits are those of the converted source (dl's own
split, made once, by the converter), so a streamed run trains, validates and
tests on the same examples as a run of the source in memory.

`RecordShards` reads one split: random access by example index, readers
opened lazily in each process (Grain's worker processes pickle it), every
error naming the file and the record.
"""

from __future__ import annotations

import json
import os

import numpy as np

from dl.errors import ConfigError

FORMAT = "dl.records/1"
METADATA = "metadata.json"
# One record per group: random access reads one record, not a group of them.
WRITER_OPTIONS = "group_size:1"
# ArrayRecord's compression of each record: its default, or none of it.
COMPRESSION = {"default": "", "uncompressed": ",uncompressed"}


class DataError(ConfigError):
    """A data file that is missing, truncated or does not decode (exit 2)."""


def field_spec(example: dict[str, np.ndarray]) -> list[dict]:
    """The metadata "fields" of one example: name, dtype and shape of each, in record order."""
    return [
        {"name": k, "dtype": np.dtype(v.dtype).str, "shape": [int(d) for d in np.shape(v)]}
        for k, v in example.items()
    ]


def _sizes(spec: list[dict]) -> list[int]:
    return [int(np.prod(f["shape"], dtype=np.int64)) * np.dtype(f["dtype"]).itemsize for f in spec]


def encode(example: dict[str, np.ndarray], spec: list[dict]) -> bytes:
    """One example as a record: its fields' bytes in the spec's order."""
    parts = []
    for f in spec:
        value = np.asarray(example[f["name"]], dtype=np.dtype(f["dtype"]))
        if list(value.shape) != f["shape"]:
            raise ConfigError(
                f"field {f['name']!r} has shape {list(value.shape)}, the first example "
                f"{f['shape']}: every example must have the same shapes"
            )
        parts.append(value.tobytes())
    return b"".join(parts)


def decode(record: bytes, spec: list[dict], where: str) -> dict[str, np.ndarray]:
    """A record's fields as arrays; DataError naming `where` if its size is not the spec's."""
    sizes = _sizes(spec)
    if len(record) != sum(sizes):
        raise DataError(
            f"{where} does not decode: {len(record)} bytes, the metadata's fields "
            f"({', '.join(f['name'] for f in spec)}) take {sum(sizes)}"
        )
    out, offset = {}, 0
    for f, size in zip(spec, sizes, strict=True):
        raw = np.frombuffer(
            record, np.dtype(f["dtype"]), offset=offset, count=size // np.dtype(f["dtype"]).itemsize
        )
        out[f["name"]] = raw.reshape(f["shape"])
        offset += size
    return out


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.array_record"


def write_split(
    directory: str,
    split: str,
    examples,
    count: int,
    spec: list[dict],
    shards: int,
    compression: str = "default",
):
    """Writes `count` examples of `split` into `shards` ArrayRecord files of near-equal size.

    Args:
      directory: the output directory.
      split: "train", "validation" or "test".
      examples: an iterable of example dicts, in order.
      count: how many it gives.
      spec: `field_spec` of the examples.
      shards: the number of files (fewer if there are fewer examples).
      compression: a key of COMPRESSION.

    Returns:
      The metadata of the split: {"records": count, "shards": [{"file", "records"}]}.
    """
    from array_record.python.array_record_module import ArrayRecordWriter  # the stream's format

    shards = max(1, min(int(shards), count)) if count else 0
    bounds = [count * i // shards for i in range(shards + 1)] if shards else [0]
    out, it = [], iter(examples)
    for i in range(shards):
        name = shard_name(split, i, shards)
        options = WRITER_OPTIONS + COMPRESSION[compression]
        writer = ArrayRecordWriter(os.path.join(directory, name), options)
        try:
            for _ in range(bounds[i + 1] - bounds[i]):
                writer.write(encode(next(it), spec))
        finally:
            writer.close()
        out.append({"file": name, "records": bounds[i + 1] - bounds[i]})
    return {"records": int(count), "shards": out}


def write_metadata(directory: str, metadata: dict) -> None:
    """Writes metadata.json last, through a temporary file: a directory without it is no dataset."""
    path = os.path.join(directory, METADATA)
    with open(path + ".tmp", "w") as f:
        json.dump({"format": FORMAT, **metadata}, f, indent=1)
    os.replace(path + ".tmp", path)


def read_metadata(directory: str) -> dict:
    """A converted dataset's metadata.json, checked; DataError saying what is missing."""
    if not os.path.isdir(directory):
        raise DataError(
            f"array_record dataset not found: {directory!r} is not a directory (write one "
            "with python -m experiments.convert)"
        )
    path = os.path.join(directory, METADATA)
    try:
        with open(path) as f:
            metadata = json.load(f)
    except FileNotFoundError as e:
        raise DataError(
            f"{directory!r} has no {METADATA}: not a dataset written by experiments.convert, "
            "or its conversion did not finish"
        ) from e
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path!r}: {e}") from e
    if metadata.get("format") != FORMAT:
        raise DataError(f"{path!r}: format {metadata.get('format')!r}, dl reads {FORMAT!r}")
    return metadata


def _count_records(path: str, split: str) -> int:
    """The records of one shard, read from its index; DataError if it is missing or unreadable."""
    from array_record.python import array_record_module  # streamed runs only

    if not os.path.isfile(path):
        raise DataError(f"shard {path!r} of split {split!r} is missing")
    try:
        reader = array_record_module.ArrayRecordReader(path)
    except RuntimeError as e:
        raise DataError(f"cannot open shard {path!r}: {e} (truncated?)") from e
    count = reader.num_records()
    try:
        reader.close()
    except RuntimeError:  # a truncated file fails its close too; its count says so already
        pass
    return count


class RecordShards:
    """One split of a converted dataset: example index -> raw example (field -> array).

    Picklable (Grain's worker processes get a copy): the reader is opened
    lazily, in the process that reads.

    Raises (on open):
      DataError: a shard is missing, or holds another number of records than
        the metadata says (truncated, or from another conversion).
    """

    def __init__(self, directory: str, split: str, metadata: dict):
        self.directory, self.split, self.spec = directory, split, metadata["fields"]
        shards = metadata["splits"][split]["shards"]
        self.paths = [os.path.join(directory, s["file"]) for s in shards]
        self.starts = np.cumsum([0] + [int(s["records"]) for s in shards])
        self.record_size = sum(_sizes(self.spec))
        self._grain = None  # Grain's reader of the shards, opened in the process that reads
        for path, shard in zip(self.paths, shards, strict=True):
            found = _count_records(path, split)
            if found != int(shard["records"]):
                raise DataError(
                    f"shard {path!r} holds {found} records, the metadata says "
                    f"{shard['records']}: the file is truncated or from another conversion"
                )

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self):
        return {**self.__dict__, "_grain": None}

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, record index in the shard) of example `index` of the split."""
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} of a split of {len(self)}")
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        return shard, index - int(self.starts[shard])

    def _source(self):
        """Grain's reader of the split's shards (it reads a batch's records with threads)."""
        if self._grain is None:
            import grain  # heavy (2 s): streamed runs only

            self._grain = grain.sources.ArrayRecordDataSource(self.paths)
        return self._grain

    def where(self, index: int) -> str:
        """'record R of FILE': where example `index` of the split is stored."""
        shard, local = self.locate(index)
        return f"record {local} of {self.paths[shard]!r}"

    def read(self, index: int) -> bytes:
        """The record of example `index`; DataError naming its shard if it cannot be read."""
        try:
            return self._source()[index]
        except (RuntimeError, OSError) as e:
            raise DataError(f"cannot read {self.where(index)}: {e}") from e

    def decode(self, index: int, record: bytes) -> dict[str, np.ndarray]:
        """Record `index` of the split, decoded; DataError naming its shard if it does not."""
        if len(record) == self.record_size:
            return decode(record, self.spec, "")
        return decode(record, self.spec, self.where(index))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        return self.decode(index, self.read(index))

    def indexed(self) -> IndexedRecords:
        """The split's records as (index, bytes), for `decode_batch` to decode a batch at once."""
        return IndexedRecords(self)

    def decode_batch(self, items) -> dict[str, np.ndarray]:
        """(index, record) pairs -> field -> [batch, ...]: one read of the joined bytes.

        A record of another size raises the DataError `decode` gives it.
        """
        records = [r for _, r in items]
        if set(map(len, records)) != {self.record_size}:
            for index, record in items:
                self.decode(index, record)
        rows = np.frombuffer(b"".join(records), self._rows())
        return {f["name"]: np.ascontiguousarray(rows[f["name"]]) for f in self.spec}

    def _rows(self) -> np.dtype:
        """A record as one numpy structured dtype: the fields at their offsets."""
        offsets = np.cumsum([0] + _sizes(self.spec))[:-1]
        return np.dtype(
            {
                "names": [f["name"] for f in self.spec],
                "formats": [(np.dtype(f["dtype"]), tuple(f["shape"])) for f in self.spec],
                "offsets": [int(o) for o in offsets],
                "itemsize": self.record_size,
            }
        )


class IndexedRecords:
    """A split's records as (index, raw bytes) pairs, decoded a batch at a time (picklable)."""

    def __init__(self, shards: RecordShards):
        self.shards = shards

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> tuple[int, bytes]:
        index = int(index)
        return index, self.shards.read(index)
