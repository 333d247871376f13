"""Graph neural networks: GCN, GAT and graph-network blocks on jraph.

jraph is archived upstream, so this module is the only one in dl that imports
it. Everything else sees graphs in the fixed-shape dense format below, which
fits the trainer's gather-by-index batching.

Dense format (one example per graph; every field has a leading graph axis):

  nodes      [graphs, max_nodes, features]  node features; slots >= n_node are padding
  senders    [graphs, max_edges]            local node index of each edge's source
  receivers  [graphs, max_edges]            local node index of each edge's target
  n_node     [graphs]                       real nodes of each graph
  n_edge     [graphs]                       real edges of each graph
  y          [graphs] (graph labels) or [graphs, max_nodes] (node labels)

An undirected edge is stored once in each direction. `to_graphs_tuple` turns
a gathered batch [B, ...] into one jraph.GraphsTuple with static shapes: the
real nodes and edges of the B graphs packed in order, followed by one padding
graph holding the B*max_nodes + 1 - sum(n_node) padding nodes and the
B*max_edges - sum(n_edge) padding edges (the layout of jraph.pad_with_graphs),
so shapes never change between batches and padding never reaches a real node.

Every model returns raw outputs (logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dl.errors import ConfigError, unknown_name
from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.mlp import activation as activation_fn

GraphsTuple = jraph.GraphsTuple

LAYERS = ("gcn", "gat", "gn")
READOUTS = ("sum", "mean", "max")


# ----------------------------------------------------------------------------
# Validation, padding and masks (host side).
# ----------------------------------------------------------------------------


def _first_bad(values: np.ndarray, low: int, high: int) -> int | None:
    bad = np.flatnonzero((values < low) | (values >= high))
    return int(bad[0]) if bad.size else None


def check_graph(graph: GraphsTuple, name: str, expected_node_features: int | None = None) -> None:
    """Checks a (possibly batched) graph before it reaches a model.

    Args:
      graph: the graph; its nodes must be one array [nodes, features].
      name: how the error messages name the graph (e.g. a file or dataset).
      expected_node_features: the node feature width the model expects, or
        None to skip that check.

    Raises:
      ConfigError: on edge indices outside [0, nodes), edges joining two
        graphs of a batch, inconsistent counts, or a feature width mismatch.
    """
    nodes = np.asarray(graph.nodes)
    senders = np.asarray(graph.senders).reshape(-1)
    receivers = np.asarray(graph.receivers).reshape(-1)
    n_node = np.asarray(graph.n_node).reshape(-1)
    n_edge = np.asarray(graph.n_edge).reshape(-1)
    if nodes.ndim != 2:
        raise ConfigError(
            f"graph {name!r}: nodes must have shape [nodes, features], got {nodes.shape}"
        )
    num_nodes = nodes.shape[0]
    if int(n_node.sum()) != num_nodes:
        raise ConfigError(
            f"graph {name!r}: n_node sums to {int(n_node.sum())} but there are "
            f"{num_nodes} node feature rows"
        )
    if senders.shape != receivers.shape:
        raise ConfigError(f"graph {name!r}: {senders.size} senders but {receivers.size} receivers")
    if int(n_edge.sum()) != senders.size:
        raise ConfigError(
            f"graph {name!r}: n_edge sums to {int(n_edge.sum())} but there are {senders.size} edges"
        )
    for field, values in (("senders", senders), ("receivers", receivers)):
        bad = _first_bad(values, 0, num_nodes)
        if bad is not None:
            raise ConfigError(
                f"graph {name!r}: {field}[{bad}] = {int(values[bad])} is outside "
                f"the node range [0, {num_nodes})"
            )
    if n_node.size > 1:
        node_graph = np.repeat(np.arange(n_node.size), n_node)
        edge_graph = np.repeat(np.arange(n_edge.size), n_edge)
        for field, values in (("senders", senders), ("receivers", receivers)):
            bad = np.flatnonzero(node_graph[values] != edge_graph)
            if bad.size:
                i = int(bad[0])
                raise ConfigError(
                    f"graph {name!r}: edge {i} belongs to graph {edge_graph[i]} but "
                    f"{field}[{i}] = {int(values[i])} is a node of graph "
                    f"{node_graph[values[i]]}"
                )
    if expected_node_features is not None and nodes.shape[1] != expected_node_features:
        raise ConfigError(
            f"graph {name!r}: nodes have {nodes.shape[1]} features but "
            f"{expected_node_features} are expected"
        )


def check_dense_graphs(data, name: str, expected_node_features: int | None = None) -> None:
    """Checks graphs in the dense per-graph format (see the module docstring).

    Args:
      data: mapping with nodes, senders, receivers, n_node and n_edge.
      name: how the error messages name the dataset.
      expected_node_features: the node feature width the model expects, or None.

    Raises:
      ConfigError: on a missing field, inconsistent shapes, counts outside the
        slots, or a real edge whose local index is not a real node of its graph.
    """
    missing = [k for k in ("nodes", "senders", "receivers", "n_node", "n_edge") if k not in data]
    if missing:
        raise ConfigError(f"graph dataset {name!r} lacks field(s) {', '.join(missing)}")
    nodes = np.asarray(data["nodes"])
    senders, receivers = np.asarray(data["senders"]), np.asarray(data["receivers"])
    n_node, n_edge = np.asarray(data["n_node"]), np.asarray(data["n_edge"])
    if nodes.ndim != 3:
        raise ConfigError(
            f"graph dataset {name!r}: nodes must have shape "
            f"[graphs, max_nodes, features], got {nodes.shape}"
        )
    graphs, max_nodes = nodes.shape[:2]
    if senders.shape != receivers.shape or senders.ndim != 2 or senders.shape[0] != graphs:
        raise ConfigError(
            f"graph dataset {name!r}: senders {senders.shape} and receivers "
            f"{receivers.shape} must both be [graphs={graphs}, max_edges]"
        )
    if n_node.shape != (graphs,) or n_edge.shape != (graphs,):
        raise ConfigError(
            f"graph dataset {name!r}: n_node {n_node.shape} and n_edge "
            f"{n_edge.shape} must both be [graphs={graphs}]"
        )
    max_edges = senders.shape[1]
    for field, counts, high in (("n_node", n_node, max_nodes), ("n_edge", n_edge, max_edges)):
        bad = _first_bad(counts, 0, high + 1)
        if bad is not None:
            raise ConfigError(
                f"graph dataset {name!r}: graph {bad} has {field} = "
                f"{int(counts[bad])}, outside [0, {high}]"
            )
    real = np.arange(max_edges)[None, :] < n_edge[:, None]  # [graphs, max_edges]
    for field, values in (("senders", senders), ("receivers", receivers)):
        bad = np.argwhere(real & ((values < 0) | (values >= n_node[:, None])))
        if bad.size:
            g, e = (int(i) for i in bad[0])
            raise ConfigError(
                f"graph dataset {name!r}: graph {g} edge {e}: {field} = "
                f"{int(values[g, e])} is outside the graph's nodes "
                f"[0, {int(n_node[g])})"
            )
    if expected_node_features is not None and nodes.shape[2] != expected_node_features:
        raise ConfigError(
            f"graph dataset {name!r}: nodes have {nodes.shape[2]} features but "
            f"{expected_node_features} are expected"
        )


def single_graph(nodes, senders, receivers) -> GraphsTuple:
    """One graph as a GraphsTuple of numpy arrays (no edge features or globals)."""
    nodes = np.asarray(nodes)
    senders = np.asarray(senders, np.int32).reshape(-1)
    return GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=senders,
        receivers=np.asarray(receivers, np.int32).reshape(-1),
        globals=None,
        n_node=np.array([nodes.shape[0]], np.int32),
        n_edge=np.array([senders.size], np.int32),
    )


def batch_graphs(graphs: Sequence[GraphsTuple]) -> GraphsTuple:
    """Concatenates graphs into one batched GraphsTuple (numpy), renumbering the edges."""
    return jraph.batch_np(list(graphs))


def pad_graphs(
    graphs: GraphsTuple, n_node_budget: int, n_edge_budget: int, n_graph_budget: int
) -> GraphsTuple:
    """Pads a batch of graphs to fixed totals by adding one padding graph (and empty ones).

    Never truncates: the padding graph needs one node of its own, so a batch of
    N real nodes needs a node budget of at least N + 1, and a batch of G
    graphs a graph budget of at least G + 1.

    Args:
      graphs: the batched real graphs.
      n_node_budget: total nodes after padding.
      n_edge_budget: total edges after padding.
      n_graph_budget: total graphs after padding.

    Returns:
      The padded GraphsTuple (numpy arrays).

    Raises:
      ConfigError: naming the budget to raise when the batch does not fit.
    """
    n_node = np.asarray(graphs.n_node)
    needs = [
        (
            "nodes",
            int(n_node.sum()) + 1,
            n_node_budget,
            "n_node_budget",
            " (the real nodes plus one padding node)",
        ),
        ("edges", int(np.asarray(graphs.n_edge).sum()), n_edge_budget, "n_edge_budget", ""),
        (
            "graphs",
            int(n_node.size) + 1,
            n_graph_budget,
            "n_graph_budget",
            " (the real graphs plus one padding graph)",
        ),
    ]
    for what, need, budget, field, why in needs:
        if need > budget:
            raise ConfigError(
                f"batch needs {need} {what}{why} but the {what[:-1]} budget is "
                f"{budget}; raise {field} to at least {need}"
            )
    return jraph.pad_with_graphs(graphs, n_node_budget, n_edge_budget, n_graph_budget)


def graph_masks(graph: GraphsTuple) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Real-element masks of a graph padded by `pad_graphs` or `to_graphs_tuple`.

    Only meaningful for padded graphs: the trailing padding graph is what is
    masked out (an unpadded graph would lose its last graph).

    Returns:
      (node_mask [nodes], edge_mask [edges], graph_mask [graphs]), True for real ones.
    """
    return (
        jraph.get_node_padding_mask(graph),
        jraph.get_edge_padding_mask(graph),
        jraph.get_graph_padding_mask(graph),
    )


