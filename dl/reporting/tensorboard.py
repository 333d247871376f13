"""TensorBoard event files of a run, written with tensorboardX (no TensorFlow needed).

    writer = TensorBoardWriter(workdir)      # events.out.tfevents.* in workdir
    writer.scalars(step, "train", {"loss": 0.3, "accuracy": 0.9})   # tags train/loss, ...
    writer.image(step, "learning_curves", "learning_curves.png")
    writer.close()

Restarts: every writer opens a new file that starts with a SessionLog START
event (tensorboardX's `purge_step`), at step s + 1 for
`TensorBoardWriter(logdir, resume_step=s)` and at step 0 otherwise.
TensorBoard's event reader drops everything logged earlier at or after that
step, so a run resumed from its checkpoint at step s reads as one
uninterrupted run, and a run started afresh in a used directory hides the
old run's values, as `MetricWriter` does with metrics.jsonl.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

from dl.errors import ConfigError

# At most this many seconds pass before a value written reaches the file
# (tensorboardX writes from a background thread).
FLUSH_SECONDS = 10

_counter = itertools.count()


def _filename_suffix() -> str:
    # tensorboardX names a file by the second it was opened and the host: two
    # writers opened in the same second on one directory would share a file.
    # The nanoseconds come first so that files sort in the order they were
    # opened, which is the order TensorBoard applies their restarts in.
    return f".{time.time_ns()}.{os.getpid()}.{next(_counter)}"


class TensorBoardWriter:
    """Writes scalars and images as a TensorBoard event file in `logdir`.

    Args:
      logdir: the directory; created if missing. TensorBoard shows each
        directory holding event files as one run (`tensorboard --logdir=runs`
        lists every workdir under runs/).
      resume_step: the checkpoint step a resumed run starts from: values the
        interrupted run logged after it are dropped. None for a fresh run:
        earlier values in the directory are dropped (see the module docstring).

    Example:
      >>> import tempfile
      >>> with TensorBoardWriter(tempfile.mkdtemp()) as writer:
      ...     writer.scalars(10, "train", {"loss": 0.5, "optimizer": "adam"})
    """

    def __init__(self, logdir: str, resume_step: int | None = None):
        try:
            os.makedirs(logdir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create TensorBoard logdir {logdir!r}: {e.strerror}") from e
        self.logdir = logdir
        self._writer = SummaryWriter(
            logdir,
            purge_step=0 if resume_step is None else int(resume_step) + 1,
            flush_secs=FLUSH_SECONDS,
            filename_suffix=_filename_suffix(),
        )

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
                values.append(Summary.Value(tag=tag, simple_value=number))
        if values:
            # One event for all of them; add_scalar would also log a warning per NaN.
            self._add(Summary(value=values), step)

    def image(self, step: int, tag: str, image) -> None:
        """Writes an image: a PNG file's path, PNG bytes, or an array.

        Args:
          step: the training step.
          tag: the image's name in TensorBoard.
          image: path of a PNG file, the bytes of one, or an array [H, W],
            [H, W, 1|3|4] (uint8, or floats in [0, 1]).

        Raises:
          ConfigError: the file cannot be read or is not a PNG image, or the
            array has another shape.
        """
        if isinstance(image, str | os.PathLike):
            try:
                with open(image, "rb") as f:
                    image = f.read()
            except OSError as e:
                raise ConfigError(f"cannot read image {str(image)!r}: {e.strerror}") from e
        png = image if isinstance(image, bytes) else _png_of_array(image)
        height, width, channels = _png_size(png)
        encoded = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=encoded)])
        # add_image would decode and re-encode the PNG; the file's bytes go in as they are.
        self._add(summary, step)

    def _add(self, summary: Summary, step: int) -> None:
        if self._writer.file_writer is None:
            raise ValueError(f"the TensorBoardWriter of {self.logdir} is closed")
        self._writer.file_writer.add_summary(summary, int(step))

    def close(self) -> None:
        """Writes out everything pending and closes the file.

        On a full disk or an I/O error the events written so far stay as they
        are and the writer is shut down anyway (metrics.jsonl, written
        first, reports the error); tensorboardX would otherwise retry at exit
        and print its traceback.
        """
        try:
            self._writer.close()
        except OSError:
            for file_writer in (self._writer.all_writers or {}).values():
                events = file_writer.event_writer
                if events._worker is not None:
                    events._worker.stop()
                events._closed = True  # tensorboardX's exit hook then does nothing
            self._writer.file_writer = self._writer.all_writers = None

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


def _png_size(png: bytes) -> tuple[int, int, int]:
    """(height, width, channels) of a PNG image."""
    try:
        with Image.open(io.BytesIO(png)) as im:
            if im.format != "PNG":
                raise ConfigError(f"TensorBoard images must be PNG files, got {im.format}")
            channels = {"P": 4 if "transparency" in im.info else 3}.get(im.mode)
            return im.height, im.width, channels or len(im.getbands())
    except UnidentifiedImageError:
        raise ConfigError("TensorBoard images must be PNG files") from None


def _png_of_array(array) -> bytes:
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
