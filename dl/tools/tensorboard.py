"""TensorBoard event files, written and read without TensorFlow or TensorBoard.

An event file is a sequence of TFRecords (length, masked CRC-32C of the
length, payload, masked CRC-32C of the payload), each payload one
`tensorflow.Event` protocol buffer. The few messages dl needs (Event,
Summary.Value with `simple_value` or `image`, SessionLog) are encoded and
decoded here directly in the protobuf wire format, so nothing beyond numpy
and Pillow is needed and TensorBoard reads the files as its own.

    writer = TensorBoardWriter(workdir)          # events.out.tfevents.* in workdir
    writer.scalars(step, "train", {"loss": 0.3, "accuracy": 0.9})   # tags train/loss, ...
    writer.image(step, "curves", "learning_curves.png")
    writer.close()
    read_scalars(workdir)  # {"train/loss": [(step, 0.3)], ...}

Restarts: every writer opens a new file that starts with a SessionLog START
event, at step s + 1 for `TensorBoardWriter(logdir, resume_step=s)` and at
step 0 otherwise. TensorBoard drops everything logged earlier at or after
that step: a run resumed from its checkpoint at step s reads as one
uninterrupted run, and a run started afresh in a used directory hides the
old run's values, as MetricWriter does with metrics.jsonl. `read_scalars`
and `read_images` apply the same rule.
"""

from __future__ import annotations

import glob
import io
import itertools
import math
import os
import socket
import struct
import time
from collections.abc import Mapping

import numpy as np

from dl.errors import ConfigError

FILE_VERSION = "brain.Event:2"
SESSION_START = 1

# Varint, 64-bit, length-delimited and 32-bit fields of the protobuf wire format.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as TFRecord files use it."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord stores after each length and payload."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(payload)) + payload


def _encode_event(
    step: int, wall_time: float, *, file_version: str = "", values=(), session_status: int = 0
) -> bytes:
    out = _key(1, _I64) + struct.pack("<d", wall_time) + _key(2, _VARINT) + _varint(int(step))
    if file_version:
        out += _len_field(3, file_version.encode())
    if values:
        out += _len_field(5, b"".join(_len_field(1, v) for v in values))
    if session_status:
        out += _len_field(7, _key(1, _VARINT) + _varint(session_status))
    return out


def _scalar_value(tag: str, value: float) -> bytes:
    return _len_field(1, tag.encode()) + _key(2, _I32) + struct.pack("<f", value)


def _image_value(tag: str, png: bytes, height: int, width: int, channels: int) -> bytes:
    image = (
        _key(1, _VARINT)
        + _varint(height)
        + _key(2, _VARINT)
        + _varint(width)
        + _key(3, _VARINT)
        + _varint(channels)
        + _len_field(4, png)
    )
    return _len_field(1, tag.encode()) + _len_field(4, image)


