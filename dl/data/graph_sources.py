"""Graph datasets as `Source`s: karate club, image grids, synthetic sets and user files.

Graphs use the dense per-graph format of dl.data.graph_checks, one example per
graph, with the node features in `x` (the field every dataset has):

  x          [examples, max_nodes, features]  node features; slots >= n_node are padding
  senders    [examples, max_edges]            local source node of each edge
  receivers  [examples, max_edges]            local target node of each edge
  n_node     [examples]                       real nodes of each graph
  n_edge     [examples]                       real edges of each graph
  y          [examples] graph labels, or [examples, max_nodes] node labels

Every example has the same slot counts (the padding budget), so batches have
static shapes and nothing recompiles between them. Each source validates its
graphs with dl.data.graph_checks.check_dense_graphs when it loads them: an edge
outside its graph's nodes is an error naming the graph and the edge.

Node classification on one graph (karate club, a user edge list) gives three
examples, the same graph three times, one per split, each with its own
`label_mask` [max_nodes]: the labelled nodes for train, the held-out nodes
for validation and test. The node task weights each node by `label_mask`, so
it never needs to know which split it is evaluating, and the split indices
are fixed (`Source.fixed_splits`).

Node features are scaled by the sources themselves. The pipeline's
standardization, which treats every node slot as a feature of its own, would
mix the slots of unrelated graphs (and zero every feature of a one-graph
training split), so graph sources set `dataset.standardize` to 'none', with
a warning when the config asked for another value.

Dataset fields read here (all optional): `validation_fraction`, `split_seed`
(node splits), `labelled_per_class` and `label_seed` (karate), `connectivity`
and `positions` (digits_grid), `num_graphs`, `seed`, `kind`, `min_nodes`,
`max_nodes`, `p_in`, `p_out` (graphs_synthetic), `max_nodes`, `max_edges`,
`node_features`, `undirected` (graph_npz).
"""

from __future__ import annotations

import numpy as np
from absl import logging

import dl.data.graphs as graphs
import dl.data.random_graphs as random_graphs
from dl.config import option
from dl.data.graph_checks import check_dense_graphs, check_graph
from dl.data.source import Source, read_npz
from dl.data.splits import split_indices
from dl.errors import ConfigError

GRAPH_FIELDS = ("senders", "receivers", "n_node", "n_edge")


def _force_no_standardization(cfg, name: str) -> None:
    """Sets `cfg.standardize` to 'none' (warning if it was another value).

    The pipeline standardizes every slot of x on its own; for graphs that
    mixes the node slots of unrelated graphs and, for a one-graph training
    split, maps every feature to zero.
    """
    how = option(cfg, "standardize", "feature")
    if how in ("none", False) or cfg is None:
        return
    logging.warning(
        "dataset %r holds graphs: dataset.standardize=%r is replaced by 'none' (the "
        "source scales its node features itself)",
        name,
        how,
    )
    value = False if isinstance(how, bool) else "none"
    if hasattr(cfg, "unlocked"):
        with cfg.unlocked():
            cfg["standardize"] = value
    else:
        cfg["standardize"] = value


def _checked(data: dict, name: str, cfg) -> dict:
    """Validates dense graphs (nodes under "nodes") and returns them with nodes renamed to x."""
    width = int(option(cfg, "node_features", 0) or 0)
    check_dense_graphs(data, name, width or None)
    out = {k: v for k, v in data.items() if k != "nodes"}
    out["x"] = np.asarray(data["nodes"], np.float32)
    return out


def _graph_classification(data: dict, name: str, cfg, info: dict) -> Source:
    data = _checked(data, name, cfg)
    y = np.asarray(data["y"])
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ConfigError(
            f"graph dataset {name!r}: graph labels y must be non-negative integers "
            f"[graphs], got {y.dtype} {y.shape}"
        )
    n_node, n_edge = data["n_node"], data["n_edge"]
    info = {
        **info,
        "graphs": int(len(y)),
        "node_slots": int(data["x"].shape[1]),
        "edge_slots": int(data["senders"].shape[1]),
        "nodes_per_graph": [int(n_node.min()), int(n_node.max())],
        "edges_per_graph": [int(n_edge.min()), int(n_edge.max())],
    }
    return Source(
        data["x"],
        y.astype(np.int32),
        "classification",
        int(y.max()) + 1,
        info=info,
        extra={k: np.asarray(data[k], np.int32) for k in GRAPH_FIELDS},
    )