# ----------------------------------------------------------------------------
# Dense per-graph batches <-> GraphsTuple (traceable, static shapes).
# ----------------------------------------------------------------------------


def _packed_positions(valid: jax.Array) -> jax.Array:
    """Where each slot lands when real slots are packed first (in order), then padding ones."""
    flat = valid.reshape(-1)
    real_rank = jnp.cumsum(flat) - 1
    pad_rank = jnp.cumsum(~flat) - 1
    return jnp.where(flat, real_rank, jnp.sum(flat) + pad_rank)  # [slots]


def pack_nodes(values, n_node):
    """Packs dense per-graph node values into the node order of `to_graphs_tuple`.

    The real nodes of each graph are a prefix of its slots, so packing is a
    gather (packed position -> slot), far cheaper than a scatter on a CPU:
    packed position p belongs to the graph whose node range holds it, and
    positions past all real nodes are padding, filled with zeros.

    Args:
      values: [batch, max_nodes, ...] per-slot values.
      n_node: [batch] real nodes per graph.

    Returns:
      [batch * max_nodes + 1, ...] values: the real nodes of graph 0, of
      graph 1, ..., then zeros.
    """
    batch, max_nodes = values.shape[:2]
    n_node = jnp.clip(jnp.asarray(n_node, jnp.int32), 0, max_nodes)
    ends = jnp.cumsum(n_node)  # [batch]
    position = jnp.arange(batch * max_nodes + 1)
    graph = jnp.minimum(jnp.searchsorted(ends, position, side="right"), batch - 1)
    slot = graph * max_nodes + position - (ends - n_node)[graph]
    slot = jnp.where(position < ends[-1], slot, batch * max_nodes)  # out of range: filled
    flat = values.reshape((batch * max_nodes,) + values.shape[2:])
    return flat.at[slot].get(mode="fill", fill_value=0)


