"""Graph datasets in the dense per-graph format of dl.data.graph_checks.

Each function returns a dict of numpy arrays with a leading example axis:

  nodes      [graphs, max_nodes, features] float32
  senders    [graphs, max_edges] int32 (local node indices)
  receivers  [graphs, max_edges] int32
  n_node     [graphs] int32
  n_edge     [graphs] int32
  y          [graphs] int32 graph labels, or [graphs, max_nodes] int32 node labels

Single-graph node classification (karate club, user edge lists) is one
example holding the whole graph, plus `label_mask` and `eval_mask`
[1, max_nodes] float32 marking the nodes whose labels train and evaluate.
Undirected edges are stored once in each direction. Everything is generated
from a seed with numpy; nothing here imports jraph (the edge-list loader
validates with dl.data.graph_checks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dl.data.graph_checks import check_graph
from dl.errors import ConfigError, unknown_name

KARATE_CLASSES = ("Mr. Hi", "Officer")
KARATE_LEADERS = (0, 33)
SYNTHETIC_KINDS = ("sbm", "cycles_vs_trees")
DEGREE_FEATURES = 8  # synthetic node features: one-hot degree, the last slot for >= 7


def _both_directions(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected pairs [pairs, 2] -> (senders, receivers), each pair in both directions."""
    edges = np.asarray(edges, np.int32).reshape(-1, 2)
    senders = np.concatenate([edges[:, 0], edges[:, 1]])
    receivers = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.lexsort((receivers, senders))
    return senders[order], receivers[order]


def single_graph_example(
    nodes, senders, receivers, y=None, label_mask=None, eval_mask=None
) -> dict[str, np.ndarray]:
    """One graph as a one-example dataset in the dense format.

    Args:
      nodes: [nodes, features] (or [nodes]) node features.
      senders: [edges] source node of each edge.
      receivers: [edges] target node of each edge.
      y: optional [nodes] node labels.
      label_mask: optional [nodes] nodes whose labels train the model; all
        nodes when y is given and this is not.
      eval_mask: optional [nodes] nodes to evaluate on; defaults to the nodes
        outside label_mask when label_mask is given, else all nodes.

    Returns:
      The dict of [1, ...] arrays described in the module docstring.
    """
    nodes = np.asarray(nodes, np.float32)
    if nodes.ndim == 1:
        nodes = nodes[:, None]
    num_nodes = nodes.shape[0]
    senders = np.asarray(senders, np.int32).reshape(-1)
    receivers = np.asarray(receivers, np.int32).reshape(-1)
    example = {
        "nodes": nodes[None],
        "senders": senders[None],
        "receivers": receivers[None],
        "n_node": np.array([num_nodes], np.int32),
        "n_edge": np.array([senders.size], np.int32),
    }
    if y is not None:
        example["y"] = np.asarray(y).reshape(1, -1)
        if label_mask is None:
            label_mask = np.ones(num_nodes, np.float32)
            eval_mask = label_mask if eval_mask is None else eval_mask
        label_mask = np.asarray(label_mask, np.float32).reshape(-1)
        if eval_mask is None:
            eval_mask = 1.0 - label_mask
        example["label_mask"] = label_mask[None]
        example["eval_mask"] = np.asarray(eval_mask, np.float32).reshape(1, -1)
    return example


