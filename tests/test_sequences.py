"""Sequence data and tasks: generators, vocabularies, padding, bad inputs, token metrics."""

import datetime
import logging
import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dl.data import SOURCES, Dataset, load_dataset
from dl.data.sequences import check_ids, encode_padded, format_date
from dl.data.vocabulary import BOS, EOS, PAD, UNK, Vocabulary
from dl.errors import ConfigError
from dl.tasks import make_task


def cfg(**kw):
    base = dict(validation_fraction=0.15, test_fraction=0.2, split_seed=0, standardize="none")
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _all_examples(ds):
    """Every split's fields concatenated (the splits partition the examples)."""
    return {
        k: np.concatenate([ds.splits[s][k] for s in ("train", "validation", "test")])
        for k in ds.splits["train"]
    }


def _text(vocab, ids):
    return Vocabulary(vocab).decode(ids)


@pytest.mark.parametrize(
    "name,fields",
    [
        ("addition", dict(num_samples=300, max_digits=3)),
        ("dates", dict(num_samples=300)),
        ("sine", dict(num_samples=50, horizon=3)),
    ],
)
def test_generators_are_deterministic_in_their_seed(name, fields):
    a = SOURCES[name](cfg(name=name, seed=1, **fields))
    b = SOURCES[name](cfg(name=name, seed=1, **fields))
    c = SOURCES[name](cfg(name=name, seed=2, **fields))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_addition_targets_are_the_sums():
    ds = load_dataset(cfg(name="addition", num_samples=2000, max_digits=3, seed=0))
    data, info = _all_examples(ds), ds.info
    sources = [_text(info["src_vocab"], row) for row in data["x"]]
    assert len(set(sources)) == len(sources) == 2000  # distinct pairs
    for src, y, tgt_in in zip(sources, data["y"], data["tgt_in"], strict=True):
        a, b = src.split("+")
        assert 1 <= len(a) <= 3 and 1 <= len(b) <= 3
        assert _text(info["tgt_vocab"], y) == str(int(a) + int(b))
        # Decoder input is the target shifted right behind BOS.
        assert tgt_in[0] == BOS
        body = list(y[: list(y).index(EOS)])
        np.testing.assert_array_equal(tgt_in[1 : 1 + len(body)], body)
    assert ds.splits["train"]["x"].dtype == np.int32


def test_addition_example_from_the_issue():
    vocab = Vocabulary("0123456789+")
    ids = encode_padded(vocab, ["123+45"], 8, add_eos=True)[0]
    assert vocab.decode(ids) == "123+45"
    assert ids[6] == EOS and ids[7] == PAD
    assert str(123 + 45) == "168"


# strptime patterns for each format name, written independently of the generator.
STRPTIME = {
    "day_month_year": "%d %B %Y",
    "mon_day_year": "%b %d, %Y",
    "month_day_year": "%B %d, %Y",
    "day_mon_year": "%d %b %Y",
    "dd/mm/yyyy": "%d/%m/%Y",
    "dd.mm.yyyy": "%d.%m.%Y",
    "weekday_day_month_year": "%A, %d %B %Y",
    "wkd_mon_day_year": "%a, %b %d, %Y",
}


def test_date_formats_of_the_issue():
    day = datetime.date(2026, 11, 25)
    assert format_date(day, "day_month_year") == "25 November 2026"
    assert format_date(day, "mon_day_year") == "Nov 25, 2026"
    assert format_date(day, "dd/mm/yyyy") == "25/11/2026"
    assert format_date(day, "weekday_day_month_year") == "Wednesday, 25 November 2026"


def test_date_targets_agree_with_datetime():
    ds = load_dataset(cfg(name="dates", num_samples=3000, seed=3))
    data, info = _all_examples(ds), ds.info
    assert set(info["formats"]) == set(STRPTIME)
    used = set()
    for x, y in zip(data["x"], data["y"], strict=True):
        src, target = _text(info["src_vocab"], x), _text(info["tgt_vocab"], y)
        expected = datetime.date.fromisoformat(target)
        parsed = []
        for fmt, pattern in STRPTIME.items():
            try:
                parsed.append((fmt, datetime.datetime.strptime(src, pattern).date()))
            except ValueError:
                continue
        assert parsed, src
        assert all(d == expected for _, d in parsed), (src, target, parsed)
        used.update(f for f, _ in parsed)
        if "," in src and src.split(",")[0].isalpha():  # a weekday leads
            assert src.split(",")[0] in (expected.strftime("%A"), expected.strftime("%a"))
        assert 1950 <= expected.year <= 2049
    assert used == set(STRPTIME)