def to_graphs_tuple(nodes, senders, receivers, n_node, n_edge, *, pack=True) -> GraphsTuple:
    """Packs a dense batch of graphs into one padded GraphsTuple with static shapes.

    Works under jit: the output shapes depend only on the input shapes, so
    batches with different graph sizes reuse one compilation. Padding slots
    (node slots >= n_node, edge slots >= n_edge) are moved to a trailing
    padding graph with zero features, whose padding edges join its first node
    to itself; a real edge whose endpoint is not a real node of its graph is
    treated as padding too (`check_dense_graphs` reports those on the host).

    Args:
      nodes: [batch, max_nodes, features] node features.
      senders: [batch, max_edges] local source node of each edge.
      receivers: [batch, max_edges] local target node of each edge.
      n_node: [batch] real nodes per graph.
      n_edge: [batch] real edges per graph.
      pack: pack the node features too. With False the graph's nodes stay
        the dense [batch, max_nodes, features] input, for a first layer that
        packs after its linear map (`GCNLayer(...)(graph, dense_nodes=True)`):
        packing selects rows, so it commutes with a bias-free linear map, and
        packing the narrow output saves a copy of the wide input per step.

    Returns:
      A GraphsTuple with batch*max_nodes + 1 nodes, batch*max_edges edges and
      batch + 1 graphs (the last one padding); edges and globals are None.
    """
    nodes = jnp.asarray(nodes)
    batch, max_nodes = nodes.shape[:2]
    max_edges = senders.shape[1]
    total_nodes, total_edges = batch * max_nodes + 1, batch * max_edges
    n_node = jnp.clip(jnp.asarray(n_node, jnp.int32), 0, max_nodes)  # [batch]
    node_offsets = jnp.cumsum(n_node) - n_node  # [batch]
    num_real_nodes = jnp.sum(n_node)
    packed_nodes = pack_nodes(nodes, n_node) if pack else nodes  # [nodes, features]

    senders = jnp.asarray(senders, jnp.int32)
    receivers = jnp.asarray(receivers, jnp.int32)
    n_edge = jnp.clip(jnp.asarray(n_edge, jnp.int32), 0, max_edges)
    edge_valid = (
        (jnp.arange(max_edges)[None, :] < n_edge[:, None])
        & (senders >= 0)
        & (senders < n_node[:, None])
        & (receivers >= 0)
        & (receivers < n_node[:, None])
    )  # [batch, max_edges]
    global_senders = (senders + node_offsets[:, None]).reshape(-1)  # [slots]
    global_receivers = (receivers + node_offsets[:, None]).reshape(-1)  # [slots]

    def by_gather(_):
        # Every edge slot below n_edge is valid (what check_dense_graphs
        # guarantees for dl's datasets): the valid slots are a prefix of each
        # graph's slots, and packing is a gather, as for the nodes.
        ends = jnp.cumsum(n_edge)  # [batch]
        position = jnp.arange(total_edges)
        graph = jnp.minimum(jnp.searchsorted(ends, position, side="right"), batch - 1)
        slot = jnp.clip(graph * max_edges + position - (ends - n_edge)[graph], 0, total_edges - 1)
        real = position < ends[-1]
        return (
            jnp.where(real, global_senders[slot], num_real_nodes),
            jnp.where(real, global_receivers[slot], num_real_nodes),
        )

    def by_scatter(_):
        # Some edge below n_edge is invalid: move the valid ones to the front.
        edge_pos = jnp.where(edge_valid.reshape(-1), _packed_positions(edge_valid), total_edges)
        pad_endpoint = jnp.full((total_edges,), num_real_nodes, jnp.int32)
        return (
            pad_endpoint.at[edge_pos].set(global_senders, mode="drop"),
            pad_endpoint.at[edge_pos].set(global_receivers, mode="drop"),
        )

    prefix = jnp.arange(max_edges)[None, :] < n_edge[:, None]  # [batch, max_edges]
    packed_senders, packed_receivers = jax.lax.cond(
        jnp.all(edge_valid == prefix), by_gather, by_scatter, None
    )  # [edges] each
    real_edges = jnp.sum(edge_valid, axis=1, dtype=jnp.int32)  # [batch]

    return GraphsTuple(
        nodes=packed_nodes,
        edges=None,
        senders=packed_senders,
        receivers=packed_receivers,
        globals=None,
        n_node=jnp.concatenate([n_node, (total_nodes - num_real_nodes)[None]]),
        n_edge=jnp.concatenate([real_edges, (total_edges - jnp.sum(real_edges))[None]]),
    )