def _node_split_masks(y, evaluated, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Splits the evaluated nodes into validation and test masks [nodes].

    `dataset.validation_fraction` of them (stratified by label, drawn with
    `dataset.split_seed`) validate and the rest test; with a fraction of 0,
    validation and test are the same nodes.
    """
    held = np.flatnonzero(evaluated > 0)
    test = evaluated.astype(np.float32)
    fraction = float(option(cfg, "validation_fraction", 0.0))
    if fraction <= 0 or held.size == 0:
        return test, test.copy()
    parts = split_indices(held.size, fraction, 0.0, int(option(cfg, "split_seed", 0)), y[held])
    validation = np.zeros_like(test)
    validation[held[parts["validation"]]] = 1.0
    test = np.zeros_like(test)
    test[held[parts["train"]]] = 1.0
    return validation, test


def _split_all_nodes(y: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test node masks [nodes] by the dataset's fractions (stratified)."""
    parts = split_indices(
        y.size,
        float(option(cfg, "validation_fraction", 0.15)),
        float(option(cfg, "test_fraction", 0.2)),
        int(option(cfg, "split_seed", 0)),
        y,
    )
    masks = []
    for split in ("train", "validation", "test"):
        mask = np.zeros(y.size, np.float32)
        mask[parts[split]] = 1.0
        masks.append(mask)
    return tuple(masks)


def _node_classification(
    example: dict, name: str, cfg, info: dict, split_all: bool = False
) -> Source:
    """One graph (a `single_graph_example` dict) -> three examples, one per split.

    The training nodes are the example's `label_mask` and the evaluated ones
    its `eval_mask` (split by `_node_split_masks`); with `split_all`, every
    node is labelled and the nodes are split by the dataset's fractions.
    """
    if "y" not in example:
        raise ConfigError(
            f"graph {name!r} has no node labels y; node classification needs y [nodes]"
        )
    y = np.asarray(example["y"])[0]  # [nodes]
    train_mask = np.asarray(example["label_mask"], np.float32)[0]  # [nodes]
    evaluated = np.asarray(example["eval_mask"], np.float32)[0] * (train_mask == 0)
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"graph {name!r}: node labels y must be integers, got {y.dtype}")
    used = (train_mask > 0) | (evaluated > 0)
    if np.any(y[used] < 0):
        bad = int(np.flatnonzero(used & (y < 0))[0])
        raise ConfigError(
            f"graph {name!r}: node {bad} is labelled or evaluated but its label is {int(y[bad])}"
        )
    if not np.any(train_mask > 0):
        raise ConfigError(f"graph {name!r}: no node is labelled for training (label_mask)")
    y = np.where(used, y, 0).astype(np.int32)
    if split_all:
        train_mask, validation, test = _split_all_nodes(y, cfg)
    else:
        validation, test = _node_split_masks(y, evaluated, cfg)
    data = _checked(example, name, cfg)
    copies = {k: np.repeat(data[k], 3, axis=0) for k in ("x", *GRAPH_FIELDS)}
    info = {
        **info,
        "nodes": int(data["n_node"][0]),
        "edges": int(data["n_edge"][0]),
        "labelled_nodes": (
            np.flatnonzero(train_mask).tolist() if train_mask.sum() <= 64 else int(train_mask.sum())
        ),
        "validation_nodes": int(validation.sum()),
        "test_nodes": int(test.sum()),
        "splits": "one graph; train/validation/test differ only in label_mask",
    }
    return Source(
        copies["x"],
        np.repeat(y[None], 3, axis=0),
        "classification",
        int(y[used].max()) + 1,
        fixed_splits={"train": np.array([0]), "validation": np.array([1]), "test": np.array([2])},
        info=info,
        extra={
            **{k: copies[k].astype(np.int32) for k in GRAPH_FIELDS},
            "label_mask": np.stack([train_mask, validation, test]).astype(np.float32),
        },
    )


def load_karate(cfg) -> Source:
    """Zachary's karate club: semi-supervised node classification on 34 members.

    Fields: labelled_per_class (each faction's leader plus that many - 1
    members drawn with label_seed), validation_fraction and split_seed (see
    the module docstring).
    """
    _force_no_standardization(cfg, "karate")
    example = graphs.karate_club(
        labelled_per_class=int(option(cfg, "labelled_per_class", 1)),
        seed=int(option(cfg, "label_seed", 0)),
    )
    info = {"source": "networkx.karate_club_graph", "node_features": "one-hot identity"}
    return _node_classification(example, "karate", cfg, info)


def load_digits_grid(cfg) -> Source:
    """scikit-learn's 8x8 digits as 64-node pixel-grid graphs (graph classification).

    Node features: the intensity in [0, 1] and, with `positions`, the pixel's
    row and column scaled to [0, 1]. `connectivity`: 4 or 8 neighbours.
    """
    _force_no_standardization(cfg, "digits_grid")
    connectivity = int(option(cfg, "connectivity", 4))
    positions = bool(option(cfg, "positions", True))
    data = graphs.digits_graphs(connectivity, positions)
    info = {"source": "sklearn.load_digits as grid graphs", "connectivity": connectivity}
    return _graph_classification(data, "digits_grid", cfg, info)


