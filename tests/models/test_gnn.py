"""Tests for the graph models and dl.data.graphs: layer maths, padding, jit, validation, data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data.graph_checks import check_dense_graphs, check_graph
from dl.data.graphs import grid_edges, image_grid_graphs, karate_club, load_edge_list_npz
from dl.data.random_graphs import synthetic_graphs
from dl.errors import ConfigError
from dl.models.gnn import GraphClassifier, NodeClassifier
from dl.models.gnn_layers import GATLayer, GCNLayer, GraphNetworkBlock, readout
from dl.models.graph_batch import (
    batch_graphs,
    graph_masks,
    pad_graphs,
    self_loop_edges,
    single_graph,
    to_graphs_tuple,
)

# A path 0-1-2 plus a triangle 2-3-4, undirected (both directions).
HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (2, 4)]


def _undirected(pairs):
    pairs = np.asarray(pairs)
    return (np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]]))


def _hand_graph(features=3, seed=0):
    rng = np.random.default_rng(seed)
    s, r = _undirected(HAND_EDGES)
    return single_graph(rng.normal(size=(5, features)).astype(np.float32), s, r)


def _small_graphs():
    """Three graphs of 5, 3 and 4 nodes."""
    rng = np.random.default_rng(1)
    a = _hand_graph(seed=2)
    s, r = _undirected([(0, 1), (1, 2)])
    b = single_graph(rng.normal(size=(3, 3)).astype(np.float32), s, r)
    s, r = _undirected([(0, 1), (1, 2), (2, 3), (3, 0)])
    c = single_graph(rng.normal(size=(4, 3)).astype(np.float32), s, r)
    return [a, b, c]


def _dense(graphs, max_nodes, max_edges, extra_slots=0, garbage=np.nan):
    """Graphs in the dense format; padding slots filled with garbage."""
    count = len(graphs) + extra_slots
    features = graphs[0].nodes.shape[1]
    nodes = np.full((count, max_nodes, features), garbage, np.float32)
    senders = np.full((count, max_edges), 99, np.int32)
    receivers = np.full((count, max_edges), -7, np.int32)
    n_node = np.zeros(count, np.int32)
    n_edge = np.zeros(count, np.int32)
    for g, graph in enumerate(graphs):
        n, e = graph.nodes.shape[0], graph.senders.size
        nodes[g, :n] = graph.nodes
        senders[g, :e], receivers[g, :e] = graph.senders, graph.receivers
        n_node[g], n_edge[g] = n, e
    return nodes, senders, receivers, n_node, n_edge


def test_gcn_matches_dense_formula():
    graph = _hand_graph()
    layer = GCNLayer(4)
    variables = layer.init(jax.random.key(0), graph)
    w = np.asarray(variables["params"]["linear"]["kernel"])
    bias = np.arange(4, dtype=np.float32)
    variables = {"params": {**variables["params"], "bias": jnp.asarray(bias)}}
    out = np.asarray(layer.apply(variables, graph).nodes)

    a = np.zeros((5, 5))
    a[graph.receivers, graph.senders] = 1.0
    a_hat = a + np.eye(5)
    d = np.diag(1.0 / np.sqrt(a_hat.sum(axis=1)))
    expected = d @ a_hat @ d @ graph.nodes @ w + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_gat_attention_sums_to_one_per_head():
    graph = _hand_graph()
    layer = GATLayer(features=2, num_heads=3)
    variables = layer.init(jax.random.key(0), graph)
    out, state = layer.apply(variables, graph, mutable=["intermediates"])
    alpha = np.asarray(state["intermediates"]["attention"][0])  # [edges + nodes, heads]
    _, receivers = self_loop_edges(graph.senders, graph.receivers, 5)
    assert alpha.shape == (graph.senders.size + 5, 3)
    sums = np.zeros((5, 3))
    np.add.at(sums, np.asarray(receivers), alpha)
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)
    assert out.nodes.shape == (5, 6)
    mean_heads = GATLayer(features=2, num_heads=3, concat=False)
    mean_variables = mean_heads.init(jax.random.key(0), graph)
    assert mean_heads.apply(mean_variables, graph).nodes.shape == (5, 2)


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: GCNLayer(4),
        lambda: GATLayer(features=2, num_heads=2),
        lambda: GraphNetworkBlock(3, 4, 2, hidden_sizes=(5,)),
    ],
)
def test_layers_invariant_to_padding_budgets(make_layer):
    graphs = _small_graphs()
    batched = batch_graphs(graphs)
    layer = make_layer()
    variables = layer.init(jax.random.key(0), batched)
    real_nodes = int(np.sum(batched.n_node))
    outputs = []
    for budgets in [(13, 22, 4), (20, 40, 7), (64, 64, 16)]:
        padded = pad_graphs(batched, *budgets)
        out = layer.apply(variables, padded)
        node_mask, edge_mask, graph_mask = graph_masks(out)
        assert int(node_mask.sum()) == real_nodes and int(graph_mask.sum()) == 3
        assert int(edge_mask.sum()) == batched.senders.size
        outputs.append((np.asarray(out.nodes)[:real_nodes], np.asarray(readout(out, "mean"))[:3]))
    for nodes, pooled in outputs[1:]:
        np.testing.assert_allclose(nodes, outputs[0][0], atol=1e-5)
        np.testing.assert_allclose(pooled, outputs[0][1], atol=1e-5)


def test_readouts_and_padding_rows():
    graph = pad_graphs(batch_graphs(_small_graphs()), 16, 30, 5)
    nodes = np.asarray(graph.nodes)
    for kind, fn in [("sum", np.sum), ("mean", np.mean), ("max", np.max)]:
        pooled = np.asarray(readout(graph, kind))
        assert pooled.shape == (5, 3)
        np.testing.assert_allclose(pooled[0], fn(nodes[0:5], axis=0), rtol=1e-6)
        np.testing.assert_allclose(pooled[2], fn(nodes[8:12], axis=0), rtol=1e-6)
        np.testing.assert_array_equal(pooled[3:], 0.0)
    with pytest.raises(ConfigError, match="unknown readout 'median'"):
        readout(graph, "median")


@pytest.mark.parametrize("layer", ["gcn", "gat", "gn"])
def test_graph_classifier_padding_invariance(layer):
    graphs = _small_graphs()
    model = GraphClassifier(layer=layer, hidden_sizes=(4, 4), num_heads=2, num_outputs=3)
    apply = jax.jit(model.apply)
    tight = _dense(graphs, 5, 10, garbage=0.0)
    variables = model.init(jax.random.key(0), *tight)
    reference = np.asarray(apply(variables, *tight))
    assert reference.shape == (3, 3)
    loose = _dense(graphs, 9, 17, extra_slots=2, garbage=np.nan)
    out = np.asarray(apply(variables, *loose))
    assert out.shape == (5, 3) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:3], reference, atol=1e-5)
    for g, graph in enumerate(graphs):
        alone = np.asarray(apply(variables, *_dense([graph], 5, 10)))
        np.testing.assert_allclose(alone[0], reference[g], atol=1e-5)


@pytest.mark.parametrize("layer", ["gcn", "gat", "gn"])
def test_node_classifier_padding_does_not_leak(layer):
    graphs = _small_graphs()
    model = NodeClassifier(layer=layer, hidden_sizes=(4,), num_heads=2, num_outputs=2)
    clean = _dense(graphs, 6, 10, garbage=0.0)
    variables = model.init(jax.random.key(0), *clean)
    reference = np.asarray(model.apply(variables, *clean))
    assert reference.shape == (3, 6, 2)
    dirty = _dense(graphs, 6, 10, garbage=1e6)
    out = np.asarray(model.apply(variables, *dirty))
    for g, graph in enumerate(graphs):
        n = graph.nodes.shape[0]
        np.testing.assert_allclose(out[g, :n], reference[g, :n], atol=1e-5)
        np.testing.assert_array_equal(out[g, n:], 0.0)


def test_to_graphs_tuple_compiles_once():
    traces = []

    @jax.jit
    def pack(*fields):
        traces.append(1)
        return to_graphs_tuple(*fields)

    graphs = _small_graphs()
    first = pack(*_dense(graphs[:2], 6, 10))
    second = pack(*_dense([graphs[2], graphs[1]], 6, 10))
    assert len(traces) == 1
    assert jax.tree.map(jnp.shape, first) == jax.tree.map(jnp.shape, second)
    assert first.nodes.shape == (2 * 6 + 1, 3) and first.senders.shape == (2 * 10,)
    np.testing.assert_array_equal(first.n_node, [5, 3, 5])
    np.testing.assert_array_equal(second.n_node, [4, 3, 6])
    np.testing.assert_array_equal(first.n_edge, [10, 4, 6])
    # Graph 1 of the first batch starts at node 5: its edges are renumbered.
    np.testing.assert_array_equal(np.asarray(first.senders)[10:14], graphs[1].senders + 5)
    np.testing.assert_array_equal(np.asarray(first.senders)[14:], 8)


def test_check_graph_errors():
    graph = _hand_graph()
    check_graph(graph, "hand", expected_node_features=3)
    senders = np.array(graph.senders)
    senders[4] = 7
    with pytest.raises(ConfigError, match=r"graph 'hand': senders\[4\] = 7 is outside"):
        check_graph(graph._replace(senders=senders), "hand")
    with pytest.raises(ConfigError, match="nodes have 3 features but 8 are expected"):
        check_graph(graph, "hand", expected_node_features=8)
    # Any mapping of arrays is a graph too (the data side validates without jraph).
    fields = {k: getattr(graph, k) for k in ("nodes", "senders", "receivers", "n_node", "n_edge")}
    check_graph(fields, "hand", expected_node_features=3)
    with pytest.raises(ConfigError, match=r"graph 'hand': senders\[4\] = 7 is outside"):
        check_graph({**fields, "senders": senders}, "hand")
    nodes, senders, receivers, n_node, n_edge = _dense(_small_graphs(), 5, 10, garbage=0.0)
    receivers[1, 2] = 3
    with pytest.raises(ConfigError, match="graph 1 edge 2: receivers = 3"):
        check_dense_graphs(
            {
                "nodes": nodes,
                "senders": senders,
                "receivers": receivers,
                "n_node": n_node,
                "n_edge": n_edge,
            },
            "small",
        )


def test_pad_graphs_over_budget_names_the_budget():
    batched = batch_graphs(_small_graphs())  # 12 nodes, 22 edges, 3 graphs
    with pytest.raises(ConfigError, match="needs 13 nodes.*node budget is 12; raise n_node_budget"):
        pad_graphs(batched, 12, 40, 8)
    with pytest.raises(ConfigError, match="needs 22 edges but the edge budget is 21"):
        pad_graphs(batched, 40, 21, 8)
    with pytest.raises(ConfigError, match="raise n_graph_budget to at least 4"):
        pad_graphs(batched, 40, 40, 3)


def test_karate_club():
    data = karate_club()
    assert data["nodes"].shape == (1, 34, 34)
    assert data["senders"].shape == (1, 156) and int(data["n_edge"][0]) == 156
    assert set(np.unique(data["y"])) == {0, 1}
    assert data["y"][0, 0] == 0 and data["y"][0, 33] == 1
    assert data["label_mask"].sum() == 4 and data["label_mask"][0, [0, 33]].all()
    np.testing.assert_array_equal(data["label_mask"] + data["eval_mask"], 1.0)
    check_dense_graphs(data, "karate", expected_node_features=34)
    pairs = set(zip(data["senders"][0].tolist(), data["receivers"][0].tolist(), strict=True))
    assert all((r, s) in pairs for s, r in pairs)


def test_grid_graphs():
    images = np.arange(2 * 64, dtype=np.float32).reshape(2, 8, 8)
    data = image_grid_graphs(images, np.array([3, 5]))
    assert data["nodes"].shape == (2, 64, 3) and data["senders"].shape == (2, 224)
    np.testing.assert_array_equal(data["n_edge"], 224)
    np.testing.assert_array_equal(data["nodes"][1, :, 0], images[1].ravel())
    check_dense_graphs(data, "grid")
    assert grid_edges(8, 8, 8)[0].size == 224 + 2 * 2 * 7 * 7


@pytest.mark.parametrize("kind", ["sbm", "cycles_vs_trees"])
def test_synthetic_graphs(kind):
    data = synthetic_graphs(12, seed=3, kind=kind, min_nodes=5, max_nodes=9)
    again = synthetic_graphs(12, seed=3, kind=kind, min_nodes=5, max_nodes=9)
    for key, value in data.items():
        np.testing.assert_array_equal(value, again[key])
    assert data["nodes"].shape[:2] == (12, 9) and np.bincount(data["y"]).tolist() == [6, 6]
    assert data["n_node"].min() >= 5 and data["n_node"].max() <= 9
    check_dense_graphs(data, kind)
    if kind == "cycles_vs_trees":
        np.testing.assert_array_equal(data["n_edge"], 2 * (data["n_node"] - data["y"]))


def test_load_edge_list_npz(tmp_path):
    path = tmp_path / "g.npz"
    np.savez(
        path,
        senders=np.array([0, 1, 2]),
        receivers=np.array([1, 2, 0]),
        nodes=np.ones(3),
        y=np.array([0, 1, 1]),
        label_mask=np.array([1, 0, 0]),
    )
    data = load_edge_list_npz(str(path), undirected=True)
    assert data["nodes"].shape == (1, 3, 1) and int(data["n_edge"][0]) == 6
    np.testing.assert_array_equal(data["eval_mask"], [[0, 1, 1]])
    bad = tmp_path / "bad.npz"
    np.savez(bad, senders=np.array([0, 5]), receivers=np.array([1, 2]), nodes=np.ones((3, 2)))
    with pytest.raises(ConfigError, match=r"senders\[1\] = 5"):
        load_edge_list_npz(str(bad))


def _packed_reference(nodes, senders, receivers, n_node, n_edge):
    """to_graphs_tuple's packing written with numpy loops."""
    packed_nodes, packed_s, packed_r, real_edges = [], [], [], []
    offset = 0
    for g in range(len(n_node)):
        packed_nodes += list(nodes[g, : n_node[g]])
        valid = [
            (s + offset, r + offset)
            for s, r in zip(senders[g, : n_edge[g]], receivers[g, : n_edge[g]], strict=True)
            if 0 <= s < n_node[g] and 0 <= r < n_node[g]
        ]
        packed_s += [s for s, _ in valid]
        packed_r += [r for _, r in valid]
        real_edges.append(len(valid))
        offset += n_node[g]
    total_nodes, total_edges = nodes.shape[0] * nodes.shape[1] + 1, senders.size
    pad = total_edges - len(packed_s)
    out_nodes = np.zeros((total_nodes, nodes.shape[2]), np.float32)
    out_nodes[:offset] = packed_nodes
    return out_nodes, packed_s + [offset] * pad, packed_r + [offset] * pad, real_edges


@pytest.mark.parametrize("bad_edge", [False, True])
def test_packing_matches_a_loop_reference_with_and_without_invalid_edges(bad_edge):
    nodes, senders, receivers, n_node, n_edge = _dense(_small_graphs(), 6, 10, garbage=0.0)
    if bad_edge:  # a real edge of graph 1 pointing outside its 3 nodes is treated as padding
        senders[1, 1] = 4
    graph = jax.jit(to_graphs_tuple)(nodes, senders, receivers, n_node, n_edge)
    ref_nodes, ref_s, ref_r, real_edges = _packed_reference(
        nodes, senders, receivers, n_node, n_edge
    )
    np.testing.assert_array_equal(graph.nodes, ref_nodes)
    np.testing.assert_array_equal(graph.senders, ref_s)
    np.testing.assert_array_equal(graph.receivers, ref_r)
    np.testing.assert_array_equal(graph.n_edge[:-1], real_edges)
    assert real_edges[1] == (3 if bad_edge else 4)