def test_seq2seq_fields_are_padded_and_inside_the_vocabulary():
    ds = load_dataset(cfg(name="dates", num_samples=500))
    info = ds.info
    assert info["src_vocab"][:4] == info["tgt_vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    for split in ds.splits.values():
        for field, vocab in (("x", "src_vocab"), ("y", "tgt_vocab"), ("tgt_in", "tgt_vocab")):
            ids = split[field]
            assert ids.min() >= 0 and ids.max() < len(info[vocab])
            assert not np.any(ids == UNK)
        for row in split["x"]:
            end = list(row).index(EOS)
            assert np.all(row[end + 1 :] == PAD) and np.all(row[:end] > UNK)


def test_token_sets_refuse_standardization():
    with pytest.raises(ConfigError, match="standardize='none'"):
        load_dataset(cfg(name="addition", num_samples=10, standardize="feature"))


def test_bad_token_ids_are_named():
    with pytest.raises(ConfigError, match=r"token id 15, outside .*\(0\.\.14\)"):
        check_ids(np.array([[3, 15]]), 15, "field 'x'")
    with pytest.raises(ConfigError, match="token id -1"):
        check_ids(np.array([-1, 2]), 15, "field 'x'")
    check_ids(np.array([0, 14]), 15, "field 'x'")


def test_empty_and_too_long_sequences_are_errors():
    vocab = Vocabulary("abc")
    with pytest.raises(ConfigError, match="empty"):
        encode_padded(vocab, ["ab", ""], 4, add_eos=True)
    with pytest.raises(ConfigError, match="needs 5 tokens.*maximum of 4"):
        encode_padded(vocab, ["abcc"], 4, add_eos=True)
    with pytest.raises(ConfigError, match="max_source_length=5 is shorter .* set at least 8"):
        load_dataset(
            cfg(name="addition", num_samples=500, max_digits=3, max_source_length=5, seed=0)
        )
    with pytest.raises(ConfigError, match="num_samples"):
        load_dataset(cfg(name="addition", num_samples=0))


def test_sine_windows_and_naive_forecast():
    source = SOURCES["sine"](cfg(name="sine", num_samples=200, input_length=16, horizon=4))
    assert source.x.shape == (200, 16, 1) and source.y.shape == (200, 4)
    np.testing.assert_array_equal(source.extra["last"], source.x[:, -1, 0])
    naive = np.mean((source.y - source.x[:, -1, :]) ** 2)
    assert source.info["naive_mse"] == pytest.approx(naive, rel=1e-5)
    assert source.info["noise_floor_mse"] == pytest.approx(0.01, rel=0.3)  # noise std 0.1


def test_forecast_task_scores_the_naive_forecast_in_data_units():
    ds = load_dataset(cfg(name="sine", num_samples=300, horizon=2, standardize="global"))
    task = make_task("forecast", ds)
    split = ds.splits["test"]
    scale = ds.info["target_scale"]
    raw_y = split["y"] * np.asarray(scale["std"]) + np.asarray(scale["mean"])
    batch = {k: jnp.asarray(v) for k, v in split.items()}
    metrics = task.metrics(jnp.zeros(split["y"].shape), batch)
    num, den = metrics["naive_mse"]
    expected = np.mean((split["last"][:, None] - raw_y) ** 2)
    assert float(jnp.sum(num) / jnp.sum(den)) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ConfigError, match="needs a dataset with the last input value"):
        make_task("forecast", load_dataset(cfg(name="diabetes", standardize="feature")))


def _token_dataset(x, y, vocab_size=6, **extra):
    fields = {"x": np.asarray(x, np.int32), "y": np.asarray(y, np.int32), **extra}
    vocab = [f"s{i}" for i in range(vocab_size)]
    info = {"vocab": vocab, "tgt_vocab": vocab, "src_vocab": vocab}
    return Dataset(
        "toy", {"train": fields, "validation": fields, "test": fields}, "sequence", None, info
    )


