"""Classification, binary classification, regression and the perceptron rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dl.errors import ConfigError
from dl.tasks.base import ConfusionFigures, Task, named, ones


class Classification(ConfusionFigures, Task):
    """Multi-class classification: softmax cross-entropy on logits; accuracy.

    The model gives logits [batch, classes]; the softmax output layer of the
    lecture is `predict`, computed stably from the logits.
    """

    name = "classification"
    metric_directions = {"loss": "min", "accuracy": "max"}

    def __init__(self, dataset):
        super().__init__(dataset)
        if dataset.kind != "classification":
            raise ConfigError(
                f"task 'classification' needs class labels, but dataset "
                f"{dataset.name!r} is a {dataset.kind} set; use task 'regression'"
            )

    def num_outputs(self) -> int:
        return int(self.dataset.num_classes)

    def loss(self, outputs, batch):
        logits = outputs.astype(jnp.float32)  # [batch, classes]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        return ce, ones(batch)

    def metrics(self, outputs, batch):
        correct = (jnp.argmax(outputs, -1) == batch["y"]).astype(jnp.float32)
        return {"loss": self.loss(outputs, batch), "accuracy": (correct, ones(batch))}

    def predict(self, outputs):
        return jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)

    def labels(self, outputs):
        """Predicted class ids."""
        return jnp.argmax(outputs, axis=-1)

    def prediction(self, outputs, batch) -> dict:
        """probabilities [batch, classes] (softmax) and labels [batch] (class ids)."""
        return {"probabilities": self.predict(outputs), "labels": self.labels(outputs)}

    def describe(self, predictions: dict) -> dict:
        """Adds `classes`, the predicted class names, where the data names its classes."""
        return named(predictions, self.dataset.info.get("classes"))


class BinaryClassification(ConfusionFigures, Task):
    """Two classes, one sigmoid unit: binary cross-entropy on the logit; accuracy."""

    name = "binary_classification"
    metric_directions = {"loss": "min", "accuracy": "max"}

    def __init__(self, dataset):
        super().__init__(dataset)
        if dataset.kind != "classification" or dataset.num_classes > 2:
            raise ConfigError(
                f"task {self.name!r} needs labels 0/1, but dataset {dataset.name!r} has "
                f"{dataset.num_classes or 'continuous'} classes; use task 'classification'"
            )

    def num_outputs(self) -> int:
        return 1

    def _logit(self, outputs):
        return outputs[..., 0].astype(jnp.float32)  # [batch]

    def loss(self, outputs, batch):
        bce = optax.sigmoid_binary_cross_entropy(
            self._logit(outputs), batch["y"].astype(jnp.float32)
        )
        return bce, ones(batch)

    def metrics(self, outputs, batch):
        correct = ((self._logit(outputs) > 0).astype(jnp.int32) == batch["y"]).astype(jnp.float32)
        return {"loss": self.loss(outputs, batch), "accuracy": (correct, ones(batch))}

    def predict(self, outputs):
        return jax.nn.sigmoid(outputs.astype(jnp.float32))

    def labels(self, outputs):
        """Predicted class ids (0 or 1)."""
        return (outputs[..., 0] > 0).astype(jnp.int32)

    def prediction(self, outputs, batch) -> dict:
        """probabilities [batch] (of class 1, by the sigmoid) and labels [batch] (0 or 1)."""
        probabilities = jax.nn.sigmoid(self._logit(outputs))
        return {"probabilities": probabilities, "labels": self.labels(outputs)}

    def describe(self, predictions: dict) -> dict:
        """Adds `classes`, the predicted class names, where the data names its classes."""
        return named(predictions, self.dataset.info.get("classes"))


class PerceptronCriterion(BinaryClassification):
    """Rosenblatt's perceptron learning rule, as gradient descent.

    The unit outputs step(z), z = w.x + b, with step(z) = 1 for z >= 0. On a
    mistake the loss is -(2y - 1) z, else 0, so its gradient is
    -(y - step(z)) x and one SGD step of rate eta is exactly the classic
    update w <- w + eta (y - step(z)) x. With batch_size 1 this is the online
    rule that visits examples one at a time.
    """

    name = "perceptron"

    def loss(self, outputs, batch):
        z = self._logit(outputs)
        y = batch["y"].astype(jnp.float32)
        predicted = (z >= 0).astype(jnp.float32)
        mistake = jax.lax.stop_gradient((predicted != y).astype(jnp.float32))
        return mistake * -(2.0 * y - 1.0) * z, ones(batch)

    def metrics(self, outputs, batch):
        predicted = (self._logit(outputs) >= 0).astype(jnp.int32)
        correct = (predicted == batch["y"]).astype(jnp.float32)
        return {"loss": self.loss(outputs, batch), "accuracy": (correct, ones(batch))}

    def predict(self, outputs):
        return (outputs >= 0).astype(jnp.float32)

    def labels(self, outputs):
        """The unit's output step(z): 1 for z >= 0, else 0."""
        return (outputs[..., 0] >= 0).astype(jnp.int32)

    def prediction(self, outputs, batch) -> dict:
        """labels [batch]: the unit's output step(z) (a perceptron gives no probabilities)."""
        return {"labels": self.labels(outputs)}


class Regression(Task):
    """Least squares: MSE loss on standardized targets; MSE and MAE in data units."""

    name = "regression"
    metric_directions = {"loss": "min", "mse": "min", "mae": "min"}

    def __init__(self, dataset):
        super().__init__(dataset)
        if dataset.kind != "regression":
            raise ConfigError(
                f"task 'regression' needs continuous targets, but dataset "
                f"{dataset.name!r} is a {dataset.kind} set; use 'classification'"
            )
        scale = dataset.info.get("target_scale", {"mean": 0.0, "std": 1.0})
        self._std = jnp.asarray(scale["std"], jnp.float32)
        self._mean = jnp.asarray(scale["mean"], jnp.float32)

    def num_outputs(self) -> int:
        return self.dataset.target_dim

    def _errors(self, outputs, batch):
        y = batch["y"].astype(jnp.float32).reshape(outputs.shape[0], -1)
        return outputs.astype(jnp.float32) - y  # [batch, outputs]

    def loss(self, outputs, batch):
        err = self._errors(outputs, batch)
        return jnp.mean(err**2, axis=-1), ones(batch)

    def metrics(self, outputs, batch):
        err = self._errors(outputs, batch) * self._std  # in the data's own units
        return {
            "loss": self.loss(outputs, batch),
            "mse": (jnp.mean(err**2, axis=-1), ones(batch)),
            "mae": (jnp.mean(jnp.abs(err), axis=-1), ones(batch)),
        }

    def prediction(self, outputs, batch) -> dict:
        """values: the predicted targets in the data's units, [batch, *target shape]."""
        shape = self.dataset.splits["train"]["y"].shape[1:]
        flat = outputs.astype(jnp.float32).reshape(outputs.shape[0], -1)  # [batch, outputs]
        values = flat * self._std.reshape(-1) + self._mean.reshape(-1)
        return {"values": values.reshape(outputs.shape[0], *shape)}