def _record(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def _png_size(png: bytes) -> tuple[int, int, int]:
    """(height, width, channels) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ConfigError("TensorBoard images must be PNG files")
    width, height = struct.unpack(">II", png[16:24])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(png[25], 4)
    return height, width, channels


def _png_of_array(array) -> bytes:
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ConfigError(
            f"an image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got {a.shape}"
        )
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0)
        a = np.round(a * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


_counter = itertools.count()


class TensorBoardWriter:
    """Writes scalars and images as a TensorBoard event file in `logdir`.

    Args:
      logdir: the directory; created if missing. TensorBoard shows each
        directory holding event files as one run (`tensorboard --logdir=runs`
        lists every workdir under runs/).
      resume_step: the checkpoint step a resumed run starts from: values the
        interrupted run logged after it are dropped. None for a fresh run:
        earlier values in the directory are dropped (see the module docstring).
    """

    def __init__(self, logdir: str, resume_step: int | None = None):
        try:
            os.makedirs(logdir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create TensorBoard logdir {logdir!r}: {e.strerror}") from e
        name = (
            f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_counter)}"
        )
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "wb")  # noqa: SIM115 -- held until close()
        start = 0 if resume_step is None else int(resume_step) + 1
        self._write(_encode_event(0, time.time(), file_version=FILE_VERSION))
        self._write(_encode_event(start, time.time(), session_status=SESSION_START))
        self.flush()

    def _write(self, payload: bytes) -> None:
        if self._file is None:
            raise ValueError(f"TensorBoardWriter for {self.path} is closed")
        self._file.write(_record(payload))

    def scalars(self, step: int, split: str, metrics: Mapping[str, object]) -> None:
        """Writes every numeric entry of `metrics` as the scalar `split/name` at `step`.

        Args:
          step: the training step.
          split: prefix of the tags, e.g. "train" or "validation"; "" for none.
          metrics: name -> value. Non-numeric values are skipped; NaN and
            infinities (also as the strings "nan", "inf" that metrics.jsonl
            holds) are written as such.
        """
        values = []
        for name, value in metrics.items():
            number = _as_float(value)
            if number is not None:
                tag = f"{split}/{name}" if split else str(name)
                values.append(_scalar_value(tag, number))
        if values:
            self._write(_encode_event(step, time.time(), values=values))

    def image(self, step: int, tag: str, image) -> None:
        """Writes an image: a PNG file's path, PNG bytes, or an array.

        Args:
          step: the training step.
          tag: the image's name in TensorBoard.
          image: path of a PNG file, the bytes of one, or an array [H, W],
            [H, W, 1|3|4] (uint8, or floats in [0, 1]).
        """
        if isinstance(image, str | os.PathLike):
            try:
                with open(image, "rb") as f:
                    png = f.read()
            except OSError as e:
                raise ConfigError(f"cannot read image {str(image)!r}: {e.strerror}") from e
        elif isinstance(image, bytes):
            png = image
        else:
            png = _png_of_array(image)
        height, width, channels = _png_size(png)
        self._write(
            _encode_event(
                step, time.time(), values=[_image_value(tag, png, height, width, channels)]
            )
        )

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _as_float(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity"):
        return float(value)
    return None


def parameter_norms(params, per_layer: bool = False) -> dict[str, float]:
    """L2 norms of a parameter tree, to log beside the gradient norm.

    Args:
      params: the model's parameters (a nested dict of arrays).
      per_layer: also give one norm per top-level module ("param_norm/hidden_0").

    Returns:
      {"param_norm": global norm, ...}.
    """
    import jax

    def norm(tree) -> float:
        leaves = jax.tree_util.tree_leaves(jax.device_get(tree))
        return math.sqrt(sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in leaves))

    out = {"param_norm": norm(params)}
    if per_layer and isinstance(params, Mapping):
        for name, sub in params.items():
            out[f"param_norm/{name}"] = norm(sub)
    return out


# Reading.


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of each field of one encoded message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _I64:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == _I32:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_event(payload: bytes) -> dict:
    event = {"step": 0, "wall_time": 0.0, "values": [], "session_status": 0, "file_version": ""}
    for field, _, value in _fields(payload):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = _signed64(value)
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            for vfield, _, v in _fields(value):
                if vfield == 1:
                    event["values"].append(_decode_value(v))
        elif field == 7:
            for sfield, _, s in _fields(value):
                if sfield == 1:
                    event["session_status"] = s
    return event


def _decode_value(data: bytes) -> dict:
    out = {"tag": ""}
    for field, _, value in _fields(data):
        if field == 1:
            out["tag"] = value.decode()
        elif field == 2:
            out["simple_value"] = struct.unpack("<f", value)[0]
        elif field == 4:
            image = {}
            for ifield, _, v in _fields(value):
                name = {1: "height", 2: "width", 3: "colorspace", 4: "png"}.get(ifield)
                if name:
                    image[name] = v
            out["image"] = image
    return out


def read_records(path: str):
    """The payloads of a TFRecord file, each checked against its CRCs.

    A record cut short at the end of the file (a writer still running, or
    killed) ends the iteration; a record whose checksum does not match
    raises ValueError.
    """
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if header_crc != masked_crc32c(header):
            raise ValueError(f"{path}: corrupt record header at byte {pos}")
        end = pos + 12 + length + 4
        if end > len(data):
            return
        payload = data[pos + 12 : pos + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[end - 4 : end])
        if payload_crc != masked_crc32c(payload):
            raise ValueError(f"{path}: corrupt record payload at byte {pos}")
        yield payload
        pos = end


def event_files(logdir: str) -> list[str]:
    """The event files directly in `logdir`, oldest first (as TensorBoard orders them)."""
    return sorted(glob.glob(os.path.join(glob.escape(logdir), "*tfevents*")))


def read_events(logdir: str) -> list[dict]:
    """Every event of every file in `logdir`, in file order.

    Returns:
      dicts with step, wall_time, values (each {"tag", "simple_value"} or
      {"tag", "image": {height, width, colorspace, png}}), session_status and
      file_version.
    """
    if not os.path.isdir(logdir):
        raise ConfigError(f"TensorBoard logdir {logdir!r} does not exist")
    return [_decode_event(p) for path in event_files(logdir) for p in read_records(path)]


def _purged(events: list[dict]) -> list[dict]:
    """Applies SessionLog START: drops earlier values at or after the restart step."""
    kept: list[dict] = []
    for event in events:
        if event["session_status"] == SESSION_START:
            kept = [e for e in kept if e["step"] < event["step"]]
        elif event["values"]:
            kept.append(event)
    return kept


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars logged in `logdir`.

    Returns:
      tag -> [(step, value), ...] in the order written, after dropping what a
      resumed run superseded (SessionLog START).
    """
    out: dict[str, list[tuple[int, float]]] = {}
    for event in _purged(read_events(logdir)):
        for value in event["values"]:
            if "simple_value" in value:
                out.setdefault(value["tag"], []).append((event["step"], value["simple_value"]))
    return out


def read_images(logdir: str) -> dict[str, list[tuple[int, bytes]]]:
    """The images logged in `logdir`: tag -> [(step, PNG bytes), ...]."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    for event in _purged(read_events(logdir)):
        for value in event["values"]:
            if "image" in value:
                out.setdefault(value["tag"], []).append((event["step"], value["image"]["png"]))
    return out


def export_metrics(metrics_jsonl_path: str, logdir: str, images: dict | None = None) -> int:
    """Writes a run's metrics.jsonl as a TensorBoard event file (for runs logged without one).

    Args:
      metrics_jsonl_path: the run's metrics.jsonl.
      logdir: where the event file goes (usually the run's workdir).
      images: optional tag -> PNG path, written at the last step (e.g. learning curves).

    Returns:
      The number of events written.
    """
    from dl.tools.curves import read_events as read_jsonl

    events = read_jsonl(metrics_jsonl_path)
    last = 0
    with TensorBoardWriter(logdir) as writer:
        for event in events:
            step = int(event.get("step", 0))
            last = max(last, step)
            values = {k: v for k, v in event.items() if k not in ("step", "split")}
            writer.scalars(step, str(event.get("split", "")), values)
        for tag, path in (images or {}).items():
            if os.path.isfile(path):
                writer.image(last, tag, path)
    return len(events)