def to_dense_nodes(values, n_node, max_nodes: int):
    """Inverse of the node packing of `to_graphs_tuple`.

    Args:
      values: [packed_nodes, ...] per-node values of the packed graph.
      n_node: [batch] real nodes per graph.
      max_nodes: node slots per graph.

    Returns:
      [batch, max_nodes, ...] values; padding slots are zero.
    """
    n_node = jnp.clip(jnp.asarray(n_node, jnp.int32), 0, max_nodes)
    offsets = jnp.cumsum(n_node) - n_node  # [batch]
    slots = jnp.arange(max_nodes)[None, :]
    valid = slots < n_node[:, None]  # [batch, max_nodes]
    gathered = values[jnp.where(valid, offsets[:, None] + slots, 0)]  # [batch, max_nodes, ...]
    valid = valid.reshape(valid.shape + (1,) * (gathered.ndim - 2))
    return jnp.where(valid, gathered, jnp.zeros((), values.dtype))


# ----------------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------------


def self_loop_edges(senders, receivers, num_nodes: int):
    """Appends an edge i -> i for every node i.

    Returns:
      (senders, receivers), each [edges + num_nodes].
    """
    loops = jnp.arange(num_nodes, dtype=jnp.asarray(senders).dtype)
    return jnp.concatenate([senders, loops]), jnp.concatenate([receivers, loops])


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
        degree = jraph.segment_sum(
            jnp.ones(receivers.shape, h.dtype), receivers, num_nodes
        )  # [nodes]
        inv_sqrt = jax.lax.rsqrt(jnp.maximum(degree, 1.0))[:, None]  # [nodes, 1]
        h = jraph.segment_sum((h * inv_sqrt)[senders], receivers, num_nodes) * inv_sqrt
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
        alpha = jraph.segment_softmax(logits, receivers, num_nodes)  # [edges, heads]
        self.sow("intermediates", "attention", alpha)
        h = jraph.segment_sum(
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
    applied with jraph.GraphNetwork and returns the graph with new edges,
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

        block = jraph.GraphNetwork(
            update_edge_fn=update_edges,
            update_node_fn=update_nodes,
            update_global_fn=update_globals,
            aggregate_edges_for_nodes_fn=jraph.segment_sum,
            aggregate_nodes_for_globals_fn=jraph.segment_sum,
            aggregate_edges_for_globals_fn=jraph.segment_sum,
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
        pooled = jraph.segment_max(nodes, graph_ids, num_graphs)
        pooled = jnp.where(counts > 0, pooled, jnp.zeros((), nodes.dtype))
    else:
        pooled = jraph.segment_sum(nodes, graph_ids, num_graphs)
        if kind == "mean":
            pooled = pooled / jnp.maximum(counts, 1)
    if padded:
        pooled = jnp.where(graph_masks(graph)[2][:, None], pooled, jnp.zeros((), pooled.dtype))
    return pooled  # [graphs, features]


# ----------------------------------------------------------------------------
# Models on the dense format.
# ----------------------------------------------------------------------------


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

    @nn.compact
    def __call__(self, graph: GraphsTuple, *, train: bool) -> GraphsTuple:
        """Applies the layers to a graph from `to_graphs_tuple(..., pack=False)`.

        The first GCN or GAT layer packs the nodes after its linear map;
        otherwise they are packed first. The returned graph is packed.
        """
        act = activation_fn(self.activation)
        dense = True
        for i, width in enumerate(self.hidden_sizes):
            width = int(width)
            if self.layer == "gcn":
                graph = GCNLayer(width, dtype=self.dtype, name=f"gcn_{i}")(graph, dense_nodes=dense)
            elif self.layer == "gat":
                graph = GATLayer(
                    width, num_heads=self.num_heads, concat=True, dtype=self.dtype, name=f"gat_{i}"
                )(graph, dense_nodes=dense)
            else:
                if dense:
                    graph = graph._replace(nodes=pack_nodes(graph.nodes, graph.n_node[:-1]))
                graph = GraphNetworkBlock(
                    width,
                    width,
                    width,
                    hidden_sizes=(width,),
                    activation=self.activation,
                    dtype=self.dtype,
                    name=f"gn_{i}",
                )(graph)
                graph = graph._replace(edges=act(graph.edges), globals=act(graph.globals))
            nodes = act(graph.nodes)
            if self.dropout_rate > 0:
                nodes = Dropout(self.dropout_rate, deterministic=not train)(nodes)
            graph = graph._replace(nodes=nodes)
            dense = False
        if dense:
            graph = graph._replace(nodes=pack_nodes(graph.nodes, graph.n_node[:-1]))
        return graph


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
    """

    layer: str = "gcn"
    hidden_sizes: Sequence[int] = (64, 64)
    num_heads: int = 4
    readout: str = "mean"
    activation: str = "relu"
    num_outputs: int = 2
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes, senders, receivers, n_node, n_edge, *, train: bool = False):
        _check_layer(self.layer)
        if self.readout not in READOUTS:
            raise unknown_name("readout", self.readout, READOUTS)
        batch = nodes.shape[0]
        graph = to_graphs_tuple(
            nodes.astype(self.dtype), senders, receivers, n_node, n_edge, pack=False
        )
        graph = _GraphStack(
            self.layer,
            tuple(self.hidden_sizes),
            self.num_heads,
            self.activation,
            self.dropout_rate,
            self.dtype,
            name="graph_layers",
        )(graph, train=train)
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
    """

    layer: str = "gcn"
    hidden_sizes: Sequence[int] = (16,)
    num_heads: int = 4
    activation: str = "relu"
    num_outputs: int = 2
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes, senders, receivers, n_node, n_edge, *, train: bool = False):
        _check_layer(self.layer)
        max_nodes = nodes.shape[1]
        graph = to_graphs_tuple(
            nodes.astype(self.dtype), senders, receivers, n_node, n_edge, pack=False
        )
        graph = _GraphStack(
            self.layer,
            tuple(self.hidden_sizes),
            self.num_heads,
            self.activation,
            self.dropout_rate,
            self.dtype,
            name="graph_layers",
        )(graph, train=train)
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


__all__ = [
    "LAYERS",
    "READOUTS",
    "GATLayer",
    "GCNLayer",
    "GraphClassifier",
    "GraphNetworkBlock",
    "GraphsTuple",
    "NodeClassifier",
    "batch_graphs",
    "check_dense_graphs",
    "check_graph",
    "graph_masks",
    "pad_graphs",
    "readout",
    "self_loop_edges",
    "single_graph",
    "to_dense_nodes",
    "pack_nodes",
    "to_graphs_tuple",
]
