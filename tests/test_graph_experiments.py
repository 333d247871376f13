"""Graph experiments end to end: sources, the graph tasks, padding, bad input, short runs."""

import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from dl.data import load_dataset
from dl.errors import ConfigError
from dl.models import build_model
from dl.tasks import make_task
from dl.train import build, train
from dl.train.step import masked_sums


def quiet_train(config, workdir):
    return train(config, str(workdir), stream=io.StringIO())


def dataset_config(**fields):
    base = dict(validation_fraction=0.15, test_fraction=0.2, split_seed=0, standardize="none")
    return ml_collections.ConfigDict({**base, **fields})


def test_karate_source_is_zacharys_club_with_one_mask_per_split():
    data = load_dataset(dataset_config(name="karate", labelled_per_class=1, validation_fraction=0))
    train_split = data.splits["train"]
    # Zachary (1977): 34 members, 78 friendships; the club split 17 / 17.
    assert train_split["x"].shape == (1, 34, 34)
    assert int(train_split["n_node"][0]) == 34 and int(train_split["n_edge"][0]) == 2 * 78
    assert np.bincount(train_split["y"][0]).tolist() == [17, 17]
    assert np.flatnonzero(train_split["label_mask"][0]).tolist() == [0, 33]
    test_mask = data.splits["test"]["label_mask"][0]
    assert test_mask.sum() == 32 and test_mask[[0, 33]].sum() == 0
    np.testing.assert_array_equal(data.splits["validation"]["label_mask"][0], test_mask)

    held_out = load_dataset(dataset_config(name="karate", validation_fraction=0.25))
    val = held_out.splits["validation"]["label_mask"][0]
    test = held_out.splits["test"]["label_mask"][0]
    assert val.sum() == 8 and not np.any(val * test)
    np.testing.assert_array_equal(val + test, test_mask)


def test_citation_source_has_coras_sizes_and_split():
    data = load_dataset(dataset_config(name="citation_synthetic", validation_fraction=1 / 3))
    train_split = data.splits["train"]
    # Cora (Sen et al. 2008, as used by Kipf & Welling 2017): 2708 papers, 5429
    # citation links of which 5278 distinct undirected edges (10556 directed),
    # 1433 words, 7 topics; 20 labelled papers per topic, 500 validate, 1000 test.
    assert train_split["x"].shape == (1, 2708, 1433)
    assert int(train_split["n_edge"][0]) == 10556 and data.num_classes == 7
    assert train_split["label_mask"][0].sum() == 140
    assert data.splits["validation"]["label_mask"][0].sum() == 500
    assert data.splits["test"]["label_mask"][0].sum() == 1000
    masks = [data.splits[s]["label_mask"][0] for s in ("train", "validation", "test")]
    assert np.max(np.sum(masks, axis=0)) == 1  # no paper in two splits
    np.testing.assert_allclose(train_split["x"][0].sum(axis=1), 1.0, rtol=1e-5)  # row-normalised


def test_gcn_citation_beats_chance_by_far(tmp_path):
    summary = quiet_train(load_config("gcn_citation"), tmp_path)
    assert summary["test"]["accuracy"] >= 0.8  # chance: 1/7


def test_digits_grid_source_has_the_grid_graph():
    data = load_dataset(dataset_config(name="digits_grid", connectivity=8))
    sizes = {s: data.size(s) for s in ("train", "validation", "test")}
    assert sum(sizes.values()) == 1797
    x = data.splits["train"]["x"]
    assert x.shape[1:] == (64, 3)
    # An 8x8 grid: 2*8*7 = 112 horizontal and vertical neighbour pairs and
    # 2*7*7 = 98 diagonal ones, each stored in both directions.
    assert set(data.splits["train"]["n_edge"].tolist()) == {2 * (112 + 98)}


def test_graph_sources_turn_standardization_off():
    c = dataset_config(name="karate", standardize="feature")
    data = load_dataset(c)
    assert c.standardize == "none"
    np.testing.assert_array_equal(data.splits["train"]["x"][0], np.eye(34))


def test_gcn_karate_labels_the_other_members(tmp_path):
    summary = quiet_train(load_config("gcn_karate"), tmp_path)
    assert summary["train"]["accuracy"] == 1.0
    # Two labelled nodes; chance on the other 32 is 0.5.
    assert summary["test"]["accuracy"] >= 0.85


