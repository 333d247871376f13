"""Seeded random graphs: synthetic graph-classification sets and a Cora-sized citation graph.

Both return the dense per-graph format of dl/data/graphs.py.
"""

from __future__ import annotations

import numpy as np

from dl.data.graphs import both_directions, single_graph_example
from dl.errors import ConfigError, unknown_name

SYNTHETIC_KINDS = ("sbm", "cycles_vs_trees")
DEGREE_FEATURES = 8  # synthetic node features: one-hot degree, the last slot for >= 7


def _sbm_graph(rng, num_nodes: int, communities: int, p_in: float, p_out: float) -> np.ndarray:
    block = np.arange(num_nodes) * communities // num_nodes  # [nodes] community of each node
    same = block[:, None] == block[None, :]
    upper = np.triu(rng.random((num_nodes, num_nodes)) < np.where(same, p_in, p_out), k=1)
    return np.argwhere(upper)  # [pairs, 2]


def _random_tree(rng, num_nodes: int) -> np.ndarray:
    parents = [rng.integers(0, i) for i in range(1, num_nodes)]
    return np.array([[p, i] for i, p in enumerate(parents, start=1)], np.int64).reshape(-1, 2)


def _cycle(num_nodes: int) -> np.ndarray:
    ids = np.arange(num_nodes)
    return np.stack([ids, np.roll(ids, -1)], 1)


def synthetic_graphs(
    num_graphs: int,
    seed: int,
    kind: str = "sbm",
    min_nodes: int = 8,
    max_nodes: int = 16,
    p_in: float = 0.7,
    p_out: float = 0.05,
) -> dict[str, np.ndarray]:
    """Graph-classification sets with variable node counts, balanced classes.

    kind "sbm": stochastic block models, class 0 with 2 communities and class
    1 with 4 (edge probability p_in inside a community, p_out across).
    kind "cycles_vs_trees": class 0 a single cycle, class 1 a random tree
    (each node attached to a random earlier one). Node ids are shuffled, so
    their order carries no label. Node features are the one-hot degree
    [DEGREE_FEATURES], the last slot standing for every degree >= 7.

    Args:
      num_graphs: examples to generate.
      seed: seed of the generator.
      kind: "sbm" or "cycles_vs_trees".
      min_nodes: fewest nodes of a graph (at least 3).
      max_nodes: most nodes of a graph, and the node slots of every example.
      p_in: sbm edge probability within a community.
      p_out: sbm edge probability between communities.

    Returns:
      nodes [graphs, max_nodes, DEGREE_FEATURES], senders / receivers [graphs, max_edges]
      (max_edges: the most directed edges of any generated graph), n_node,
      n_edge, y [graphs] int32.
    """
    if kind not in SYNTHETIC_KINDS:
        raise unknown_name("synthetic graph kind", kind, SYNTHETIC_KINDS)
    if not 3 <= min_nodes <= max_nodes:
        raise ConfigError(
            f"need 3 <= min_nodes <= max_nodes, got min_nodes={min_nodes}, max_nodes={max_nodes}"
        )
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(num_graphs) % 2).astype(np.int32)
    graphs = []
    for label in y:
        n = int(rng.integers(min_nodes, max_nodes + 1))
        if kind == "sbm":
            pairs = _sbm_graph(rng, n, 2 if label == 0 else 4, p_in, p_out)
        else:
            pairs = _cycle(n) if label == 0 else _random_tree(rng, n)
        relabel = rng.permutation(n)
        graphs.append((n, both_directions(relabel[pairs])))
    max_edges = max([s.size for _, (s, _) in graphs] + [1])
    nodes = np.zeros((num_graphs, max_nodes, DEGREE_FEATURES), np.float32)
    senders = np.zeros((num_graphs, max_edges), np.int32)
    receivers = np.zeros((num_graphs, max_edges), np.int32)
    n_node = np.zeros(num_graphs, np.int32)
    n_edge = np.zeros(num_graphs, np.int32)
    for g, (n, (s, r)) in enumerate(graphs):
        degree = np.minimum(np.bincount(r, minlength=n), DEGREE_FEATURES - 1)
        nodes[g, np.arange(n), degree] = 1.0
        senders[g, : s.size], receivers[g, : r.size] = s, r
        n_node[g], n_edge[g] = n, s.size
    return {
        "nodes": nodes,
        "senders": senders,
        "receivers": receivers,
        "n_node": n_node,
        "n_edge": n_edge,
        "y": y,
    }


