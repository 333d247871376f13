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

from dl.data.bundled import load as load_bundled
from dl.data.graph_checks import check_graph
from dl.errors import ConfigError

KARATE_CLASSES = ("Mr. Hi", "Officer")
KARATE_LEADERS = (0, 33)


def both_directions(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    import networkx as nx  # slow to import (0.5 s): only for the karate club

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
    senders, receivers = both_directions(np.array(sorted(graph.edges())))
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
    return both_directions(np.concatenate(pairs))


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
    data, target = load_bundled("load_digits")
    return image_grid_graphs(data.reshape(-1, 8, 8) / 16.0, target, connectivity, positions)


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
    "KARATE_CLASSES",
    "digits_graphs",
    "grid_edges",
    "image_grid_graphs",
    "karate_club",
    "load_edge_list_npz",
    "single_graph_example",
]
