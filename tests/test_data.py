"""Datasets, splits, standardization and deterministic batching."""

import ml_collections
import numpy as np
import pytest

from conftest import config_path, load_config, run_binary
from dl.data import SOURCES, TrainOrder, eval_order, load_dataset, split_indices
from dl.data.pipeline import source_split_indices
from dl.data.sources import load_source
from dl.errors import ConfigError


def cfg(**kw):
    base = dict(validation_fraction=0.15, test_fraction=0.2, split_seed=0, standardize="feature")
    base.update(kw)
    return ml_collections.ConfigDict(base)


@pytest.mark.parametrize(
    "loader", ["load_digits", "load_iris", "load_breast_cancer", "load_wine", "load_diabetes"]
)
def test_bundled_files_read_directly_equal_scikit_learns_loaders(loader):
    from sklearn import datasets

    from dl.data.bundled import load

    x, y = load(loader)
    bunch = getattr(datasets, loader)()
    assert np.array_equal(x, bunch.data) and np.array_equal(y, bunch.target)
    if loader == "load_digits":
        assert np.array_equal(x.reshape(-1, 8, 8), bunch.images)


@pytest.mark.parametrize(
    "name,n,kind,classes",
    [
        ("digits", 1797, "classification", 10),
        ("iris", 150, "classification", 3),
        ("breast_cancer", 569, "classification", 2),
        ("wine", 178, "classification", 3),
        ("diabetes", 442, "regression", None),
    ],
)
def test_bundled_datasets(name, n, kind, classes):
    ds = load_dataset(cfg(name=name))
    assert sum(ds.size(s) for s in ("train", "validation", "test")) == n
    assert ds.kind == kind and ds.num_classes == classes


def test_digits_are_8x8_images():
    ds = load_dataset(cfg(name="digits"))
    assert ds.element_shapes["x"] == (8, 8, 1)


@pytest.mark.parametrize(
    "gate,table", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0])]
)
def test_truth_tables_use_the_four_points_in_every_split(gate, table):
    ds = load_dataset(cfg(name=gate, standardize="none"))
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(ds.splits[split]["x"], [[0, 0], [0, 1], [1, 0], [1, 1]])
        np.testing.assert_array_equal(ds.splits[split]["y"], table)


def test_noisy_xor_labels_follow_the_corner():
    ds = load_dataset(cfg(name="xor", num_samples=400, noise=0.05, standardize="none"))
    x, y = ds.splits["train"]["x"], ds.splits["train"]["y"]
    corner = np.round(x).astype(int)
    np.testing.assert_array_equal(y, corner[:, 0] ^ corner[:, 1])


@pytest.mark.parametrize("name", ["moons", "circles", "spirals"])
def test_generators_are_deterministic(name):
    a = load_dataset(cfg(name=name, num_samples=300, seed=3))
    b = load_dataset(cfg(name=name, num_samples=300, seed=3))
    c = load_dataset(cfg(name=name, num_samples=300, seed=4))
    np.testing.assert_array_equal(a.splits["train"]["x"], b.splits["train"]["x"])
    assert not np.array_equal(a.splits["train"]["x"], c.splits["train"]["x"])


def test_split_is_deterministic_disjoint_complete_and_stratified():
    labels = np.repeat(np.arange(4), 50)
    a = split_indices(200, 0.15, 0.2, seed=7, labels=labels)
    b = split_indices(200, 0.15, 0.2, seed=7, labels=labels)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    together = np.concatenate(list(a.values()))
    assert sorted(together.tolist()) == list(range(200))
    for c in range(4):
        assert np.sum(labels[a["test"]] == c) == 10
        assert np.sum(labels[a["validation"]] == c) == 8  # round(0.15 * 50)
    other = split_indices(200, 0.15, 0.2, seed=8, labels=labels)
    assert not np.array_equal(a["test"], other["test"])


def test_standardization_is_fitted_on_the_training_split_only():
    ds = load_dataset(cfg(name="iris"))
    x_train = ds.splits["train"]["x"]
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(0), 1, atol=1e-4)
    # The test split is scaled with the training statistics, so it is not exactly standard.
    assert np.abs(ds.splits["test"]["x"].mean(0)).max() > 1e-3


