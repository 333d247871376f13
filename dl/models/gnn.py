"""Graph neural networks on the dense per-graph format: graph- and node-level models.

Both models take a batch in the dense format of dl.models.graph_batch
(nodes, senders, receivers, n_node, n_edge with a leading graph axis), pack
it into one padded jraph.GraphsTuple (`to_graphs_tuple`), run the layers of
dl.models.gnn_layers and return raw outputs (logits). Padding slots never
change an output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dl.errors import unknown_name
from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.gnn_layers import READOUTS, GATLayer, GCNLayer, GraphNetworkBlock, readout
from dl.models.graph_batch import GraphsTuple, pack_nodes, to_dense_nodes, to_graphs_tuple
from dl.models.mlp import activation as activation_fn
from dl.models.remat import rematerialize

LAYERS = ("gcn", "gat", "gn")


def _check_layer(kind: str) -> None:
    if kind not in LAYERS:
        raise unknown_name("layer", kind, LAYERS)


class _GraphStack(nn.Module):
    """Hidden graph layers, each followed by the activation and dropout."""

    layer: str
    hidden_sizes: Sequence[int]
    num_heads: int
    activation: str
    dropout_rate: float
    dtype: Any
    remat: str = "off"

    @nn.compact
    def __call__(self, graph: GraphsTuple, *, train: bool) -> GraphsTuple:
        """Applies the layers to a graph from `to_graphs_tuple(..., pack=False)`.

        The first GCN or GAT layer packs the nodes after its linear map;
        otherwise they are packed first. The returned graph is packed.
        """
        act = activation_fn(self.activation)

        def stage(layer, graph, dense: bool):  # one graph layer and its activation
            if self.layer in ("gcn", "gat"):
                graph = layer(graph, dense_nodes=dense)
            else:
                if dense:
                    graph = graph._replace(nodes=pack_nodes(graph.nodes, graph.n_node[:-1]))
                graph = layer(graph)
                graph = graph._replace(edges=act(graph.edges), globals=act(graph.globals))
            return graph._replace(nodes=act(graph.nodes))

        stage = rematerialize(stage, self.remat, static_argnums=(2,))  # (layer, graph, dense)
        dense = True
        for i, width in enumerate(self.hidden_sizes):
            graph = stage(self._layer(i, int(width)), graph, dense)
            if self.dropout_rate > 0:
                nodes = Dropout(self.dropout_rate, deterministic=not train)(graph.nodes)
                graph = graph._replace(nodes=nodes)
            dense = False
        if dense:
            graph = graph._replace(nodes=pack_nodes(graph.nodes, graph.n_node[:-1]))
        return graph

    def _layer(self, i: int, width: int) -> nn.Module:
        """The i-th hidden graph layer (parameters under gcn_i, gat_i or gn_i)."""
        if self.layer == "gcn":
            return GCNLayer(width, dtype=self.dtype, name=f"gcn_{i}")
        if self.layer == "gat":
            return GATLayer(
                width, num_heads=self.num_heads, concat=True, dtype=self.dtype, name=f"gat_{i}"
            )
        return GraphNetworkBlock(
            width,
            width,
            width,
            hidden_sizes=(width,),
            activation=self.activation,
            dtype=self.dtype,
            name=f"gn_{i}",
        )


def _encode(module, nodes, senders, receivers, n_node, n_edge, train: bool):
    """The graph layers of a classifier over a dense batch (called inside its __call__).

    The stack is created in `module`'s scope, as its submodule "graph_layers".
    """
    graph = to_graphs_tuple(
        nodes.astype(module.dtype), senders, receivers, n_node, n_edge, pack=False
    )
    stack = _GraphStack(
        module.layer,
        tuple(module.hidden_sizes),
        module.num_heads,
        module.activation,
        module.dropout_rate,
        module.dtype,
        remat=module.remat,
        name="graph_layers",
    )
    return stack(graph, train=train)


class GraphClassifier(nn.Module):
    """Graph-level classification or regression: graph layers, a readout, a Dense head.

    Takes a batch in the dense format (see the module docstring) and returns
    logits [batch, num_outputs], one row per graph. Padding slots never change
    an output.

    Attributes:
      layer: "gcn", "gat" or "gn" (graph-network blocks with one-hidden-layer MLPs).
      hidden_sizes: width of each graph layer; for "gat" the width per head
        (a layer outputs num_heads * width features).
      num_heads: attention heads of "gat" layers.
      readout: "mean", "sum" or "max" pooling over each graph's nodes.
      activation: non-linearity after each graph layer.
      num_outputs: width of the output.
      dropout_rate: dropout on node features after each graph layer, in training only.
      dtype: compute dtype; parameters stay float32.
      remat: "off", or a policy of `dl.models.remat.POLICIES`: each hidden graph
        layer (and its activation) is recomputed in the backward pass.
    """

    layer: str = "gcn"
    hidden_sizes: Sequence[int] = (64, 64)
    num_heads: int = 4
    readout: str = "mean"
    activation: str = "relu"
    num_outputs: int = 2
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, nodes, senders, receivers, n_node, n_edge, *, train: bool = False):
        _check_layer(self.layer)
        if self.readout not in READOUTS:
            raise unknown_name("readout", self.readout, READOUTS)
        batch = nodes.shape[0]
        graph = _encode(self, nodes, senders, receivers, n_node, n_edge, train)
        pooled = readout(graph, self.readout)[:batch]  # [batch, features]
        return Dense(self.num_outputs, dtype=self.dtype, name="output")(pooled)


class NodeClassifier(nn.Module):
    """Per-node classification or regression with graph layers.

    With layer="gcn" and hidden_sizes=(16,) this is the two-layer GCN of Kipf &
    Welling; with "gat" the output layer averages its heads as in the GAT
    paper; with "gn" the output is a graph-network block whose node update
    has num_outputs features. Returns per-node logits [batch, max_nodes,
    num_outputs] in the dense slots; padding slots are zero.

    Attributes:
      layer: "gcn", "gat" or "gn".
      hidden_sizes: width of each hidden graph layer; for "gat" the width per head.
      num_heads: attention heads of "gat" layers.
      activation: non-linearity after each hidden layer.
      num_outputs: width of the per-node output.
      dropout_rate: dropout on node features after each hidden layer, in training only.
      dtype: compute dtype; parameters stay float32.
      remat: "off", or a policy of `dl.models.remat.POLICIES`: each hidden graph
        layer (and its activation) is recomputed in the backward pass.
    """

    layer: str = "gcn"
    hidden_sizes: Sequence[int] = (16,)
    num_heads: int = 4
    activation: str = "relu"
    num_outputs: int = 2
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, nodes, senders, receivers, n_node, n_edge, *, train: bool = False):
        _check_layer(self.layer)
        max_nodes = nodes.shape[1]
        graph = _encode(self, nodes, senders, receivers, n_node, n_edge, train)
        if self.layer == "gcn":
            graph = GCNLayer(self.num_outputs, dtype=self.dtype, name="output")(graph)
        elif self.layer == "gat":
            graph = GATLayer(
                self.num_outputs,
                num_heads=self.num_heads,
                concat=False,
                dtype=self.dtype,
                name="output",
            )(graph)
        else:
            width = int(self.hidden_sizes[-1]) if len(self.hidden_sizes) else self.num_outputs
            graph = GraphNetworkBlock(
                width,
                self.num_outputs,
                width,
                hidden_sizes=(width,),
                activation=self.activation,
                dtype=self.dtype,
                name="output",
            )(graph)
        return to_dense_nodes(graph.nodes, n_node, max_nodes)  # [batch, max_nodes, outputs]


__all__ = ["LAYERS", "GraphClassifier", "NodeClassifier"]
