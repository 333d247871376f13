"""New raw inputs prepared as training prepared its data, and dl.load on every kind of task.

In process: the preprocessing of make_dataset against the prepared splits
(resizes, standardization, token encoding), the file readers and writers,
and predictors of briefly trained char-LM, graph and node runs against the
evaluator of the same checkpoint.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

import dl
from conftest import load_config
from dl.config import base_config
from dl.data import load_dataset, load_source, raw_splits
from dl.data.files import read_images
from dl.data.pipeline import source_split_indices
from dl.data.prediction_files import read_inputs, write_predictions
from dl.data.sequences import ADDITION_SOURCE_SYMBOLS
from dl.data.vocabulary import Vocabulary
from dl.errors import ConfigError
from dl.train import train
from dl.train.compilations import CompilationCounter
from dl.train.evaluation import evaluate


def _short(config, steps: int = 20):
    config.num_train_steps = steps
    config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
    return config


def test_raw_8x8_digits_are_resized_and_standardized_as_the_loader_did():
    from sklearn.datasets import load_digits

    cfg = base_config().dataset
    cfg.image_size, cfg.standardize = 32, "global"
    data = load_dataset(cfg)
    prep = data.preprocessing
    assert prep.info["resize"] == {"method": "bilinear", "size": 32, "from": [8, 8, 1]}
    test = source_split_indices(load_source(cfg), cfg.name, cfg)["test"]
    raw = load_digits().images.astype(np.float32)[test][..., None]  # [n, 8, 8, 1]
    np.testing.assert_array_equal(prep.prepare({"x": raw})["x"], data.splits["test"]["x"])
    resized = raw_splits(cfg)["test"]["x"]  # [n, 32, 32, 1], as the loader gives them
    np.testing.assert_array_equal(prep.prepare({"x": resized})["x"], data.splits["test"]["x"])
    message = r"\(7, 7, 1\) per example, but the model was trained on \(32, 32, 1\) \(or raw"
    with pytest.raises(ConfigError, match=message):
        prep.prepare({"x": raw[:, :7, :7]})
    with pytest.raises(ConfigError, match="inputs lack field 'senders'"):
        prep.prepare({"x": raw}, ("x", "senders"))


def _image_folder(root) -> list[str]:
    rng = np.random.default_rng(0)
    files = []
    for c, name in enumerate(("cat", "dog")):
        os.makedirs(root / name)
        for i in range(6):
            arr = (rng.random((12, 12)) * 255).astype(np.uint8) // 2 + 100 * c
            Image.fromarray(arr).save(root / name / f"{i}.png")
            files.append(os.path.join(name, f"{i}.png"))
    return files


def test_image_files_and_arrays_of_any_size_are_resized_as_the_image_folder_was(tmp_path):
    files = _image_folder(tmp_path / "train")
    cfg = ml_collections.ConfigDict(
        dict(name=f"images:{tmp_path / 'train'}", image_size=8, test_fraction=0.25)
    )
    data = load_dataset(cfg)
    prep = data.preprocessing
    test = source_split_indices(load_source(cfg), cfg.name, cfg)["test"]
    inputs = read_inputs(str(tmp_path / "train"), prep)  # class sub-folders
    assert inputs["file"].tolist() == files and inputs["x"].shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(prep.prepare(inputs)["x"][test], data.splits["test"]["x"])
    full, _ = read_images([str(tmp_path / "train" / f) for f in files], 0, 1)  # [12, 12, 12, 1]
    np.testing.assert_array_equal(prep.prepare({"x": full})["x"][test], data.splits["test"]["x"])
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in files:
        shutil.copy(tmp_path / "train" / f, flat / f.replace("/", "_"))
    np.testing.assert_array_equal(read_inputs(str(flat), prep)["x"], inputs["x"])


def test_seq2seq_sources_are_encoded_as_the_token_set_encoded_its_own():
    cfg = load_config("seq2seq_addition").dataset
    cfg.num_samples, cfg.max_digits = 300, 2
    data = load_dataset(cfg)
    prep = data.preprocessing
    x = data.splits["test"]["x"]
    sources = Vocabulary(ADDITION_SOURCE_SYMBOLS).decode_batch(x)
    np.testing.assert_array_equal(prep.encode(sources), x)
    np.testing.assert_array_equal(prep.prepare({"x": np.asarray(sources)})["x"], x)
    np.testing.assert_array_equal(prep.prepare({"x": x})["x"], x)  # ids as they are
    with pytest.raises(ConfigError, match="more than the maximum of 6"):
        prep.encode(["12+345"])
    with pytest.raises(ConfigError, match="symbols '-' outside"):
        prep.encode(["1-2"])
    with pytest.raises(ConfigError, match=r"outside the vocabulary of 15 ids"):
        prep.prepare({"x": x + 20})


def test_predictions_are_written_as_npz_and_as_csv_rows(tmp_path):
    predictions = {
        "file": np.array(["a.png", "b.png"]),
        "labels": np.array([3, 1], np.int32),
        "boxes": np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 7,
    }
    write_predictions(str(tmp_path / "p.csv"), predictions)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["file", "labels", "boxes_0_0", "boxes_0_1"] and len(rows[0]) == 8
    assert rows[1][:2] == ["a.png", "3"] and float(rows[2][-1]) == np.float32(11 / 7)
    write_predictions(str(tmp_path / "p.npz"), predictions)
    with np.load(tmp_path / "p.npz") as f:
        np.testing.assert_array_equal(f["boxes"], predictions["boxes"])
        assert f["file"].tolist() == ["a.png", "b.png"]
    with pytest.raises(ConfigError, match="unknown type '.h5'"):
        write_predictions(str(tmp_path / "p.h5"), predictions)
    assert sorted(os.listdir(tmp_path)) == ["p.csv", "p.npz"]  # no temporary file left


def test_char_lm_predicts_the_token_after_each_prompt_whatever_the_padding(tmp_path):
    config = _short(load_config("charlm_text"), 10)
    config.model.hidden_size, config.model.embed_dim, config.batch_size = 16, 8, 8
    train(config, str(tmp_path), stream=io.StringIO())
    predictor = dl.load(str(tmp_path))
    prompts = ["The light", "a", "the sea and"]
    together = predictor.predict(prompts)
    assert together["probabilities"].shape == (3, 101) and together["next"].dtype.kind == "U"
    for i, prompt in enumerate(prompts):
        alone = predictor.predict([prompt])
        np.testing.assert_allclose(
            alone["probabilities"][0], together["probabilities"][i], atol=1e-6
        )
        logits = predictor.apply(predictor.preprocessing.encode([prompt]))[0, -1]
        np.testing.assert_allclose(
            alone["probabilities"][0], jax.nn.softmax(logits), atol=1e-6, rtol=1e-6
        )
    with pytest.raises(ConfigError, match="outside the model's vocabulary of 97 symbols"):
        predictor.predict(["naïve"])


@pytest.mark.slow
def test_graph_predictions_give_the_evaluators_accuracy(tmp_path):
    config = _short(load_config("gnn_synthetic"), 40)
    config.dataset.num_graphs, config.eval_batch_size = 200, 16
    train(config, str(tmp_path), stream=io.StringIO())
    raw = raw_splits(config.dataset)["test"]  # 40 graphs: chunks of 16, 16 and 8
    predictor = dl.load(str(tmp_path))
    with CompilationCounter() as first:
        out = predictor.predict(raw)  # the dense graph fields
    with CompilationCounter() as again:
        predictor.predict(raw)
    assert len(raw["y"]) == 40 and first.count == 2 and again.count == 0  # once per chunk shape
    assert out["probabilities"].shape == (len(raw["y"]), 2)
    accuracy = float(np.mean(out["labels"] == raw["y"]))
    assert accuracy == evaluate(str(tmp_path), figures=False)["accuracy"]
    fields = {k: raw[k] for k in ("x", "senders", "receivers", "n_node")}
    with pytest.raises(ConfigError, match="inputs lack field 'n_edge'"):
        dl.load(str(tmp_path)).predict(fields)


def test_node_predictions_give_the_evaluators_accuracy(tmp_path):
    config = _short(load_config("gcn_karate"), 50)
    train(config, str(tmp_path), stream=io.StringIO())
    raw = raw_splits(config.dataset)["test"]
    out = dl.load(str(tmp_path)).predict(raw)
    labels = out["labels"]  # [1, 34]: one graph
    counted = raw["label_mask"] > 0
    assert labels.shape == raw["y"].shape and (labels >= 0).all()
    accuracy = float(np.mean(labels[counted] == raw["y"][counted]))
    assert accuracy == pytest.approx(evaluate(str(tmp_path), figures=False)["accuracy"], abs=1e-7)


def test_a_model_handed_in_as_an_object_is_needed_again(tmp_path):
    class Tiny(nn.Module):
        num_outputs: int = 2

        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(self.num_outputs)(x.reshape(x.shape[0], -1))

    config = _short(base_config(), 20)
    config.dataset.name = "xor"
    config.batch_size = 4
    train(config, str(tmp_path), model=Tiny, stream=io.StringIO())
    with pytest.raises(ConfigError, match=r"hand the same object in again, e\.g\. dl\.load"):
        dl.load(str(tmp_path))
    out = dl.load(str(tmp_path), model=Tiny).predict(np.array([[0.0, 1.0], [1.0, 1.0]]))
    assert out["labels"].shape == (2,)


def test_non_finite_inputs_are_refused_naming_the_example(tmp_path):
    from conftest import run_binary

    workdir = str(tmp_path / "run")
    train(_short(load_config("mlp_xor"), 4), workdir, stream=io.StringIO())
    x = np.array([[0.0, 1.0], [1.0, np.nan], [1.0, 1.0]], np.float32)
    with pytest.raises(ConfigError, match=r"input 'x': example 1 holds nan"):
        dl.load(workdir).predict(x)
    np.savez(tmp_path / "in.npz", x=x)
    out = tmp_path / "out.npz"
    proc = run_binary(
        "experiments.predict",
        f"--workdir={workdir}",
        f"--input={tmp_path / 'in.npz'}",
        f"--output={out}",
    )
    assert proc.returncode == 2 and "example 1 holds nan" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.slow
def test_predict_on_an_image_folder_gives_what_the_model_gives_on_the_loaders_images(tmp_path):
    import json

    from conftest import config_path, run_binary
    from dl.train.evaluation import read_run_config

    folder = tmp_path / "images"
    files = _image_folder(folder)  # 12 grayscale 12x12 PNGs in cat/ and dog/
    work = tmp_path / "run"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={work}",
        f"--config.dataset.name=images:{folder}",
        "--config.dataset.image_size=8",  # README-documented fields, on the command line
        "--config.dataset.channels=3",
        "--config.model.hidden_sizes=(16,)",
        "--config.batch_size=4",
        "--config.num_train_steps=20",
        "--config.log_every_steps=20",
        "--config.eval_every_steps=20",
        "--config.checkpoint_every_steps=20",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.split("summary ", 1)[1].splitlines()[0])
    cfg = read_run_config(str(work)).dataset
    assert (cfg.image_size, cfg.channels) == (8, 3)
    proc = run_binary(
        "experiments.predict",
        f"--workdir={work}",
        f"--input={folder}",
        f"--output={tmp_path / 'out.npz'}",
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as f:
        got = {k: f[k] for k in f.files}
    assert got["file"].tolist() == files and got["probabilities"].shape == (12, 2)

    predictor = dl.load(str(work))
    assert tuple(predictor.preprocessing.input_shape) == (8, 8, 3)  # grayscale files made RGB
    # The same files read here at their own size: dl.load resizes them as the binary did.
    raw = np.stack([np.asarray(Image.open(folder / f).convert("RGB")) for f in files]) / 255
    expected = predictor.predict(raw.astype(np.float32))
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)
    # The test split as training loaded it (resized, made RGB, standardized): the model's
    # outputs there are the binary's, and its labels give the accuracy training reported.
    data = load_dataset(cfg)
    test = source_split_indices(load_source(cfg), cfg.name, cfg)["test"]
    logits = predictor.model.apply(predictor.variables, data.splits["test"]["x"], train=False)
    np.testing.assert_allclose(got["probabilities"][test], jax.nn.softmax(logits), atol=1e-6)
    truth = np.array([f.startswith("dog") for f in files], np.int32)
    np.testing.assert_array_equal(data.splits["test"]["y"], truth[test])
    accuracy = float(np.mean(got["labels"][test] == truth[test]))
    assert accuracy == pytest.approx(summary["test"]["accuracy"], abs=1e-12)
