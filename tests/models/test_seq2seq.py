"""Tests for dl.models.seq2seq and seq2seq_decode: padding invariance and the decoders."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data import vocabulary
from dl.data.vocabulary import BOS, EOS, PAD
from dl.models.seq2seq import Seq2Seq
from dl.models.seq2seq_decode import beam_search, greedy_decode

VOCAB, MAX_LEN = 9, 6


@functools.cache
def _model(attention: bool, cell: str):
    """A tiny model with random (untrained) weights, jitted entry points, cached per variant."""
    model = Seq2Seq(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        cell=cell,
        embed_dim=6,
        hidden_size=8,
        num_layers=2,
        attention=attention,
    )
    src = jnp.full((1, 3), 4)
    variables = jax.jit(model.init)(jax.random.key(0), src, src)
    apply = jax.jit(model.apply)
    greedy = jax.jit(
        functools.partial(greedy_decode, model, return_scores=True), static_argnames="max_len"
    )
    beam = jax.jit(functools.partial(beam_search, model), static_argnames=("max_len", "beam_size"))
    return model, variables, apply, greedy, beam


def _source():
    """Two sources: row 1 is valid for 3 tokens then padded."""
    return jnp.array([[5, 6, 7, 8, 4], [4, 8, 5, PAD, PAD]])


VARIANTS = [(False, "gru"), (True, "lstm")]
IDS = ["gru", "lstm-attention"]


@pytest.mark.parametrize("attention, cell", VARIANTS, ids=IDS)
def test_source_padding_does_not_change_logits(attention, cell):
    _, variables, apply, _, _ = _model(attention, cell)
    src = _source()
    tgt_in = jnp.array([[BOS, 5, 6, 7], [BOS, 4, 4, 8]])
    logits = apply(variables, src, tgt_in)
    assert logits.shape == (2, 4, VOCAB)
    alone = apply(variables, src[1:2, :3], tgt_in[1:2])
    np.testing.assert_allclose(logits[1], alone[0], atol=1e-6)
    more_padding = jnp.pad(src, ((0, 0), (0, 3)))
    np.testing.assert_allclose(apply(variables, more_padding, tgt_in), logits, atol=1e-6)


@pytest.mark.parametrize("attention, cell", VARIANTS, ids=IDS)
def test_greedy_matches_teacher_forcing_and_beam(attention, cell):
    model, variables, apply, greedy, beam = _model(attention, cell)
    src = _source()
    tokens, scores = greedy(variables, src, max_len=MAX_LEN)
    assert tokens.shape == (2, MAX_LEN) and scores.shape == (2,)

    # Fed its own outputs, teacher forcing picks the same tokens (until EOS).
    tgt_in = jnp.concatenate([jnp.full((2, 1), BOS), tokens[:, :-1]], axis=1)
    logits = apply(variables, src, tgt_in)
    predicted = np.asarray(jnp.argmax(logits, axis=-1))
    tokens = np.asarray(tokens)
    for row in range(2):
        stop = list(tokens[row]).index(EOS) + 1 if EOS in tokens[row] else MAX_LEN
        np.testing.assert_array_equal(predicted[row, :stop], tokens[row, :stop])
        assert np.all(tokens[row, stop:] == PAD)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.asarray(tokens)[..., None], axis=-1)[..., 0]
    valid = np.cumsum(tokens == EOS, axis=1) - (tokens == EOS) == 0
    np.testing.assert_allclose(jnp.sum(jnp.where(valid, picked, 0.0), axis=1), scores, atol=1e-5)

    beam1_tokens, beam1_scores = beam(variables, src, max_len=MAX_LEN, beam_size=1)
    np.testing.assert_array_equal(beam1_tokens, tokens)
    np.testing.assert_allclose(beam1_scores, scores, atol=1e-5)

    beam_tokens, beam_scores = beam(variables, src, max_len=MAX_LEN, beam_size=4)
    assert beam_tokens.shape == (2, MAX_LEN)
    assert bool(jnp.all(beam_scores >= scores - 1e-5))


def test_decoders_handle_eos():
    model, variables, _, _, _ = _model(False, "gru")
    # Make EOS the most likely output everywhere: greedy emits it first and pads after.
    params = jax.tree.map(lambda x: x, variables["params"])
    bias = params["decoder"]["out"]["bias"]
    params["decoder"]["out"]["bias"] = bias.at[EOS].set(100.0)
    tokens = greedy_decode(model, {"params": params}, _source(), 4)
    np.testing.assert_array_equal(tokens, [[EOS, PAD, PAD, PAD]] * 2)
    best, score = beam_search(
        model, {"params": params}, _source(), 4, beam_size=3, length_penalty=0.6
    )
    np.testing.assert_array_equal(best, tokens)
    assert bool(jnp.all(score > -1e-3))


def test_encode_and_decode_step_methods():
    model, variables, apply, _, _ = _model(True, "lstm")
    src = _source()
    memory, carry = model.apply(variables, src, method=Seq2Seq.encode)
    assert memory["states"].shape == (2, 5, 8) and memory["mask"].shape == (2, 5)
    _, logits = model.apply(
        variables, carry, jnp.full((2,), BOS), memory, method=Seq2Seq.decode_step
    )
    first = apply(variables, src, jnp.full((2, 1), BOS))[:, 0]
    np.testing.assert_allclose(logits, first, atol=1e-6)


def test_bfloat16_attention_traces():
    model = Seq2Seq(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        cell="lstm",
        hidden_size=8,
        attention=True,
        dtype=jnp.bfloat16,
    )
    src = jax.ShapeDtypeStruct((2, 5), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.key(0), src, src)
    assert jax.eval_shape(model.apply, variables, src, src).shape == (2, 5, VOCAB)
    tokens = jax.eval_shape(
        functools.partial(beam_search, model, max_len=4, beam_size=2), variables, src
    )[0]
    assert tokens.shape == (2, 4)


def test_reserved_ids_default_to_the_vocabulary():
    model = Seq2Seq(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    assert (model.pad_id, model.bos_id, model.eos_id) == (
        vocabulary.PAD,
        vocabulary.BOS,
        vocabulary.EOS,
    )