def test_gat_karate_short_run(tmp_path):
    c = load_config("gat_karate")
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 100
    summary = quiet_train(c, tmp_path)
    assert summary["test"]["accuracy"] >= 0.75


def test_gnn_synthetic_short_run(tmp_path):
    c = load_config("gnn_synthetic")
    c.dataset.num_graphs = 400
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 300
    summary = quiet_train(c, tmp_path)
    assert summary["test"]["accuracy"] >= 0.8


def _metric_sums(task, model, variables, batch, mask):
    @jax.jit
    def sums(variables, batch, mask):
        outputs = model.apply(variables, *task.inputs(batch), train=False)
        return masked_sums(task.metrics(outputs, batch), mask)

    return {k: (float(n), float(d)) for k, (n, d) in sums(variables, batch, mask).items()}


def _repad(batch, extra_nodes, extra_edges, rng):
    """The same graphs with more node and edge slots, filled with garbage."""
    out = dict(batch)
    b, n, f = batch["x"].shape
    out["x"] = np.concatenate([batch["x"], rng.normal(size=(b, extra_nodes, f)) * 1e3], 1).astype(
        np.float32
    )
    for k in ("senders", "receivers"):
        junk = rng.integers(-5, n + extra_nodes + 5, size=(b, extra_edges))
        out[k] = np.concatenate([batch[k], junk], 1).astype(np.int32)
    for k in ("y", "label_mask"):
        if k in batch and batch[k].ndim == 2:
            fill = np.ones((b, extra_nodes), batch[k].dtype)
            out[k] = np.concatenate([batch[k], fill], 1)
    return out


def _with_padded_examples(batch, count):
    """Appends `count` examples (copies of the first) that a mask of 0 removes."""
    out = {k: np.concatenate([v, np.repeat(v[:1], count, 0)], 0) for k, v in batch.items()}
    mask = np.concatenate([np.ones(len(batch["y"])), np.zeros(count)]).astype(np.float32)
    return out, mask


@pytest.mark.parametrize(
    "dataset, task_name, model_cfg",
    [
        (
            dict(name="graphs_synthetic", num_graphs=12, min_nodes=4, max_nodes=9),
            "graph_classification",
            dict(name="graph_classifier", layer="gat", hidden_sizes=(4,), num_heads=2),
        ),
        (
            dict(name="karate", validation_fraction=0.0),
            "node_classification",
            dict(name="gcn_node", hidden_sizes=(8,)),
        ),
    ],
)
def test_graph_losses_and_metrics_ignore_padding(dataset, task_name, model_cfg):
    data = load_dataset(dataset_config(**dataset))
    task = make_task(task_name, data)
    model = build_model(ml_collections.ConfigDict(model_cfg), task.num_outputs())
    split = "train" if task_name == "graph_classification" else "test"
    batch = {k: np.asarray(v) for k, v in data.splits[split].items()}
    variables = jax.jit(lambda b: model.init(jax.random.key(0), *task.inputs(b)))(batch)
    ones = np.ones(len(batch["y"]), np.float32)
    reference = _metric_sums(task, model, variables, batch, ones)
    assert reference["loss"][1] > 0

    rng = np.random.default_rng(0)
    wider = _repad(batch, extra_nodes=7, extra_edges=11, rng=rng)
    padded, mask = _with_padded_examples(wider, 3)
    for candidate, m in ((wider, ones), (padded, mask)):
        got = _metric_sums(task, model, variables, candidate, jnp.asarray(m))
        for k, (num, den) in reference.items():
            assert got[k][1] == den, k
            assert got[k][0] == pytest.approx(num, rel=1e-5, abs=1e-5), k


def _write_graphs(path, graphs, labels, features=3):
    """Graphs [(n, pairs)] in the batched GraphsTuple layout of graph_npz files."""
    rng = np.random.default_rng(0)
    nodes, senders, receivers, offset = [], [], [], 0
    for n, pairs in graphs:
        nodes.append(rng.normal(size=(n, features)))
        pairs = np.asarray(pairs).reshape(-1, 2)
        senders.append(pairs[:, 0] + offset)
        receivers.append(pairs[:, 1] + offset)
        offset += n
    np.savez(
        path,
        nodes=np.concatenate(nodes).astype(np.float32),
        senders=np.concatenate(senders).astype(np.int32),
        receivers=np.concatenate(receivers).astype(np.int32),
        n_node=np.array([n for n, _ in graphs], np.int32),
        n_edge=np.array([len(p) for _, p in graphs], np.int32),
        y=np.asarray(labels, np.int32),
    )


