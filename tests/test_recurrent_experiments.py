"""Recurrent experiments end to end: digits, addition, char-LM, gradient probes, benchmark."""

import io
import json
import os

import numpy as np
import pytest

from conftest import config_path, load_config, run_binary, summary_of
from dl.data.vocabulary import Vocabulary


def _override(config, **fields):
    with config.unlocked():
        for key, value in fields.items():
            target = config
            *parents, last = key.split("__")
            for part in parents:
                target = target[part]
            target[last] = value
    return config


@pytest.mark.slow
def test_lstm_digits_reaches_95_percent(tmp_path):
    proc = run_binary(
        "experiments.train", f"--config={config_path('lstm_digits')}", f"--workdir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr
    assert summary_of(proc.stdout)["test"]["accuracy"] >= 0.95


def _tiny_addition_config():
    return _override(
        load_config("seq2seq_addition"),
        dataset__num_samples=2000,
        dataset__max_digits=2,
        model__hidden_size=64,
        batch_size=64,
        num_train_steps=600,
        log_every_steps=300,
        eval_every_steps=300,
        checkpoint_every_steps=300,
    )


@pytest.mark.slow
def test_greedy_exact_match_is_scored_against_the_sums(tmp_path):
    from dl.errors import ConfigError
    from dl.tools.recurrent import restore_run
    from dl.train import train

    train(_tiny_addition_config(), str(tmp_path), stream=io.StringIO())
    proc = run_binary("experiments.decode", f"--workdir={tmp_path}", "--show=100000")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    n = result["examples"]
    assert n == 400 == len(result["samples"]) and result["decoding"] == "greedy"
    right = 0
    for s in result["samples"]:
        a, b = s["source"].split("+")
        assert s["target"] == str(int(a) + int(b))
        right += s["predicted"] == str(int(a) + int(b))
    assert result["exact_match"] == pytest.approx(right / n)
    assert len(result["errors"]) == n - right
    assert result["exact_match"] > 0.5  # an untrained model gets ~0
    with open(os.path.join(tmp_path, "decode_test.json")) as f:
        assert json.load(f)["exact_match"] == result["exact_match"]
    with pytest.raises(ConfigError, match="does not exist"):
        restore_run(str(tmp_path / "nothing"))


def test_vanishing_gradients_binary_at_initialisation(tmp_path):
    proc = run_binary(
        "experiments.vanishing_gradients",
        f"--workdir={tmp_path}",
        "--train=false",
        "--cells=rnn,lstm",
        "--num_examples=32",
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.stdout.startswith("[1/2] rnn: gradients at initialisation\n"), proc.stdout
    assert "\n[2/2] lstm: measured (" in proc.stdout
    first = printed["first_step_relative_norm"]
    # At initialisation the plain RNN's gradient at step 1 of 64 is ~1e-11 of the one at
    # the last step, the LSTM's (forget bias 1) ~1e-8.
    assert first["rnn"] < first["lstm"] / 100
    with open(tmp_path / "gradients.json") as f:
        stored = json.load(f)
    assert set(stored["cells"]) == {"rnn", "lstm"} and stored["time_steps"] == 64
    for entry in stored["cells"].values():
        assert len(entry["initial"]) == 64 and entry["initial_relative"][-1] == 1.0
    assert (tmp_path / "gradients.png").stat().st_size > 1000


@pytest.mark.slow
def test_charlm_trains_and_samples_from_the_shipped_text(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('charlm_text')}",
        f"--workdir={workdir}",
        "--config.num_train_steps=40",
        "--config.eval_every_steps=40",
        "--config.checkpoint_every_steps=40",
        "--config.model.hidden_size=32",
    )
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc.stdout)
    assert summary["test"]["loss"] < np.log(101)  # better than uniform over the vocabulary

    proc = run_binary(
        "experiments.sample_text",
        f"--workdir={workdir}",
        "--prompt=The light",
        "--length=60",
        "--temperature=0.5",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.rstrip("\n")
    assert out.startswith("The light") and 9 < len(out) <= 9 + 60

    from dl.errors import ConfigError
    from dl.tools.recurrent import restore_run, sample_text

    _, exp, state, _ = restore_run(workdir)
    with pytest.raises(ConfigError, match="not in the model's vocabulary"):
        sample_text(exp, state, "caf\u00e9", 10)
    with pytest.raises(ConfigError, match="prompt is empty"):
        sample_text(exp, state, "", 10)
    greedy = sample_text(exp, state, "The ", 20, temperature=0.0)
    assert greedy == sample_text(exp, state, "The ", 20, temperature=0.0, seed=1)


def test_vocabulary_sizes_are_checked_against_the_data():
    from dl.errors import ConfigError
    from dl.tools.recurrent import check_seq2seq_vocabularies
    from dl.train import build

    config = _override(_tiny_addition_config(), model__tgt_vocab_size=20)
    with pytest.raises(ConfigError, match="set model.tgt_vocab_size=14"):
        build(config)
    config = _override(_tiny_addition_config(), model__src_vocab_size=12)
    with pytest.raises(ConfigError, match="set model.src_vocab_size=15"):
        build(config)  # before anything compiles
    exp = build(_tiny_addition_config())
    check_seq2seq_vocabularies(exp.model, exp.dataset)
    assert Vocabulary(exp.dataset.info["src_vocab"]).size == 15


def test_lstm_benchmark_rows():
    from dl.tools.recurrent_bench import lstm_layer_rows

    rows = lstm_layer_rows(
        lengths=(2, 4), batch=2, hidden=4, features=3, repeats=2, steps_per_block=1
    )
    assert [r["length"] for r in rows] == [2, 4]
    for row in rows:
        assert row["compile_seconds"] > 0 and row["step_ms_median"] > 0
        # Per time step, from the cell's equations (batch B=2, features F=3, hidden H=4):
        # forward x W_x and h W_h, the weight gradients x^T dz and h^T dz, and dz W_h^T
        # (the inputs get no gradient): 2 B 4H (F + H) + 2 B 4H (F + H) + 2 B 4H H.
        per_time_step = 2 * 2 * 16 * (2 * 3 + 3 * 4)
        assert row["matmul_flops_per_step"] == per_time_step * row["length"]


def test_input_gradient_norms_per_step():
    import jax
    import jax.numpy as jnp

    from dl.models.recurrent import RecurrentClassifier
    from dl.tools.recurrent import input_gradient_norms

    model = RecurrentClassifier(cell="rnn", hidden_size=8, num_outputs=2)
    x = jax.random.normal(jax.random.key(0), (2, 12, 3))
    variables = jax.jit(model.init)(jax.random.key(1), x)
    norms = jax.jit(lambda v, x: input_gradient_norms(model, v, x))(variables, x)
    assert norms.shape == (12,)
    assert bool(jnp.all(jnp.isfinite(norms))) and float(norms[-1]) > 0.0
