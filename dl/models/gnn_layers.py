"""Graph layers on a jraph.GraphsTuple: GCN, GAT, graph-network blocks and the readout.

Each layer maps a graph to a graph with new node features (a graph-network
block also new edges and globals) and applies no final activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.errors import unknown_name
from dl.models.dense import Dense
from dl.models.graph_batch import (
    GraphNetwork,
    GraphsTuple,
    graph_masks,
    pack_nodes,
    segment_max,
    segment_softmax,
    segment_sum,
    self_loop_edges,
)
from dl.models.mlp import activation as activation_fn

READOUTS = ("sum", "mean", "max")


class GCNLayer(nn.Module):
    """Graph convolution (Kipf & Welling): H' = D^-1/2 (A + I) D^-1/2 H W + b.

    A[i, j] = 1 for each edge j -> i, and D is the diagonal of the row sums
    of A + I (each node's incoming edges plus its self-loop). Degrees come
    from the graph itself, so padding edges, which only join padding nodes,
    never change a real node. Returns the graph with new node features
    [nodes, features] and no activation.

    Attributes:
      features: output width.
      use_bias: add b after the aggregation.
      add_self_loops: use A + I (the paper); False uses A with degrees of A.
      dtype: compute dtype.
    """

    features: int
    use_bias: bool = True
    add_self_loops: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, graph: GraphsTuple, *, dense_nodes: bool = False) -> GraphsTuple:
        """Applies the layer.

        Args:
          graph: the graph, nodes [nodes, in_features].
          dense_nodes: the nodes are still the dense [batch, max_nodes,
            in_features] slots of `to_graphs_tuple(..., pack=False)`; they are
            packed after the linear map.
        """
        h = Dense(self.features, use_bias=False, dtype=self.dtype, name="linear")(
            graph.nodes
        )  # [nodes, features]
        if dense_nodes:
            h = pack_nodes(h, graph.n_node[:-1])
        num_nodes = h.shape[0]
        senders, receivers = graph.senders, graph.receivers
        if self.add_self_loops:
            senders, receivers = self_loop_edges(senders, receivers, num_nodes)
        degree = segment_sum(jnp.ones(receivers.shape, h.dtype), receivers, num_nodes)  # [nodes]
        inv_sqrt = jax.lax.rsqrt(jnp.maximum(degree, 1.0))[:, None]  # [nodes, 1]
        h = segment_sum((h * inv_sqrt)[senders], receivers, num_nodes) * inv_sqrt
        if self.use_bias:
            h = h + self.param("bias", nn.initializers.zeros, (self.features,)).astype(h.dtype)
        return graph._replace(nodes=h)


class GATLayer(nn.Module):
    """Multi-head graph attention (Velickovic et al.).

    For each head, with z = W h, the score of edge j -> i is
    e_ij = LeakyReLU(a_dst . z_i + a_src . z_j); alpha_ij is the softmax of
    e_ij over the incoming edges of i (self-loop included), and
    h'_i = sum_j alpha_ij z_j. The attention weights alpha [edges + nodes,
    heads] (graph edges first, then the self-loops when added) are sown as
    ('intermediates', 'attention'). No activation is applied.

    Attributes:
      features: output width per head.
      num_heads: number of independent heads.
      concat: concatenate the heads ([nodes, heads * features]); False averages
        them ([nodes, features]), as the paper's output layer does.
      negative_slope: slope of the LeakyReLU on the scores.
      add_self_loops: let each node attend to itself.
      use_bias: add a bias after combining the heads.
      dtype: compute dtype.
    """

    features: int
    num_heads: int = 4
    concat: bool = True
    negative_slope: float = 0.2
    add_self_loops: bool = True
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, graph: GraphsTuple, *, dense_nodes: bool = False) -> GraphsTuple:
        """Applies the layer (`dense_nodes` as for `GCNLayer`)."""
        heads, width = self.num_heads, self.features
        z = Dense(heads * width, use_bias=False, dtype=self.dtype, name="linear")(graph.nodes)
        if dense_nodes:
            z = pack_nodes(z, graph.n_node[:-1])
        num_nodes = z.shape[0]
        z = z.reshape(num_nodes, heads, width)
        init = nn.initializers.glorot_uniform(in_axis=-1, out_axis=-2)
        a_src = self.param("attention_src", init, (heads, width)).astype(z.dtype)
        a_dst = self.param("attention_dst", init, (heads, width)).astype(z.dtype)
        senders, receivers = graph.senders, graph.receivers
        if self.add_self_loops:
            senders, receivers = self_loop_edges(senders, receivers, num_nodes)
        score_src = jnp.sum(z * a_src, axis=-1)  # [nodes, heads]
        score_dst = jnp.sum(z * a_dst, axis=-1)  # [nodes, heads]
        logits = nn.leaky_relu(
            score_src[senders] + score_dst[receivers], self.negative_slope
        )  # [edges, heads]
        alpha = segment_softmax(logits, receivers, num_nodes)  # [edges, heads]
        self.sow("intermediates", "attention", alpha)
        h = segment_sum(
            alpha[..., None] * z[senders], receivers, num_nodes
        )  # [nodes, heads, features]
        h = h.reshape(num_nodes, heads * width) if self.concat else jnp.mean(h, axis=1)
        if self.use_bias:
            h = h + self.param("bias", nn.initializers.zeros, (h.shape[-1],)).astype(h.dtype)
        return graph._replace(nodes=h)


class _UpdateMLP(nn.Module):
    """Dense -> activation per hidden size, then a linear Dense."""

    hidden_sizes: Sequence[int]
    features: int
    activation: str = "relu"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, *parts):
        act = activation_fn(self.activation)
        h = jnp.concatenate([p.astype(self.dtype) for p in parts if p is not None], axis=-1)
        for i, width in enumerate(self.hidden_sizes):
            h = act(Dense(int(width), dtype=self.dtype, name=f"hidden_{i}")(h))
        return Dense(self.features, dtype=self.dtype, name="output")(h)


class GraphNetworkBlock(nn.Module):
    """A full graph-network block (Battaglia et al., 2018, algorithm 1).

    Edges:   e'_k = phi_e(e_k, v_sender, v_receiver, u)
    Nodes:   v'_i = phi_v(v_i, sum of e'_k over edges into i, u)
    Globals: u'   = phi_u(sum of v' in the graph, sum of e' in the graph, u)

    Each phi is an MLP over the concatenation of the parts that exist (a graph
    without edge features or globals leaves those parts out). The block is
    applied with GraphNetwork and returns the graph with new edges,
    nodes and globals, without a final activation.

    Attributes:
      edge_features: width of e'.
      node_features: width of v'.
      global_features: width of u'.
      hidden_sizes: hidden widths of each update MLP; () for linear updates.
      activation: hidden non-linearity of the MLPs.
      dtype: compute dtype.
    """

    edge_features: int
    node_features: int
    global_features: int
    hidden_sizes: Sequence[int] = ()
    activation: str = "relu"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, graph: GraphsTuple) -> GraphsTuple:
        mlp = dict(
            hidden_sizes=tuple(self.hidden_sizes), activation=self.activation, dtype=self.dtype
        )
        edge_mlp = _UpdateMLP(features=self.edge_features, name="edge_mlp", **mlp)
        node_mlp = _UpdateMLP(features=self.node_features, name="node_mlp", **mlp)
        global_mlp = _UpdateMLP(features=self.global_features, name="global_mlp", **mlp)

        def update_edges(edges, sent, received, globals_):
            return edge_mlp(edges, sent, received, globals_)  # [edges, edge_features]

        def update_nodes(nodes, _sent_edges, received_edges, globals_):
            return node_mlp(nodes, received_edges, globals_)  # [nodes, node_features]

        def update_globals(node_sums, edge_sums, globals_):
            return global_mlp(node_sums, edge_sums, globals_)  # [graphs, global_features]

        block = GraphNetwork(
            update_edge_fn=update_edges,
            update_node_fn=update_nodes,
            update_global_fn=update_globals,
            aggregate_edges_for_nodes_fn=segment_sum,
            aggregate_nodes_for_globals_fn=segment_sum,
            aggregate_edges_for_globals_fn=segment_sum,
        )
        return block(graph)


def readout(graph: GraphsTuple, kind: str, padded: bool = True) -> jax.Array:
    """Pools node features into one vector per graph.

    Args:
      graph: graph whose nodes are [nodes, features].
      kind: "sum", "mean" or "max". Graphs without nodes give zeros.
      padded: the graph comes from `pad_graphs` or `to_graphs_tuple`; the
        rows of its padding graphs are set to zero.

    Returns:
      [graphs, features] pooled features.
    """
    if kind not in READOUTS:
        raise unknown_name("readout", kind, READOUTS)
    nodes = graph.nodes
    num_nodes, num_graphs = nodes.shape[0], graph.n_node.shape[0]
    graph_ids = jnp.repeat(
        jnp.arange(num_graphs), graph.n_node, axis=0, total_repeat_length=num_nodes
    )  # [nodes]
    counts = graph.n_node.astype(nodes.dtype)[:, None]  # [graphs, 1]
    if kind == "max":
        pooled = segment_max(nodes, graph_ids, num_graphs)
        pooled = jnp.where(counts > 0, pooled, jnp.zeros((), nodes.dtype))
    else:
        pooled = segment_sum(nodes, graph_ids, num_graphs)
        if kind == "mean":
            pooled = pooled / jnp.maximum(counts, 1)
    if padded:
        pooled = jnp.where(graph_masks(graph)[2][:, None], pooled, jnp.zeros((), pooled.dtype))
    return pooled  # [graphs, features]


__all__ = ["READOUTS", "GATLayer", "GCNLayer", "GraphNetworkBlock", "readout"]
