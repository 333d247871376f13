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
    values = prep.targets_in_data_units(outputs)   # regression: back to the data's units
    prep.save(path); Preprocessing.load(path)
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

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
        "classes" (class names), "vocab" / "src_vocab" / "tgt_vocab" and
        "max_source_length" (token sets), "feature_columns" (CSV files),
        "image_size" and "channels" (images).

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


def check_inputs(x: np.ndarray, prep: Preprocessing, what: str = "inputs") -> None:
    """Refuses inputs whose per-example shape is not the one the model was trained on."""
    shape = tuple(np.shape(x)[1:])
    if prep.input_shape is not None and shape != tuple(prep.input_shape):
        raise ConfigError(
            f"{what} have shape {shape} per example, but the model was trained on "
            f"{tuple(prep.input_shape)}"
        )