def citation_graph(
    num_nodes: int = 2708,
    num_undirected_edges: int = 5278,
    num_features: int = 1433,
    num_classes: int = 7,
    words_per_node: int = 18,
    homophily: float = 0.8,
    topic_fraction: float = 0.6,
    labelled_per_class: int = 20,
    num_evaluated: int = 1500,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A synthetic citation network shaped like Cora (Sen et al. 2008), from a seed.

    The defaults give Cora's sizes: 2708 papers, 5278 undirected citations
    (10556 directed edges), 1433-word binary bag-of-words features and 7
    topics. Each paper has a topic; a citation joins two papers of the same
    topic with probability `homophily`, otherwise two papers drawn at random
    (Cora's edge homophily is about 0.81). Each paper uses `words_per_node`
    distinct words, a `topic_fraction` of them drawn from its topic's block of
    the vocabulary and the rest from the whole vocabulary. Features are
    row-normalised, as in Kipf & Welling's GCN set-up, and the split follows
    theirs: `labelled_per_class` training papers per topic, and
    `num_evaluated` other papers for validation and test.

    Returns:
      One example as `single_graph_example` builds it (nodes [1, N, F], both
      directions of every citation, y, label_mask, eval_mask).
    """
    if num_nodes < 2 or num_classes < 1 or num_features < num_classes:
        raise ConfigError(
            f"citation graph needs num_nodes >= 2 and num_features >= num_classes >= 1, got "
            f"num_nodes={num_nodes}, num_features={num_features}, num_classes={num_classes}"
        )
    if not 0 < words_per_node <= num_features:
        raise ConfigError(
            f"words_per_node must be in [1, num_features={num_features}], got {words_per_node}"
        )
    if labelled_per_class * num_classes + num_evaluated > num_nodes:
        raise ConfigError(
            f"labelled_per_class * num_classes + num_evaluated = "
            f"{labelled_per_class * num_classes + num_evaluated} exceeds num_nodes={num_nodes}"
        )
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, num_nodes).astype(np.int32)
    members = [np.flatnonzero(y == c) for c in range(num_classes)]
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < num_undirected_edges:
        a = int(rng.integers(num_nodes))
        if rng.random() < homophily and members[y[a]].size > 1:
            b = int(rng.choice(members[y[a]]))
        else:
            b = int(rng.integers(num_nodes))
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    senders, receivers = both_directions(np.array(sorted(pairs)))

    block = num_features // num_classes
    nodes = np.zeros((num_nodes, num_features), np.float32)
    topical = int(round(topic_fraction * words_per_node))
    for i in range(num_nodes):
        own = rng.choice(block, min(topical, block), replace=False) + y[i] * block
        rest = rng.choice(num_features, words_per_node, replace=False)
        words = np.unique(np.concatenate([own, rest]))[:words_per_node]
        nodes[i, words] = 1.0
    nodes /= nodes.sum(axis=1, keepdims=True)

    label_mask = np.zeros(num_nodes, np.float32)
    for c in range(num_classes):
        label_mask[rng.choice(members[c], min(labelled_per_class, members[c].size), False)] = 1
    others = np.flatnonzero(label_mask == 0)
    eval_mask = np.zeros(num_nodes, np.float32)
    eval_mask[rng.choice(others, num_evaluated, replace=False)] = 1.0
    return single_graph_example(nodes, senders, receivers, y, label_mask, eval_mask)