def test_sequence_task_masks_padding_and_scores_tokens_and_whole_sequences():
    y = np.array([[4, 5, EOS, PAD], [5, EOS, PAD, PAD]], np.int32)
    ds = _token_dataset(y, y, tgt_in=y)
    task = make_task("sequence", ds)
    assert task.inputs({"x": 1, "tgt_in": 2}) == (1, 2)
    predicted = np.array([[4, 5, EOS, 3], [4, EOS, 1, 1]])  # padding positions are wrong
    logits = np.log(np.full((2, 4, 6), 0.02))
    for b in range(2):
        for t in range(4):
            logits[b, t, predicted[b, t]] = np.log(0.9)
    batch = {"x": jnp.asarray(y), "y": jnp.asarray(y), "tgt_in": jnp.asarray(y)}
    m = task.metrics(jnp.asarray(logits, jnp.float32), batch)
    mean = lambda pair: float(jnp.sum(pair[0]) / jnp.sum(pair[1]))
    assert mean(m["token_accuracy"]) == pytest.approx(4 / 5)  # 3/3 and 1/2 real tokens right
    assert mean(m["exact_match"]) == pytest.approx(1 / 2)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ce = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    assert mean(m["loss"]) == pytest.approx(ce[y != PAD].mean(), rel=1e-5)
    assert "set model.tgt_vocab_size=6" in task.check_outputs((4, 7))
    assert task.check_outputs((4, 6)) is None
    model = types.SimpleNamespace(src_vocab_size=5, tgt_vocab_size=6)
    assert "set model.src_vocab_size=6" in task.check_model(model)
    assert task.check_model(types.SimpleNamespace(src_vocab_size=6, tgt_vocab_size=6)) is None


def test_sequence_task_refuses_ids_outside_the_vocabulary():
    with pytest.raises(ConfigError, match="field 'y' holds token id 9"):
        make_task("sequence", _token_dataset([[4, 5]], [[5, 9]]))
    with pytest.raises(ConfigError, match="needs a token dataset"):
        make_task("sequence", load_dataset(cfg(name="iris")))


def test_text_windows_predict_the_next_character(tmp_path):
    path = tmp_path / "t.txt"
    text = "the quick brown fox jumps over the lazy dog.\n" * 20
    path.write_text(text)
    ds = load_dataset(cfg(name=f"text:{path}", sequence_length=16))
    vocab = ds.info["vocab"]
    assert len(vocab) == 101 and vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    for x, y in zip(ds.splits["train"]["x"], ds.splits["train"]["y"], strict=True):
        assert x.shape == (16,)
        np.testing.assert_array_equal(x[1:], y[:-1])
        assert _text(vocab, list(x) + [y[-1]]) in text
    by_file = load_dataset(cfg(name=f"text:{path}", sequence_length=16, vocabulary="file"))
    assert len(by_file.info["vocab"]) == 4 + len(set(text))


def test_bad_text_files(tmp_path, caplog):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_dataset(cfg(name=f"text:{empty}"))
    short = tmp_path / "short.txt"
    short.write_text("abc")
    with pytest.raises(ConfigError, match="lower dataset.sequence_length"):
        load_dataset(cfg(name=f"text:{short}", sequence_length=8))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc" * 10)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_dataset(cfg(name=f"text:{binary}"))
    with pytest.raises(ConfigError, match="not found"):
        load_dataset(cfg(name=f"text:{tmp_path / 'missing.txt'}"))
    long = tmp_path / "long.txt"
    long.write_text("caf\u00e9 " * 100)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(cfg(name=f"text:{long}", sequence_length=8, max_chars=100))
    assert ds.info["truncated_from"] == 500 and ds.info["chars"] == 100
    assert "max_chars=100" in caplog.text and "map to <unk>" in caplog.text
    assert np.any(ds.splits["train"]["x"] == UNK)


def test_sequential_digits_reads_rows_or_pixels():
    rows = load_dataset(cfg(name="sequential_digits", features_per_step=8))
    pixels = load_dataset(cfg(name="sequential_digits", features_per_step=1))
    assert rows.element_shapes["x"] == (8, 8) and pixels.element_shapes["x"] == (64, 1)
    with pytest.raises(ConfigError, match="divide 64"):
        load_dataset(cfg(name="sequential_digits", features_per_step=3))
