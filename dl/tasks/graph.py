"""Graph classification and semi-supervised node classification.

Batches hold graphs in the dense per-graph format of dl.data.graph_sources:
node features `x` [batch, max_nodes, features], `senders` / `receivers`
[batch, max_edges], `n_node` / `n_edge` [batch]; the model takes them in
that order. Padding (node slots >= n_node, edge slots >= n_edge, and padded
examples of a batch, which the loop masks) never changes a loss or a metric:
graph models ignore padding slots, and the node task counts a node only when
it is a real node with a nonzero `label_mask`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl.errors import ConfigError
from dl.tasks.base import Task, confusion_figures, named
from dl.tasks.supervised import Classification

GRAPH_INPUTS = ("x", "senders", "receivers", "n_node", "n_edge")


def _check_graph_fields(task: str, dataset) -> None:
    fields = dataset.splits["train"]
    missing = [k for k in GRAPH_INPUTS if k not in fields]
    if missing:
        raise ConfigError(
            f"task {task!r} needs graphs (fields {', '.join(GRAPH_INPUTS)}), but dataset "
            f"{dataset.name!r} lacks {', '.join(missing)}; graph datasets: karate, "
            "digits_grid, graphs_synthetic, graph_npz:PATH"
        )
    if fields["x"].ndim != 3:
        raise ConfigError(
            f"task {task!r}: dataset {dataset.name!r} has node features x of shape "
            f"{fields['x'].shape[1:]} per graph; expected [max_nodes, features]"
        )


def graph_inputs(batch) -> tuple:
    """(nodes, senders, receivers, n_node, n_edge) of a batch of dense graphs."""
    return tuple(batch[k] for k in GRAPH_INPUTS)


class GraphClassification(Classification):
    """One label per graph: softmax cross-entropy on the graph's logits; accuracy.

    The model gives logits [batch, classes], one row per graph.
    """

    name = "graph_classification"
    input_fields = GRAPH_INPUTS

    def __init__(self, dataset):
        super().__init__(dataset)
        _check_graph_fields(self.name, dataset)
        if dataset.splits["train"]["y"].ndim != 1:
            raise ConfigError(
                f"task {self.name!r} needs one label per graph, but dataset {dataset.name!r} "
                f"has labels of shape {dataset.splits['train']['y'].shape[1:]} per graph; "
                "use task 'node_classification'"
            )

    def inputs(self, batch) -> tuple:
        return graph_inputs(batch)


class NodeClassification(Task):
    """One label per node, semi-supervised: only nodes marked in `label_mask` count.

    The model gives logits [batch, max_nodes, classes]. A node counts when it
    is real (slot < n_node) and its `label_mask` is nonzero (all real nodes
    when the dataset has no `label_mask`). Each graph contributes the pair
    (sum of the per-node values, number of counted nodes), so the loop's sums
    give the exact mean over counted nodes, whatever the batching.
    """

    name = "node_classification"
    metric_directions = {"loss": "min", "accuracy": "max"}
    input_fields = GRAPH_INPUTS

    def __init__(self, dataset):
        super().__init__(dataset)
        if dataset.kind != "classification":
            raise ConfigError(
                f"task {self.name!r} needs class labels, but dataset {dataset.name!r} is a "
                f"{dataset.kind} set"
            )
        _check_graph_fields(self.name, dataset)
        fields = dataset.splits["train"]
        if fields["y"].shape[1:] != fields["x"].shape[1:2]:
            raise ConfigError(
                f"task {self.name!r} needs one label per node slot, y [graphs, "
                f"{fields['x'].shape[1]}], but dataset {dataset.name!r} has y of shape "
                f"{fields['y'].shape[1:]} per graph; use task 'graph_classification'"
            )
        self.max_nodes = int(fields["x"].shape[1])

    def num_outputs(self) -> int:
        return int(self.dataset.num_classes)

    def inputs(self, batch) -> tuple:
        return graph_inputs(batch)

    def check_outputs(self, output_shape: tuple[int, ...]) -> str | None:
        expected = (self.max_nodes, self.num_outputs())
        if tuple(output_shape) != expected:
            return (
                f"the model gives outputs of shape {tuple(output_shape)} per graph, but task "
                f"{self.name!r} on dataset {self.dataset.name!r} needs per-node logits "
                f"{expected}; use a node model (node_classifier, gcn_node, gat_node)"
            )
        return None

    def node_weights(self, batch) -> jax.Array:
        """[batch, max_nodes] 1 for each node that counts, else 0."""
        max_nodes = batch["y"].shape[1]
        real = jnp.arange(max_nodes)[None, :] < batch["n_node"][:, None]
        weights = real.astype(jnp.float32)
        if "label_mask" in batch:
            weights = weights * (batch["label_mask"] != 0).astype(jnp.float32)
        return weights

    def _labels(self, batch, weights):
        classes = self.num_outputs()
        return jnp.where(weights > 0, jnp.clip(batch["y"], 0, classes - 1), 0)

    def loss(self, outputs, batch):
        weights = self.node_weights(batch)  # [batch, max_nodes]
        logits = outputs.astype(jnp.float32)  # [batch, max_nodes, classes]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, self._labels(batch, weights))
        return jnp.sum(ce * weights, axis=1), jnp.sum(weights, axis=1)

    def metrics(self, outputs, batch):
        weights = self.node_weights(batch)
        correct = (jnp.argmax(outputs, -1) == self._labels(batch, weights)).astype(jnp.float32)
        return {
            "loss": self.loss(outputs, batch),
            "accuracy": (jnp.sum(correct * weights, axis=1), jnp.sum(weights, axis=1)),
        }

    def predict(self, outputs):
        return jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)

    def node_labels(self, outputs):
        """Predicted class id of every node slot [batch, max_nodes]."""
        return jnp.argmax(outputs, axis=-1)

    def prediction(self, outputs, batch) -> dict:
        """probabilities [batch, max_nodes, classes] and labels [batch, max_nodes] of every
        node; labels are -1 in padding slots (slot >= n_node)."""
        real = jnp.arange(outputs.shape[1])[None, :] < batch["n_node"][:, None]
        labels = jnp.where(real, self.node_labels(outputs), -1)
        return {"probabilities": self.predict(outputs), "labels": labels.astype(jnp.int32)}

    def describe(self, predictions: dict) -> dict:
        """Adds `classes`, each node's predicted class name ("" in padding slots)."""
        return named(predictions, self.dataset.info.get("classes"))

    def figures(self, outputs, predictions, data, split, directory):
        """The confusion matrix over the nodes the split counts (its label_mask)."""
        counted = np.asarray(self.node_weights(data)) > 0  # [graphs, max_nodes]
        return confusion_figures(
            np.asarray(data["y"])[counted],
            np.asarray(self.node_labels(outputs))[counted],
            self.num_outputs(),
            self.dataset.info.get("classes"),
            split,
            directory,
        )


__all__ = ["GRAPH_INPUTS", "GraphClassification", "NodeClassification", "graph_inputs"]