def test_regression_targets_are_standardized_and_their_scale_kept():
    ds = load_dataset(cfg(name="diabetes"))
    np.testing.assert_allclose(ds.splits["train"]["y"].mean(), 0, atol=1e-5)
    assert ds.info["target_scale"]["std"] > 10


def test_train_order_is_a_function_of_the_step():
    order = TrainOrder(10, 4, seed=1)
    again = TrainOrder(10, 4, seed=1)
    np.testing.assert_array_equal(order.indices(7, 3), again.indices(7, 3))
    # Fused calls see exactly the batches of single steps.
    np.testing.assert_array_equal(
        order.indices(0, 5), np.concatenate([order.indices(s) for s in range(5)])
    )


def test_train_order_visits_every_example_once_per_epoch():
    order = TrainOrder(12, 4, seed=0)
    first_epoch = order.indices(0, 3).ravel()
    second_epoch = order.indices(3, 3).ravel()
    assert sorted(first_epoch) == list(range(12)) == sorted(second_epoch)
    assert not np.array_equal(first_epoch, second_epoch)


def test_eval_order_covers_every_example_exactly_once():
    idx, mask = eval_order(10, 4)
    assert idx.shape == mask.shape == (3, 4)
    assert sorted(idx[mask > 0].tolist()) == list(range(10))
    assert mask.sum() == 10


def test_npz_and_csv_files(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(cfg(name=f"npz:{tmp_path / 'd.npz'}", standardize="none"))
    assert ds.num_classes == 3 and ds.element_shapes["x"] == (3,)
    lines = ["a,b,label"] + [f"{i},{2 * i},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    ds = load_dataset(cfg(name=f"csv:{tmp_path / 'd.csv'}", label_column="label"))
    assert ds.num_classes == 2 and ds.info["classes"] == ["cat", "dog"]
    assert ds.element_shapes["x"] == (2,)


def test_bad_data_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'.*digits.*npz:PATH"):
        load_dataset(cfg(name="mnist"))
    with pytest.raises(ConfigError, match="not found"):
        load_dataset(cfg(name=f"npz:{tmp_path / 'missing.npz'}"))
    np.savez(tmp_path / "bad.npz", inputs=np.zeros(3))
    with pytest.raises(ConfigError, match=r"lacks arrays \['x', 'y'\]"):
        load_dataset(cfg(name=f"npz:{tmp_path / 'bad.npz'}"))
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ConfigError, match="no column 'label'"):
        load_dataset(cfg(name=f"csv:{tmp_path / 'd.csv'}", label_column="label"))
    with pytest.raises(ConfigError, match="batch_size 16 is larger than the training split"):
        TrainOrder(4, 16, 0)
    with pytest.raises(ConfigError, match="must be < 1"):
        split_indices(10, 0.5, 0.5, 0)


def test_every_builtin_source_loads():
    for name in SOURCES:
        # Token and graph sets refuse per-feature standardization of their ids and slots.
        ds = load_dataset(cfg(name=name, num_samples=200, standardize="none"))
        assert ds.size("train") > 0


def test_a_nan_cell_of_a_csv_file_is_refused_naming_split_example_and_column(tmp_path):
    """Through experiments.train: exit 2 before anything compiles, not a NaN loss at step 0."""
    path = tmp_path / "d.csv"
    rows = [[i, i % 7, i % 3] for i in range(90)]
    path.write_text("a,b,label\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows))
    data = load_config("mlp_digits").dataset
    data.name = f"csv:{path}"
    idx = source_split_indices(load_source(data), data.name, data)
    k = int(idx["validation"][3])  # a row the validation split holds
    rows[k][1] = "nan"
    path.write_text("a,b,label\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows))
    workdir = tmp_path / "run"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={workdir}",
        f"--config.dataset.name={data.name}",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: dataset {data.name!r} field 'x': the validation split's example 3 (example {k} "
        f"of the data, line {k + 2}) holds nan at (1,), column 'b' (1 non-finite value in all); "
        "dl trains on finite numbers only"
    )
    assert not (workdir / "checkpoints").exists()