def karate_club(
    labelled_per_class: int = 2, seed: int = 0, labelled: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Zachary's karate club for semi-supervised node classification.

    34 members, 78 friendships (156 directed edges), two classes: the 'club'
    each member joined after the split (0 = "Mr. Hi", 1 = "Officer"). Node
    features are one-hot identities [34, 34], as in Kipf & Welling.

    Args:
      labelled_per_class: labelled nodes per class: the class's leader (node 0
        for Mr. Hi, node 33 for the Officer) plus labelled_per_class - 1 other
        members drawn with `seed`.
      seed: seed of that draw.
      labelled: explicit labelled node ids, overriding the two arguments above.

    Returns:
      One example: nodes [1, 34, 34], senders / receivers [1, 156], n_node,
      n_edge [1], y [1, 34], label_mask [1, 34] (the labelled nodes) and
      eval_mask [1, 34] (all the others).
    """
    import networkx as nx

    graph = nx.karate_club_graph()
    num_nodes = graph.number_of_nodes()
    y = np.array([KARATE_CLASSES.index(graph.nodes[i]["club"]) for i in range(num_nodes)], np.int32)
    if labelled is None:
        if labelled_per_class < 1:
            raise ConfigError(f"labelled_per_class must be at least 1, got {labelled_per_class}")
        rng = np.random.default_rng(seed)
        labelled = []
        for cls, leader in enumerate(KARATE_LEADERS):
            others = np.flatnonzero((y == cls) & (np.arange(num_nodes) != leader))
            if labelled_per_class - 1 > others.size:
                raise ConfigError(
                    f"labelled_per_class is {labelled_per_class} but class "
                    f"{KARATE_CLASSES[cls]!r} has only {others.size + 1} members"
                )
            labelled += [leader] + list(rng.choice(others, labelled_per_class - 1, replace=False))
    labelled = np.asarray(labelled, np.int64)
    if labelled.size and (labelled.min() < 0 or labelled.max() >= num_nodes):
        raise ConfigError(
            f"labelled karate-club nodes must be in [0, {num_nodes}), got {labelled.tolist()}"
        )
    label_mask = np.zeros(num_nodes, np.float32)
    label_mask[labelled] = 1.0
    senders, receivers = _both_directions(np.array(sorted(graph.edges())))
    return single_graph_example(
        np.eye(num_nodes, dtype=np.float32), senders, receivers, y, label_mask
    )


def grid_edges(height: int, width: int, connectivity: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges between neighbouring pixels of a height x width grid.

    Pixel (r, c) is node r * width + c. Four-neighbourhoods give
    2 * (height * (width - 1) + (height - 1) * width) edges; eight add the
    2 * 2 * (height - 1) * (width - 1) diagonal ones.

    Returns:
      (senders, receivers), each [edges] int32.
    """
    if connectivity not in (4, 8):
        raise ConfigError(f"grid connectivity must be 4 or 8, got {connectivity}")
    ids = np.arange(height * width).reshape(height, width)
    pairs = [
        np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1),
        np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], 1),
    ]
    if connectivity == 8:
        pairs += [
            np.stack([ids[:-1, :-1].ravel(), ids[1:, 1:].ravel()], 1),
            np.stack([ids[:-1, 1:].ravel(), ids[1:, :-1].ravel()], 1),
        ]
    return _both_directions(np.concatenate(pairs))


