"""Graphs as jraph.GraphsTuple: building, batching, padding, masks, and the dense format.

jraph is archived upstream, so this module is the only one in dl that
imports it (pyproject.toml pins it); the graph layers take the segment
operations and GraphNetwork they need from here.

Graph models take batches in the dense per-graph format that graph datasets
hold (one example per graph, a leading graph axis on every field; see
dl.data.graph_checks, which validates it on the host):

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
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dl.errors import ConfigError

GraphsTuple = jraph.GraphsTuple
GraphNetwork = jraph.GraphNetwork
segment_max = jraph.segment_max
segment_softmax = jraph.segment_softmax
segment_sum = jraph.segment_sum


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


def _pack_edges(senders, receivers, n_node, n_edge, node_offsets, num_real_nodes):
    """The real edges of a dense batch packed in order, then padding edges.

    Args:
      senders, receivers: [batch, max_edges] local endpoints.
      n_node: [batch] real nodes per graph, clipped to the slots.
      n_edge: [batch] real edges per graph.
      node_offsets: [batch] packed index of each graph's first node.
      num_real_nodes: sum of n_node, the first padding node.

    Returns:
      (senders [edges], receivers [edges]) in the packed node numbering, the
      padding edges joining the first padding node to itself, and the real
      edges of each graph [batch].
    """
    senders = jnp.asarray(senders, jnp.int32)
    receivers = jnp.asarray(receivers, jnp.int32)
    batch, max_edges = senders.shape
    total_edges = batch * max_edges
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

    return packed_senders, packed_receivers, real_edges


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

    packed_senders, packed_receivers, real_edges = _pack_edges(
        senders, receivers, n_node, n_edge, node_offsets, num_real_nodes
    )
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


def self_loop_edges(senders, receivers, num_nodes: int):
    """Appends an edge i -> i for every node i.

    Returns:
      (senders, receivers), each [edges + num_nodes].
    """
    loops = jnp.arange(num_nodes, dtype=jnp.asarray(senders).dtype)
    return jnp.concatenate([senders, loops]), jnp.concatenate([receivers, loops])


__all__ = [
    "GraphNetwork",
    "GraphsTuple",
    "batch_graphs",
    "graph_masks",
    "pack_nodes",
    "pad_graphs",
    "segment_max",
    "segment_softmax",
    "segment_sum",
    "self_loop_edges",
    "single_graph",
    "to_dense_nodes",
    "to_graphs_tuple",
]
