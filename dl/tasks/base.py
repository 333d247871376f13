"""The task interface."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from dl.errors import ConfigError
from dl.reporting import figures as figs

Pair = tuple[jax.Array, jax.Array]  # per-example (numerator [batch], denominator [batch])


class Task:
    """Loss and metrics for one kind of problem.

    Subclasses set `name`, `metric_directions` (metric -> "max" or "min") and
    implement `loss` and `metrics`; both return per-example (numerator,
    denominator) pairs, so that masking, summing over batches and devices,
    and dividing once at the end gives exact means.
    """

    name = "task"
    metric_directions: dict[str, str] = {"loss": "min"}

    def __init__(self, dataset):
        self.dataset = dataset

    def num_outputs(self) -> int:
        """Width of the model's output per example that this task expects."""
        raise NotImplementedError

    # The fields of a batch that `infer` reads: what new examples must give.
    input_fields: tuple[str, ...] = ("x",)

    def inputs(self, batch) -> tuple:
        """Positional model inputs taken from a batch."""
        return (batch["x"],)

    def check_model(self, model) -> str | None:
        """Returns a message if the model's own fields do not fit the data (None: fine)."""
        return None

    def check_outputs(self, output_shape: tuple[int, ...]) -> str | None:
        """Returns a message if per-example outputs of this shape cannot be used."""
        expected = (self.num_outputs(),)
        if tuple(output_shape) != expected:
            return (
                f"the model gives outputs of shape {tuple(output_shape)} per example, but task "
                f"{self.name!r} on dataset {self.dataset.name!r} needs {expected}"
            )
        return None

    def loss(self, outputs, batch) -> Pair:
        raise NotImplementedError

    def metrics(self, outputs, batch) -> dict[str, Pair]:
        raise NotImplementedError

    def predict(self, outputs):
        """Maps raw outputs to predictions (probabilities, labels or values)."""
        return outputs

    def prediction(self, outputs, batch) -> dict:
        """What the task predicts for new examples from the model's outputs (jit-traced).

        Args:
          outputs: the model's raw outputs [batch, ...].
          batch: the examples' input fields.

        Returns:
          field -> array [batch, ...] (probabilities and labels, values in the
          data's units, boxes, ...); by default the raw outputs.
        """
        return {"outputs": outputs}

    def infer(self, model, variables, batch) -> dict:
        """Predictions for a batch of new examples: the model in inference mode, then `prediction`.

        Jit-traced; a task whose predictions are not one forward pass (free-running
        decoding) overrides it.

        Args:
          model: the flax module.
          variables: its variables (params and mutable collections).
          batch: the fields of `input_fields`, prepared as training prepared its data.

        Returns:
          `prediction`'s fields.
        """
        outputs = model.apply(variables, *self.inputs(batch), train=False)
        return self.prediction(outputs, batch)

    def describe(self, predictions: dict) -> dict:
        """Host-side fields added to numeric predictions (class names, decoded text).

        Args:
          predictions: `infer`'s fields as numpy arrays [examples, ...].

        Returns:
          The predictions, with names or strings added where the data has them.
        """
        return predictions

    # Metrics that are not means over examples (mean average precision, a
    # confusion matrix) are computed on the host from per-example
    # predictions collected over a whole split.
    has_host_metrics = False

    def predictions(self, outputs, batch) -> dict:
        """Per-example arrays [batch, ...] to collect for `host_metrics` (jit-traced)."""
        return {}

    def host_metrics(self, predictions: dict, split: dict) -> dict[str, float]:
        """Metrics of a whole split from collected predictions.

        Args:
          predictions: field -> numpy array [examples, ...] from `predictions`,
            padding removed, in the split's order.
          split: the split's own arrays (field -> [examples, ...]).

        Returns:
          metric -> value; merged with the averaged metrics.
        """
        return {}

    def figures(
        self, outputs, predictions: dict, data: dict, split: str, directory: str
    ) -> list[str]:
        """Writes the task's figures of one evaluated split; returns the files written.

        Args:
          outputs: the model's raw outputs over the split, numpy [examples, ...].
          predictions: the task's `predictions` of them, field -> [examples, ...].
          data: the split's arrays.
          split: its name, for file names and titles.
          directory: where to write (the run's workdir).

        Returns:
          The paths written (none by default).
        """
        return []

    def direction(self, metric: str) -> str:
        """ "max" or "min": which way `metric` improves (ConfigError for an unknown metric)."""
        if metric not in self.metric_directions:
            raise ConfigError(
                f"task {self.name!r} has no metric {metric!r}; its metrics: "
                f"{', '.join(sorted(self.metric_directions))}"
            )
        return self.metric_directions[metric]


def ones(batch) -> jax.Array:
    return jnp.ones(batch["y"].shape[:1], jnp.float32)


def confusion_figures(
    y_true, y_pred, num_classes: int, class_names, split: str, directory: str
) -> list[str]:
    """Writes confusion_<split>.json (counts, recall, precision) and confusion_<split>.png.

    Args:
      y_true: true class ids [n].
      y_pred: predicted class ids [n].
      num_classes: the number of classes (at least 2 rows are drawn).
      class_names: names in id order, or None for the ids.
      split: named in the file names and the title.
      directory: where to write.

    Returns:
      The two paths.
    """
    stem = os.path.join(directory, f"confusion_{split}")
    cm = figs.confusion_matrix(
        np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1), max(int(num_classes), 2)
    )
    figs.save_confusion(cm, stem, class_names, f"{split} confusion matrix")
    return [stem + ".json", stem + ".png"]


def named(predictions: dict, class_names, labels_field: str = "labels") -> dict:
    """Predictions with `classes`, the class name of each label ("" where the label is -1)."""
    if not class_names:
        return predictions
    names = np.asarray([str(n) for n in class_names] + [""])
    return {**predictions, "classes": names[np.asarray(predictions[labels_field])]}


class ConfusionFigures:
    """A task's `figures`: the confusion matrix of `self.labels(outputs)` against `y`."""

    def figures(self, outputs, predictions, data, split, directory):
        """The confusion matrix of the split (confusion_<split>.json and .png)."""
        return confusion_figures(
            data["y"],
            self.labels(outputs),
            self.dataset.num_classes or 2,
            self.dataset.info.get("classes"),
            split,
            directory,
        )
