"""Host-side validation of graphs, before they reach a model.

Graphs come in two layouts. The concatenated one (`check_graph`) is
jraph.GraphsTuple's: the nodes of all graphs in one array and edges that
index into it. The dense per-graph one (`check_dense_graphs`) is what graph
datasets hold and graph models take, one example per graph with a leading
graph axis on every field:

  nodes      [graphs, max_nodes, features]  node features; slots >= n_node are padding
  senders    [graphs, max_edges]            local node index of each edge's source
  receivers  [graphs, max_edges]            local node index of each edge's target
  n_node     [graphs]                       real nodes of each graph
  n_edge     [graphs]                       real edges of each graph

Both work on numpy arrays and need no graph library.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dl.errors import ConfigError


def _first_bad(values: np.ndarray, low: int, high: int) -> int | None:
    bad = np.flatnonzero((values < low) | (values >= high))
    return int(bad[0]) if bad.size else None


def _field(graph, name: str):
    return graph[name] if isinstance(graph, Mapping) else getattr(graph, name)


def check_graph(graph, name: str, expected_node_features: int | None = None) -> None:
    """Checks a (possibly batched) graph in the concatenated layout before it reaches a model.

    The layout is that of a jraph.GraphsTuple: the nodes of all graphs in one
    array, edges indexing into it, and per-graph counts.

    Args:
      graph: a mapping or any object (a jraph.GraphsTuple, say) with the
        fields nodes [nodes, features], senders [edges], receivers [edges],
        n_node [graphs] and n_edge [graphs], as arrays or array-likes.
      name: how the error messages name the graph (e.g. a file or dataset).
      expected_node_features: the node feature width the model expects, or
        None to skip that check.

    Raises:
      ConfigError: on edge indices outside [0, nodes), edges joining two
        graphs of a batch, inconsistent counts, or a feature width mismatch.
    """
    nodes = np.asarray(_field(graph, "nodes"))
    senders = np.asarray(_field(graph, "senders")).reshape(-1)
    receivers = np.asarray(_field(graph, "receivers")).reshape(-1)
    n_node = np.asarray(_field(graph, "n_node")).reshape(-1)
    n_edge = np.asarray(_field(graph, "n_edge")).reshape(-1)
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
    """Checks graphs in the dense per-graph format (the module docstring).

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


__all__ = ["check_dense_graphs", "check_graph"]