def load_graphs_synthetic(cfg) -> Source:
    """Synthetic graph classification from a seed (dl.data.random_graphs.synthetic_graphs)."""
    _force_no_standardization(cfg, "graphs_synthetic")
    kind = str(option(cfg, "kind", "sbm"))
    data = random_graphs.synthetic_graphs(
        int(option(cfg, "num_graphs", 1000)),
        int(option(cfg, "seed", 0)),
        kind=kind,
        min_nodes=int(option(cfg, "min_nodes", 8)),
        max_nodes=int(option(cfg, "max_nodes", 16)),
        p_in=float(option(cfg, "p_in", 0.7)),
        p_out=float(option(cfg, "p_out", 0.05)),
    )
    info = {"source": "synthetic graphs", "kind": kind, "node_features": "one-hot degree"}
    return _graph_classification(data, "graphs_synthetic", cfg, info)


def load_citation_synthetic(cfg) -> Source:
    """A Cora-sized synthetic citation network (dl.data.random_graphs.citation_graph).

    Fields: num_nodes, num_edges (undirected), node_features, num_classes,
    homophily, labelled_per_class, num_evaluated, seed; validation_fraction
    of the evaluated papers validate and the rest test (1/3 gives Kipf &
    Welling's 500 validation and 1000 test papers).
    """
    _force_no_standardization(cfg, "citation_synthetic")
    example = random_graphs.citation_graph(
        num_nodes=int(option(cfg, "num_nodes", 2708)),
        num_undirected_edges=int(option(cfg, "num_edges", 5278)),
        num_features=int(option(cfg, "node_features", 0) or 1433),
        num_classes=int(option(cfg, "num_classes", 7)),
        homophily=float(option(cfg, "homophily", 0.8)),
        labelled_per_class=int(option(cfg, "labelled_per_class", 20)),
        num_evaluated=int(option(cfg, "num_evaluated", 1500)),
        seed=int(option(cfg, "seed", 0)),
    )
    info = {"source": "synthetic Cora-sized citation graph", "node_features": "bag of words"}
    return _node_classification(example, "citation_synthetic", cfg, info)


def _budget(counts: np.ndarray, field: str, what: str, name: str, cfg) -> int:
    """Slots per graph for `what`: dataset.<field>, or the largest graph's count when 0."""
    largest = int(counts.max()) if counts.size else 0
    budget = int(option(cfg, field, 0) or 0)
    if budget <= 0:
        return max(largest, 1)
    if largest > budget:
        g = int(np.argmax(counts))
        raise ConfigError(
            f"graph file {name!r}: graph {g} has {largest} {what} but the padding budget "
            f"dataset.{field} is {budget}; raise dataset.{field} to at least {largest} "
            "(graphs are never truncated)"
        )
    return budget


def _check_edges_in_graph(senders, receivers, n_node, n_edge, num_nodes: int, path: str) -> None:
    """Names the graph and edge of the first endpoint outside its own graph's nodes."""
    if int(n_node.sum()) != num_nodes or int(n_edge.sum()) != senders.size:
        raise ConfigError(
            f"graph file {path!r}: n_node sums to {int(n_node.sum())} and n_edge to "
            f"{int(n_edge.sum())}, but there are {num_nodes} node rows and {senders.size} "
            f"senders ({receivers.size} receivers)"
        )
    graph = np.repeat(np.arange(n_edge.size), n_edge)  # [edges] graph of each edge
    first = (np.cumsum(n_node) - n_node)[graph]  # [edges] the graph's first node
    last = first + n_node[graph]
    for field, values in (("senders", senders), ("receivers", receivers)):
        bad = np.flatnonzero((values < first) | (values >= last))
        if bad.size:
            i = int(bad[0])
            g = int(graph[i])
            local = i - int((np.cumsum(n_edge) - n_edge)[g])
            raise ConfigError(
                f"graph file {path!r}: graph {g}, edge {local} ({field}[{i}] in the file) "
                f"= {int(values[i])} is outside the graph's nodes "
                f"[{int(first[i])}, {int(last[i])})"
            )


