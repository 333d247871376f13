"""Free-running decoding of a `Seq2Seq` model: greedy and beam search.

Both call ``Seq2Seq.encode`` once and then ``Seq2Seq.decode_step`` once per
output token inside a ``lax.scan``, carrying the decoder state (the prefix is
never re-run). Both are jit-able with ``max_len`` / ``beam_size`` static, e.g.
``jax.jit(functools.partial(greedy_decode, model), static_argnames="max_len")``.
The reserved token ids are the model's ``pad_id``, ``bos_id`` and ``eos_id``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from dl.models.seq2seq import NEG_INF, Seq2Seq

Array = jax.Array


def greedy_decode(
    module: Seq2Seq,
    variables: Any,
    src: Array,
    max_len: int,
    *,
    return_scores: bool = False,
) -> Array | tuple[Array, Array]:
    """Greedy (argmax) decoding.

    Args:
        module: The ``Seq2Seq`` model.
        variables: Its variables.
        src: Source ids ``[batch, S]`` padded with ``module.pad_id``.
        max_len: Number of output steps (static).
        return_scores: Also return the log-probability of each output.

    Returns:
        Tokens ``[batch, max_len]`` (without the leading BOS; EOS kept, then PAD), and with
        ``return_scores`` the ``[batch]`` summed log-probabilities of the tokens up to and
        including the first EOS.
    """
    memory, carry = module.apply(variables, src, method=Seq2Seq.encode)
    batch = src.shape[0]
    pad, bos, eos = module.pad_id, module.bos_id, module.eos_id

    def body(state, _):
        carry, token, done, score = state
        carry, logits = module.apply(variables, carry, token, memory, method=Seq2Seq.decode_step)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [batch, vocab]
        next_token = jnp.argmax(log_probs, axis=-1)
        step_score = jnp.take_along_axis(log_probs, next_token[:, None], axis=-1)[:, 0]
        next_token = jnp.where(done, pad, next_token)
        score = score + jnp.where(done, 0.0, step_score)
        done = done | (next_token == eos)
        return (carry, next_token, done, score), next_token

    init = (
        carry,
        jnp.full((batch,), bos, jnp.int32),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
    )
    (_, _, _, scores), tokens = jax.lax.scan(body, init, None, length=max_len)
    tokens = tokens.T.astype(jnp.int32)  # [batch, max_len]
    return (tokens, scores) if return_scores else tokens


def _length_norm(lengths: Array, alpha: float) -> Array:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


def _best_hypothesis(
    tokens: Array, raw: Array, lengths: Array, length_penalty: float
) -> tuple[Array, Array]:
    """The best of each example's beams.

    Args:
        tokens: ``[batch, k, max_len]`` hypotheses.
        raw: ``[batch, k]`` summed log-probabilities.
        lengths: ``[batch, k]`` tokens up to and including EOS.
        length_penalty: GNMT length-penalty exponent.

    Returns:
        ``(tokens [batch, max_len], scores [batch])`` of the best-scoring hypotheses.
    """
    scores = raw / _length_norm(lengths, length_penalty)  # [batch, k]
    best = jnp.argmax(scores, axis=-1)  # [batch]
    best_tokens = jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]
    best_scores = jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]
    return best_tokens, best_scores


def beam_search(
    module: Seq2Seq,
    variables: Any,
    src: Array,
    max_len: int,
    beam_size: int = 4,
    length_penalty: float = 0.0,
) -> tuple[Array, Array]:
    """Beam search decoding.

    Hypotheses are ranked by ``log p(y) / ((5 + |y|) / 6) ** length_penalty`` (GNMT), where
    ``|y|`` counts tokens up to and including EOS; ``length_penalty=0`` ranks by the raw
    log-probability. A finished hypothesis (one that emitted EOS) stays in the beam, extended
    only by PAD at no cost. With ``beam_size=1`` this is exactly ``greedy_decode``.

    Args:
        module: The ``Seq2Seq`` model.
        variables: Its variables.
        src: Source ids ``[batch, S]`` padded with ``module.pad_id``.
        max_len: Number of output steps (static).
        beam_size: Number of hypotheses kept (static, at most ``tgt_vocab_size``).
        length_penalty: GNMT length-penalty exponent ``alpha``.

    Returns:
        ``(tokens, scores)``: the best hypothesis per example ``[batch, max_len]`` (without
        BOS; EOS kept, then PAD) and its ``[batch]`` length-normalised score (the
        summed log-probability when ``length_penalty=0``).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if beam_size > module.tgt_vocab_size:
        raise ValueError(f"beam_size={beam_size} exceeds tgt_vocab_size={module.tgt_vocab_size}")
    batch, k = src.shape[0], beam_size
    memory, carry = module.apply(variables, src, method=Seq2Seq.encode)
    pad, bos, eos = module.pad_id, module.bos_id, module.eos_id

    def tile(x: Array) -> Array:
        return jnp.repeat(x, k, axis=0)  # [batch * k, ...]

    memory = jax.tree_util.tree_map(tile, memory)
    carry = jax.tree_util.tree_map(tile, carry)
    vocab = module.tgt_vocab_size
    # Finished hypotheses continue only with PAD, at zero cost.
    pad_row = jnp.full((vocab,), NEG_INF, jnp.float32).at[pad].set(0.0)  # [vocab]
    batch_offset = (jnp.arange(batch) * k)[:, None]  # [batch, 1]

    def body(state, t):
        carry, tokens, raw, finished, lengths = state
        last = jnp.where(t == 0, bos, tokens[:, :, jnp.maximum(t - 1, 0)])  # [batch, k]
        carry, logits = module.apply(
            variables, carry, last.reshape(-1), memory, method=Seq2Seq.decode_step
        )
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        log_probs = log_probs.reshape(batch, k, vocab)  # [batch, k, vocab]
        cand = jnp.where(
            finished[..., None], raw[..., None] + pad_row, raw[..., None] + log_probs
        )  # [batch, k, vocab]
        cand_len = jnp.where(finished, lengths, lengths + 1)  # [batch, k]
        ranked = cand / _length_norm(cand_len, length_penalty)[..., None]
        _, flat_idx = jax.lax.top_k(ranked.reshape(batch, k * vocab), k)  # [batch, k]
        beam_idx, token = flat_idx // vocab, flat_idx % vocab  # [batch, k]
        raw = jnp.take_along_axis(cand.reshape(batch, -1), flat_idx, axis=1)
        prev_finished = jnp.take_along_axis(finished, beam_idx, axis=1)
        lengths = jnp.take_along_axis(cand_len, beam_idx, axis=1)
        finished = prev_finished | (token == eos)
        tokens = jnp.take_along_axis(tokens, beam_idx[..., None], axis=1)
        tokens = tokens.at[:, :, t].set(token.astype(jnp.int32))
        carry = jax.tree_util.tree_map(lambda c: c[(batch_offset + beam_idx).reshape(-1)], carry)
        return (carry, tokens, raw, finished, lengths), None

    init = (
        carry,
        jnp.zeros((batch, k, max_len), jnp.int32),
        jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch, 1)),
        jnp.zeros((batch, k), bool),
        jnp.zeros((batch, k), jnp.int32),
    )
    (_, tokens, raw, _, lengths), _ = jax.lax.scan(body, init, jnp.arange(max_len))
    return _best_hypothesis(tokens, raw, lengths, length_penalty)


__all__ = ["beam_search", "greedy_decode"]