def image_grid_graphs(
    images, labels, connectivity: int = 4, positions: bool = True
) -> dict[str, np.ndarray]:
    """Images as graphs: one node per pixel, edges between neighbouring pixels.

    Args:
      images: [examples, height, width] or [examples, height, width, channels].
      labels: [examples] class ids (or any per-image targets).
      connectivity: 4 or 8 neighbours.
      positions: append each pixel's (row, col), scaled to [0, 1], to its features.

    Returns:
      nodes [examples, height*width, channels (+2)], senders / receivers
      [examples, edges] (the same grid for every image), n_node, n_edge
      [examples] and y [examples]. An 8x8 image with 4-neighbours has 64
      nodes and 224 directed edges.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ConfigError(
            f"images must be [examples, height, width(, channels)], got {images.shape}"
        )
    count, height, width, channels = images.shape
    labels = np.asarray(labels)
    if labels.shape[:1] != (count,):
        raise ConfigError(f"{count} images but labels have shape {labels.shape}")
    nodes = images.reshape(count, height * width, channels)
    if positions:
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        coords = np.stack(
            [rows.ravel() / max(height - 1, 1), cols.ravel() / max(width - 1, 1)], 1
        ).astype(np.float32)
        nodes = np.concatenate([nodes, np.broadcast_to(coords, (count,) + coords.shape)], -1)
    senders, receivers = grid_edges(height, width, connectivity)
    if np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int32)
    return {
        "nodes": np.ascontiguousarray(nodes, np.float32),
        "senders": np.tile(senders, (count, 1)),
        "receivers": np.tile(receivers, (count, 1)),
        "n_node": np.full(count, height * width, np.int32),
        "n_edge": np.full(count, senders.size, np.int32),
        "y": labels,
    }


def digits_graphs(connectivity: int = 4, positions: bool = True) -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits (1797 images, 10 classes) as 64-node grid graphs.

    Intensities are scaled to [0, 1]; see `image_grid_graphs` for the format.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    return image_grid_graphs(digits.images / 16.0, digits.target, connectivity, positions)


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
        graphs.append((n, _both_directions(relabel[pairs])))
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
    senders, receivers = _both_directions(np.array(sorted(pairs)))

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


def load_edge_list_npz(path: str, undirected: bool = False) -> dict[str, np.ndarray]:
    """Loads one user graph for node-level tasks from an `.npz` file.

    The file holds `senders` and `receivers` [edges] (node ids in [0, nodes)),
    `nodes` [nodes, features] (or [nodes]), and optionally `y` [nodes] node
    labels and `label_mask` [nodes] (nonzero = labelled for training; the
    other nodes are evaluated). The graph is validated with
    dl.data.graph_checks.check_graph.

    Args:
      path: the file.
      undirected: add the reverse of every edge (for files listing each
        undirected edge once).

    Returns:
      The one-example dict of `single_graph_example`.
    """
    if not path:
        raise ConfigError("the graph edge-list loader needs a path to an .npz file")
    if not os.path.isfile(path):
        raise ConfigError(f"graph file not found: {path!r}")
    try:
        with np.load(path) as f:
            missing = [k for k in ("senders", "receivers", "nodes") if k not in f.files]
            if missing:
                raise ConfigError(f"graph file {path!r} lacks arrays {missing}; it has {f.files}")
            arrays = {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot read graph file {path!r}: {e}") from e
    nodes = arrays["nodes"].astype(np.float32)
    if nodes.ndim == 1:
        nodes = nodes[:, None]
    senders, receivers = arrays["senders"].reshape(-1), arrays["receivers"].reshape(-1)
    for field in ("senders", "receivers"):
        if not np.issubdtype(arrays[field].dtype, np.integer):
            raise ConfigError(
                f"graph file {path!r}: {field} must be integers, got {arrays[field].dtype}"
            )
    one_graph = {"n_node": [nodes.shape[0]], "n_edge": [senders.size]}
    check_graph({"nodes": nodes, "senders": senders, "receivers": receivers, **one_graph}, path)
    if undirected:
        senders, receivers = (
            np.concatenate([senders, receivers]),
            np.concatenate([receivers, senders]),
        )
    num_nodes = nodes.shape[0]
    for field in ("y", "label_mask"):
        if field in arrays and arrays[field].reshape(-1).shape != (num_nodes,):
            raise ConfigError(
                f"graph file {path!r}: {field} has shape {arrays[field].shape} "
                f"but the graph has {num_nodes} nodes"
            )
    y = arrays.get("y")
    if y is not None and np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.int32)
    label_mask = arrays.get("label_mask")
    if label_mask is not None and y is None:
        raise ConfigError(f"graph file {path!r} has a label_mask but no labels y")
    if label_mask is not None:
        label_mask = (label_mask.reshape(-1) != 0).astype(np.float32)
    return single_graph_example(nodes, senders, receivers, y, label_mask)


__all__ = [
    "DEGREE_FEATURES",
    "KARATE_CLASSES",
    "SYNTHETIC_KINDS",
    "digits_graphs",
    "grid_edges",
    "image_grid_graphs",
    "karate_club",
    "load_edge_list_npz",
    "single_graph_example",
    "synthetic_graphs",
]
