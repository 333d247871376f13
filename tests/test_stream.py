"""The streaming input pipeline: converted shards, Parquet and image folders; order, errors."""

import io
import json
import os

import numpy as np
import pytest

from conftest import config_path, load_config, run_binaries
from dl.data.convert import convert
from dl.data.stream import eval_stream, train_stream
from dl.train import build, train
from dl.train.evaluator import Evaluator, device_arrays
from dl.train.stream_feeder import StreamEvaluator


@pytest.fixture(scope="module")
def digits_records(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("records") / "digits")
    convert(load_config("mlp_digits").dataset, out, shards=3)
    return out


def streamed(records, **dataset):
    c = load_config("mlp_digits")
    c.dataset.name, c.dataset.pipeline = f"array_record:{records}", "stream"
    c.dataset.update(dataset)
    return c


def _take(ds, n):
    it = iter(ds)
    try:
        return [next(it) for _ in range(n)], it.get_state()
    finally:
        getattr(it, "close", lambda: None)()


def test_converted_splits_are_prepared_exactly_as_in_memory(digits_records):
    memory = build(load_config("mlp_digits"))
    stream = build(streamed(digits_records))
    assert stream.dataset.sizes == memory.dataset.info["sizes"]
    for split in ("train", "validation", "test"):
        ds, count = eval_stream(
            stream.dataset, stream.config.dataset, split, batch_size=100, process=0, processes=1
        )
        batches, _ = _take(ds, count)
        mask = np.concatenate([b["mask"] for b in batches]) > 0
        n = memory.dataset.size(split)
        assert mask[:n].all() and not mask[n:].any()  # every example once, then the padding
        for field in ("x", "y"):
            got = np.concatenate([b[field] for b in batches])[mask]
            np.testing.assert_array_equal(got, memory.dataset.splits[split][field])
    # The same state evaluates to the same metrics: every example once, the last batch masked.
    state = memory.placed_init_state()
    in_memory = Evaluator(memory, device_arrays(memory.dataset, memory.mesh), 100)
    from_disk = StreamEvaluator(stream, 100)
    for split in ("validation", "test"):
        a, b = in_memory(state, split), from_disk(state, split)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-6)


def test_batches_depend_on_the_seed_alone_and_resume_from_the_iterator_state(digits_records):
    data = build(streamed(digits_records)).dataset

    def batches(workers=0, process=0, processes=1, n=12, state=None):
        c = streamed(digits_records, workers=workers).dataset
        ds = train_stream(data, c, batch_size=64, seed=3, process=process, processes=processes)
        it = iter(ds)
        try:
            if state is not None:
                it.set_state(state)
            return [next(it)["y"] for _ in range(n)], it.get_state()
        finally:
            getattr(it, "close", lambda: None)()

    one, _ = batches()
    two_workers, _ = batches(workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(one, two_workers, strict=True))
    # Two processes read alternate examples of each global batch: together, the batch of one.
    first, second = batches(process=0, processes=2)[0], batches(process=1, processes=2)[0]
    for whole, a, b in zip(one, first, second, strict=True):
        np.testing.assert_array_equal(a, whole[0::2])
        np.testing.assert_array_equal(b, whole[1::2])
    # One epoch: 1169 examples, the first of 19 batches of 64 (1216 examples).
    epoch = np.concatenate(batches(n=19)[0])[:1169]
    memory = build(load_config("mlp_digits")).dataset.splits["train"]["y"]
    assert np.array_equal(np.bincount(epoch, minlength=10), np.bincount(memory, minlength=10))
    # Resumed from the state after 5 batches, the iterator reads batches 5, 6, ...
    _, state = batches(n=5)
    resumed, _ = batches(n=7, state=json.loads(json.dumps(state)))
    assert all(np.array_equal(a, b) for a, b in zip(one[5:], resumed, strict=True))


def test_training_batches_are_the_in_memory_examples_in_grains_shuffle_order(digits_records):
    # Decoded and standardized a batch at a time: bit for bit the examples prepared in
    # memory, in the order of Grain's shuffle of the split's indices.
    import grain

    from dl.data.stream import ensure_grain

    ensure_grain()
    memory = build(load_config("mlp_digits")).dataset.splits["train"]
    data = build(streamed(digits_records)).dataset
    ds = train_stream(data, data_config(digits_records), batch_size=64, seed=5, process=0,
                      processes=1)  # fmt: skip
    batches, _ = _take(ds, 3)
    order = grain.MapDataset.range(len(memory["y"])).shuffle(seed=5)
    for k, batch in enumerate(batches):
        indices = [order[i] for i in range(64 * k, 64 * (k + 1))]
        assert batch["x"].dtype == np.float32 and batch["y"].dtype == np.int32
        np.testing.assert_array_equal(batch["x"], memory["x"][indices])
        np.testing.assert_array_equal(batch["y"], memory["y"][indices])


def data_config(records, **dataset):
    return streamed(records, **dataset).dataset


