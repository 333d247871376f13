"""What training fitted to its data, kept so that raw inputs can be prepared as training did.

`make_dataset` fits a `Preprocessing` on the training split (the
standardization statistics of the inputs, the scale of regression targets)
and records what the source fixed (the shape of one example, the class
names, the vocabularies of token sets). The training loop saves it in the
workdir (`preprocessing.npz`) with the first checkpoint, and `dl.load`
restores it, so that a prediction on new raw inputs sees them exactly as
training saw its own.

    prep = dataset.preprocessing
    x = prep.standardize(raw_x)             # as make_dataset standardized the splits
    batch = prep.prepare({"x": raw_x})      # resized as the loader did, standardized, checked
    ids = prep.encode(["12+7"])             # token sets: raw strings to token ids
    values = prep.targets_in_data_units(outputs)   # regression: back to the data's units
    prep.save(path); Preprocessing.load(path)
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from dl.data.builtin import resize_images
from dl.data.files import resize_pixels
from dl.data.sequences import check_ids, encode_padded
from dl.data.vocabulary import SPECIAL_TOKENS, Vocabulary
from dl.errors import ConfigError

FILE = "preprocessing.npz"
_ARRAYS = ("x_mean", "x_std", "y_mean", "y_std")


@dataclasses.dataclass
class Preprocessing:
    """The fitted preprocessing of a dataset.

    Attributes:
      x_mean, x_std: float32 arrays broadcastable to one example's inputs
        (per feature, one number, or per channel), or None when the inputs
        are used as they are: model input = (x - x_mean) / x_std.
      y_mean, y_std: float32 arrays of a regression target's scale, or None:
        the model learns (y - y_mean) / y_std.
      input_shape: the shape of one example's `x` as the model takes it.
      info: JSON facts about the data: "standardize" (how), "kind",
        "dataset" (its name), "num_classes", "fields" (per-example shape and
        dtype of every field of the training split), "classes" (class
        names), "vocab" / "src_vocab" / "tgt_vocab" and "max_source_length"
        (token sets), "feature_columns" (CSV files), "image_size",
        "channels" and "resize" (images a loader resized: method, size and
        the raw shape it resized from, if fixed).

    >>> prep = Preprocessing(np.float32(2.0), np.float32(4.0), input_shape=(3,))
    >>> prep.standardize(np.array([[2.0, 6.0, 10.0]], np.float32)).tolist()
    [[0.0, 1.0, 2.0]]
    """

    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None
    input_shape: tuple[int, ...] | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """Model inputs from raw inputs [examples, ...], as make_dataset computes them."""
        if self.x_mean is None:
            return np.asarray(x)
        return ((np.asarray(x, np.float32) - self.x_mean) / self.x_std).astype(np.float32)

    def standardize_targets(self, y: np.ndarray) -> np.ndarray:
        """Training targets from targets in the data's units (regression)."""
        if self.y_mean is None:
            return np.asarray(y)
        return ((np.asarray(y, np.float32) - self.y_mean) / self.y_std).astype(np.float32)

    def targets_in_data_units(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs [examples, outputs] back in the data's units."""
        if self.y_mean is None:
            return np.asarray(outputs)
        flat = np.asarray(outputs, np.float32).reshape(len(outputs), -1)
        return flat * self.y_std.reshape(-1) + self.y_mean.reshape(-1)

    @property
    def tokens(self) -> bool:
        """Whether the inputs are token ids (seq2seq sources or char-LM text)."""
        return self.info.get("kind") == "sequence"

    def field_shape(self, name: str) -> tuple[tuple[int, ...], str]:
        """Per-example shape and dtype of a field of the training data."""
        fields = self.info.get("fields") or {}
        if name not in fields:
            raise ConfigError(
                f"the preprocessing records no field {name!r}; it records {sorted(fields)}"
            )
        return tuple(fields[name]["shape"]), fields[name]["dtype"]

    def raw_shape(self) -> tuple[int, ...] | None:
        """The per-example shape of raw inputs where a loader resized them to a fixed raw shape."""
        resize = self.info.get("resize") or {}
        return tuple(resize["from"]) if resize.get("from") else None

    def prepare(self, inputs: dict, fields: tuple[str, ...] = ("x",)) -> dict[str, np.ndarray]:
        """Model inputs from new raw examples, prepared as `make_dataset` prepared training's.

        Images a loader resized are resized the same way (raw 8x8 digits for a
        model trained on them at 32x32), then standardized; token sets take
        token ids or strings (`encode`); every field is checked against the
        per-example shape and dtype of the training data.

        Args:
          inputs: field -> raw array [examples, ...] (x before resizing and
            standardization; for token sets, ids or a list of strings).
          fields: the fields the model reads.

        Returns:
          field -> array [examples, ...], as the model takes it.

        Raises:
          ConfigError: a missing field, a per-example shape other than
            training's (naming both), ids outside the vocabulary, or fields
            with different numbers of examples.

        >>> prep = Preprocessing(np.float32(2.0), np.float32(4.0), input_shape=(3,))
        >>> prep.prepare({"x": [[2.0, 6.0, 10.0]]})["x"].tolist()
        [[0.0, 1.0, 2.0]]
        >>> prep.prepare({"x": [[2.0, 6.0]]})
        Traceback (most recent call last):
        dl.errors.ConfigError: inputs have shape (2,) per example, but the model was trained on (3,)
        """
        out = {}
        for name in fields:
            if name not in inputs:
                raise ConfigError(
                    f"inputs lack field {name!r}; the model takes {', '.join(fields)} "
                    f"(given: {', '.join(sorted(inputs)) or 'nothing'})"
                )
            out[name] = self._prepare_x(inputs[name]) if name == "x" else self._field(name, inputs)
        sizes = {k: len(v) for k, v in out.items()}
        if len(set(sizes.values())) > 1:
            raise ConfigError(f"input fields have different numbers of examples: {sizes}")
        return out

    def _prepare_x(self, x) -> np.ndarray:
        if self.tokens:
            return self._token_ids(x)
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ConfigError(f"inputs must be numbers, got an array of dtype {x.dtype}")
        x = x.astype(np.float32)
        if x.ndim < 1 or len(x) == 0:
            raise ConfigError(f"inputs need at least one example, got shape {x.shape}")
        shape, expected = tuple(x.shape[1:]), tuple(self.input_shape or x.shape[1:])
        resize = self.info.get("resize") or {}
        if shape != expected and resize:
            if resize.get("from") and shape == tuple(resize["from"]):
                x = resize_images(x, int(resize["size"]))  # as builtin's loader resized
            elif not resize.get("from") and len(shape) == 3 and shape[2] == expected[2]:
                x = resize_pixels(x, int(resize["size"]))  # as the image reader resized
        raw = self.raw_shape()
        also = f" (or raw images {raw}, resized as in training)" if raw else ""
        check_inputs(x, self, extra=also)
        return self.standardize(x)

    def _field(self, name: str, inputs: dict) -> np.ndarray:
        shape, dtype = self.field_shape(name)
        value = np.asarray(inputs[name])
        if tuple(value.shape[1:]) != shape or value.ndim < 1:
            raise ConfigError(
                f"input field {name!r} has shape {tuple(value.shape[1:])} per example, but the "
                f"model was trained on {shape}"
            )
        return value.astype(dtype)

    def _vocabulary(self) -> tuple[Vocabulary, bool]:
        """The vocabulary of the inputs and whether they are seq2seq sources."""
        seq2seq = "src_vocab" in self.info
        itos = self.info.get("src_vocab") if seq2seq else self.info.get("vocab")
        if itos is None:
            raise ConfigError("the preprocessing of this token set records no vocabulary")
        return Vocabulary(itos), seq2seq

    def encode(self, texts) -> np.ndarray:
        """Token ids of raw strings, as the token set encoded its own.

        Seq2seq sources become [n, max_source_length] ids (the source, EOS,
        then PAD); char-LM prompts become [n, longest prompt] ids padded at
        the end with PAD (a causal model's outputs up to a prompt's last
        character do not depend on what follows it).

        Raises:
          ConfigError: an empty string, a symbol outside the vocabulary, or a
            source longer than the training data's maximum.
        """
        vocab, seq2seq = self._vocabulary()
        texts = [str(t) for t in texts]
        symbols = {c for t in texts for c in t}
        unknown = sorted(c for c in symbols if c not in vocab.stoi or c in SPECIAL_TOKENS)
        if unknown:
            raise ConfigError(
                f"inputs hold symbols {''.join(unknown)!r} outside the model's vocabulary of "
                f"{vocab.size - len(SPECIAL_TOKENS)} symbols"
            )
        if not texts:
            raise ConfigError("no inputs: give at least one string")
        if seq2seq:
            length = int(self.info["max_source_length"])
            return encode_padded(vocab, texts, length, add_eos=True, what="source")
        return encode_padded(vocab, texts, max(len(t) for t in texts), what="prompt")

    def _token_ids(self, x) -> np.ndarray:
        if isinstance(x, list | tuple) and all(isinstance(t, str) for t in x):
            x = self.encode(list(x))  # raw strings
        x = np.asarray(x)
        if x.dtype.kind in "US":  # raw strings in an array
            x = self.encode(x.reshape(-1).tolist())
        if x.dtype.kind not in "iu" or x.ndim != 2:
            raise ConfigError(
                f"inputs of a token model are strings or int token ids [examples, length], got "
                f"an array of dtype {x.dtype} and shape {x.shape}"
            )
        vocab, seq2seq = self._vocabulary()
        if seq2seq and x.shape[1] != int(self.info["max_source_length"]):
            raise ConfigError(
                f"inputs have shape {tuple(x.shape[1:])} per example, but the model was trained "
                f"on ({int(self.info['max_source_length'])},) (source ids, EOS, then PAD)"
            )
        check_ids(x, vocab.size, "inputs")
        return x.astype(np.int32)

    def save(self, path: str) -> None:
        """Writes the preprocessing to an .npz file, atomically (a temporary file, renamed)."""
        arrays = {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}
        meta = {"input_shape": list(self.input_shape or ()), "info": self.info}
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, meta=np.asarray(json.dumps(meta)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> Preprocessing:
        """Reads what `save` wrote.

        Raises:
          ConfigError: the file is missing or not a preprocessing file.
        """
        try:
            with np.load(path) as f:
                meta = json.loads(str(f["meta"]))
                arrays = {k: np.asarray(f[k], np.float32) for k in _ARRAYS if k in f.files}
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"cannot read the preprocessing file {path!r}: {e}") from None
        shape = tuple(meta.get("input_shape") or ()) or None
        return cls(**arrays, input_shape=shape, info=meta.get("info", {}))


# torchvision's input normalization of RGB images in [0, 1] (ImageNet's statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fit_inputs(x_train: np.ndarray, how: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Standardization statistics of the training inputs: (mean, std) as float32, or Nones.

    "feature": each input feature to zero mean and unit variance (a constant
    feature is left unscaled); "global": one mean and std over all features
    (keeps the relative intensities of pixels); "imagenet": torchvision's
    fixed per-channel mean and std of RGB images in [0, 1], as models
    pretrained on ImageNet expect; "none": no standardization.
    """
    if how == "none":
        return None, None
    if how == "imagenet":
        if x_train.ndim != 4 or x_train.shape[-1] != 3:
            raise ConfigError(
                "dataset.standardize='imagenet' needs RGB images [examples, H, W, 3], got "
                f"{tuple(x_train.shape)}; set dataset.channels=3"
            )
        return np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    if how == "feature":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)  # constant features (digits' border pixels)
    else:
        mean, std = x_train.mean(), max(float(x_train.std()), 1e-6)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def fit_targets(y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scale of regression targets: (mean, std) per output as float32."""
    mean = y_train.mean(axis=0)
    std = np.maximum(y_train.std(axis=0), 1e-6)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def check_inputs(x: np.ndarray, prep: Preprocessing, what: str = "inputs", extra: str = "") -> None:
    """Refuses inputs whose per-example shape is not the one the model was trained on."""
    shape = tuple(np.shape(x)[1:])
    if prep.input_shape is not None and shape != tuple(prep.input_shape):
        raise ConfigError(
            f"{what} have shape {shape} per example, but the model was trained on "
            f"{tuple(prep.input_shape)}{extra}"
        )