def _pack_graphs(arrays: dict, path: str, cfg) -> dict:
    """Batched graphs (GraphsTuple layout: edges index the concatenated nodes) -> dense."""
    missing = [
        k for k in ("nodes", "senders", "receivers", "n_node", "n_edge", "y") if k not in arrays
    ]
    if missing:
        raise ConfigError(
            f"graph file {path!r} lacks arrays {missing}; a graph-classification file "
            f"holds nodes, senders, receivers, n_node, n_edge and y; it has {sorted(arrays)}"
        )
    nodes = arrays["nodes"].astype(np.float32)
    if nodes.ndim == 1:
        nodes = nodes[:, None]
    for field in ("senders", "receivers", "n_node", "n_edge"):
        if not np.issubdtype(arrays[field].dtype, np.integer):
            raise ConfigError(
                f"graph file {path!r}: {field} must be integers, got {arrays[field].dtype}"
            )
    senders = arrays["senders"].reshape(-1).astype(np.int64)
    receivers = arrays["receivers"].reshape(-1).astype(np.int64)
    n_node = arrays["n_node"].reshape(-1).astype(np.int64)
    n_edge = arrays["n_edge"].reshape(-1).astype(np.int64)
    if np.any(n_node < 0) or np.any(n_edge < 0):
        raise ConfigError(f"graph file {path!r}: n_node and n_edge must be non-negative")
    _check_edges_in_graph(senders, receivers, n_node, n_edge, nodes.shape[0], path)
    graph = {
        "nodes": nodes,
        "senders": senders,
        "receivers": receivers,
        "n_node": n_node,
        "n_edge": n_edge,
    }
    check_graph(graph, path)
    y = arrays["y"].reshape(-1)
    if y.shape != n_node.shape:
        raise ConfigError(
            f"graph file {path!r}: y has {y.size} labels but the file holds {n_node.size} graphs"
        )
    max_nodes = _budget(n_node, "max_nodes", "nodes", path, cfg)
    max_edges = _budget(n_edge, "max_edges", "edges", path, cfg)
    count = n_node.size
    dense_nodes = np.zeros((count, max_nodes, nodes.shape[1]), np.float32)
    dense_senders = np.zeros((count, max_edges), np.int32)
    dense_receivers = np.zeros((count, max_edges), np.int32)
    node_start = np.cumsum(n_node) - n_node
    edge_start = np.cumsum(n_edge) - n_edge
    for g in range(count):
        n, e, first = int(n_node[g]), int(n_edge[g]), int(node_start[g])
        edges = slice(int(edge_start[g]), int(edge_start[g]) + e)
        dense_nodes[g, :n] = nodes[first : first + n]
        dense_senders[g, :e] = senders[edges] - first
        dense_receivers[g, :e] = receivers[edges] - first
    return {
        "nodes": dense_nodes,
        "senders": dense_senders,
        "receivers": dense_receivers,
        "n_node": n_node.astype(np.int32),
        "n_edge": n_edge.astype(np.int32),
        "y": y,
    }


def load_graph_npz(path: str, cfg=None) -> Source:
    """Graphs of your own from an `.npz` file: `dataset.name='graph_npz:PATH'`.

    Two layouts, told apart by the array `n_node`:

    - One graph for node classification (no `n_node`): `nodes` [nodes,
      features] (or [nodes]), `senders` and `receivers` [edges] node ids,
      labels `y` [nodes] and optionally `label_mask` [nodes] (nonzero =
      labelled for training; the other nodes are held out for validation and
      test as for karate). Without `label_mask` the nodes are split by
      `dataset.validation_fraction` / `test_fraction` (stratified,
      `split_seed`). `dataset.undirected=True` adds the reverse of every edge.
    - Many graphs for graph classification: the batched GraphsTuple layout,
      `nodes` [total nodes, features], `senders` / `receivers` [total edges]
      indexing the concatenated nodes, `n_node` / `n_edge` [graphs] and
      labels `y` [graphs].

    `dataset.max_nodes` / `dataset.max_edges` set the slots per graph (0: the
    largest graph's count; a single graph is checked against them but not
    padded); a graph over the budget is an error naming the field to raise.
    `dataset.node_features` (0: any) is the node feature width the model was
    built for.

    Args:
      path: the file.
      cfg: the dataset config.

    Returns:
      The Source.
    """
    _force_no_standardization(cfg, f"graph_npz:{path}")
    arrays = read_npz(path, "graph_npz")
    info = {"file": path}
    if "n_node" in arrays:
        return _graph_classification(_pack_graphs(arrays, path, cfg), path, cfg, info)
    example = graphs.load_edge_list_npz(path, undirected=bool(option(cfg, "undirected", False)))
    _budget(example["n_node"], "max_nodes", "nodes", path, cfg)
    _budget(example["n_edge"], "max_edges", "edges", path, cfg)
    split_all = "label_mask" not in arrays
    return _node_classification(example, path, cfg, info, split_all=split_all)


__all__ = [
    "GRAPH_FIELDS",
    "load_digits_grid",
    "load_graph_npz",
    "load_graphs_synthetic",
    "load_karate",
]