def test_a_label_outside_the_classes_is_named_by_its_shard_and_record(digits_records, tmp_path):
    import shutil

    from dl.data.records import DataError, RecordShards, read_metadata, write_split

    bad = str(tmp_path / "bad")
    shutil.copytree(digits_records, bad)
    meta = read_metadata(bad)
    shard = meta["splits"]["train"]["shards"][0]
    good = RecordShards(digits_records, "train", read_metadata(digits_records))
    examples = [good[i] for i in range(shard["records"])]
    examples[100] = {**examples[100], "y": np.int32(10)}  # past the 64 read at the start
    os.remove(os.path.join(bad, shard["file"]))
    os.makedirs(tmp_path / "one")
    write_split(str(tmp_path / "one"), "train", examples, len(examples), meta["fields"], 1)
    shutil.move(str(tmp_path / "one" / "train-00000-of-00001.array_record"),
                os.path.join(bad, shard["file"]))  # fmt: skip
    data = build(streamed(bad)).dataset
    ds = train_stream(data, data_config(bad), batch_size=64, seed=0, process=0, processes=1)
    with pytest.raises(DataError, match=r"label 10 \(record 100 of '.*train-00000-of-00003"
                       r"\.array_record'\) is not a class id in \[0, 10\)"):  # fmt: skip
        _take(ds, 19)  # one epoch


def test_parquet_and_image_folders_stream_every_example(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from sklearn.datasets import load_iris

    iris = load_iris()
    table = {f"f{i}": iris.data[:, i] for i in range(4)}
    table["label"] = iris.target.astype(np.int64)
    os.makedirs(tmp_path / "parquet")
    for part in range(2):  # two files, several row groups each
        rows = slice(part * 75, (part + 1) * 75)
        pq.write_table(
            pa.table({k: v[rows] for k, v in table.items()}),
            str(tmp_path / "parquet" / f"part-{part}.parquet"),
            row_group_size=20,
        )
    rng = np.random.default_rng(0)
    for label in ("dark", "light"):
        os.makedirs(tmp_path / "images" / label)
        for i in range(12):
            level = 40 if label == "dark" else 200
            pixels = np.clip(level + rng.normal(0, 20, (10, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    for name, extra in (("parquet", {}), ("images", {"image_size": 8})):
        c = load_config("mlp_digits")
        c.dataset.name, c.dataset.pipeline = f"{name}:{tmp_path / name}", "stream"
        c.dataset.update(extra)
        c.batch_size, c.num_train_steps = 8, 40
        c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 20
        summary = train(c, str(tmp_path / f"run-{name}"), stream=io.StringIO())
        sizes = build(c).dataset.sizes
        assert sum(sizes.values()) == (150 if name == "parquet" else 24)
        assert summary["step"] == 40 and np.isfinite(summary["test"]["loss"])
        with open(tmp_path / f"run-{name}" / "metrics.jsonl") as f:
            train_events = [e for e in map(json.loads, f) if e["split"] == "train"]
        assert all(0.0 <= e["input_wait_fraction"] <= 1.0 for e in train_events)
    assert summary["test"]["accuracy"] == 1.0  # dark and light images, told apart


def _bad_shard_cases(records, tmp_path):
    """(name, dataset dir) of damaged copies of a converted dataset."""
    import shutil

    cases = {}
    for name in ("missing", "truncated", "undecodable"):
        target = tmp_path / name
        shutil.copytree(records, target)
        cases[name] = str(target)
    os.remove(os.path.join(cases["missing"], "train-00001-of-00003.array_record"))
    shard = os.path.join(cases["truncated"], "validation-00002-of-00003.array_record")
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    # A record of another size: the metadata says x is 8x8, the record holds 8x9.
    meta_path = os.path.join(cases["undecodable"], "metadata.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["fields"][0]["shape"] = [8, 9, 1]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return cases


def test_damaged_or_wrong_files_exit_2_naming_the_file(digits_records, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cases = _bad_shard_cases(digits_records, tmp_path)
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), str(tmp_path / "strings.parquet"))
    pq.write_table(pa.table({"a": [1.0, 2.0], "label": [0, 1]}), str(tmp_path / "ok.parquet"))
    names = {
        **{k: f"array_record:{v}" for k, v in cases.items()},
        "string_label": f"parquet:{tmp_path / 'strings.parquet'}",
        "no_such_column": f"parquet:{tmp_path / 'ok.parquet'}",
    }
    expected = {
        "missing": "train-00001-of-00003.array_record' of split 'train' is missing",
        "truncated": "validation-00002-of-00003.array_record' holds 0 records, the metadata",
        "undecodable": "does not decode: 260 bytes, the metadata's fields (x, y) take 292",
        "string_label": "label column 'b' is string",
        "no_such_column": "lacks columns ['missing']",
    }
    extra = {"string_label": ["--config.dataset.label_column=b"]}
    extra["no_such_column"] = ["--config.dataset.label_column=missing"]
    cases = [
        (
            "experiments.train",
            [
                f"--config={config_path('mlp_digits')}",
                f"--config.dataset.name={names[k]}",
                "--config.dataset.pipeline=stream",
                "--config.num_train_steps=20",
                f"--workdir={tmp_path / ('run-' + k)}",
                *extra.get(k, []),
            ],
        )
        for k in expected
    ]
    for key, proc in zip(expected, run_binaries(cases), strict=True):
        assert proc.returncode == 2, (key, proc.stderr)
        assert "Traceback" not in proc.stderr, (key, proc.stderr)
        assert expected[key] in proc.stderr, (key, proc.stderr)
        assert not os.path.exists(tmp_path / f"run-{key}" / "checkpoints")


def test_a_streamed_run_predicts_on_raw_inputs_as_its_evaluation_scores(digits_records, tmp_path):
    import dl
    from dl.data.pipeline import raw_splits

    c = streamed(digits_records)
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 60
    summary = train(c, str(tmp_path), stream=io.StringIO())
    raw = raw_splits(load_config("mlp_digits").dataset)["test"]  # the same split, unprepared
    labels = dl.load(str(tmp_path)).predict({"x": raw["x"]})["labels"]
    assert float(np.mean(labels == raw["y"])) == summary["test"]["accuracy"]