def _graph_npz_config(path, **dataset):
    c = load_config("gnn_synthetic")
    budgets = dict(max_nodes=0, max_edges=0, node_features=0)
    c.dataset = dataset_config(name=f"graph_npz:{path}", **{**budgets, **dataset})
    return c


def _ring(n):
    return [(i, (i + 1) % n) for i in range(n)] + [((i + 1) % n, i) for i in range(n)]


def test_graph_npz_files_load_and_pad_to_the_budget(tmp_path):
    path = str(tmp_path / "graphs.npz")
    graphs = [(3 + i % 5, _ring(3 + i % 5)) for i in range(20)]
    _write_graphs(path, graphs, [i % 2 for i in range(20)])
    exp = build(_graph_npz_config(path, max_nodes=10, max_edges=24))
    x = exp.dataset.splits["train"]["x"]
    assert x.shape[1:] == (10, 3) and exp.dataset.splits["train"]["senders"].shape[1] == 24
    total = sum(exp.dataset.size(s) for s in ("train", "validation", "test"))
    assert total == 20


def test_graph_larger_than_the_budget_names_the_budget(tmp_path):
    path = str(tmp_path / "graphs.npz")
    _write_graphs(path, [(4, _ring(4)), (12, _ring(12)), (5, _ring(5))], [0, 1, 0])
    with pytest.raises(
        ConfigError, match=r"graph 1 has 12 nodes.*raise dataset.max_nodes to at least 12"
    ):
        build(_graph_npz_config(path, max_nodes=8))
    with pytest.raises(ConfigError, match=r"raise dataset.max_edges to at least 24"):
        build(_graph_npz_config(path, max_edges=20))


def test_edges_outside_the_graph_name_the_graph_and_the_edge(tmp_path):
    path = str(tmp_path / "graphs.npz")
    bad = _ring(4)
    bad[2] = (2, 7)  # node 7 of a 4-node graph
    _write_graphs(path, [(3, _ring(3)), (4, bad)], [0, 1])
    with pytest.raises(ConfigError, match=r"graph 1, edge 2 \(receivers\[8\] in the file\) = 10"):
        build(_graph_npz_config(path))

    single = str(tmp_path / "one.npz")
    np.savez(
        single,
        nodes=np.eye(5, dtype=np.float32),
        senders=np.array([0, 1, 2, 3], np.int32),
        receivers=np.array([1, 2, 9, 4], np.int32),
        y=np.array([0, 0, 1, 1, 1], np.int32),
    )
    c = load_config("gcn_karate")
    c.dataset = dataset_config(name=f"graph_npz:{single}")
    with pytest.raises(ConfigError, match=r"one.npz.*receivers\[2\] = 9 is outside"):
        build(c)


def test_node_feature_width_must_fit(tmp_path):
    path = str(tmp_path / "graphs.npz")
    _write_graphs(path, [(3, _ring(3)), (4, _ring(4))], [0, 1], features=3)
    with pytest.raises(ConfigError, match="nodes have 3 features but 5 are expected"):
        build(_graph_npz_config(path, node_features=5))


def test_tasks_refuse_data_of_the_other_kind():
    karate = load_dataset(dataset_config(name="karate"))
    with pytest.raises(ConfigError, match="use task 'node_classification'"):
        make_task("graph_classification", karate)
    digits = load_dataset(dataset_config(name="digits", standardize="global"))
    with pytest.raises(ConfigError, match="needs graphs"):
        make_task("node_classification", digits)


def test_karate_from_an_edge_list_file_trains_like_the_builtin(tmp_path):
    c = load_config("gcn_karate")
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 50
    builtin = quiet_train(c, tmp_path / "builtin")
    graph = load_dataset(c.dataset).splits["train"]
    n_edge = int(graph["n_edge"][0])
    path = str(tmp_path / "karate.npz")
    np.savez(
        path,
        nodes=graph["x"][0],
        senders=graph["senders"][0, :n_edge],
        receivers=graph["receivers"][0, :n_edge],
        y=graph["y"][0],
        label_mask=graph["label_mask"][0],
    )
    c.dataset = dataset_config(name=f"graph_npz:{path}", validation_fraction=0.0)
    from_file = quiet_train(c, tmp_path / "file")
    assert from_file["test"] == builtin["test"]
