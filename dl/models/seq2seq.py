"""Recurrent encoder-decoder (sequence-to-sequence) over token ids, with optional attention.

Token conventions: ``PAD = 0``, ``BOS = 1`` (start), ``EOS = 2`` (end), ``UNK = 3``; the
``Vocabulary`` helper reserves these ids and maps characters / tokens to the ids after them.

``Seq2Seq.__call__`` is teacher forcing (returns raw logits). Inference goes through the
module-level ``greedy_decode`` and ``beam_search``, which call ``Seq2Seq.encode`` once and then
``Seq2Seq.decode_step`` once per output token inside a ``lax.scan``, carrying the decoder state
(the prefix is never re-run). Both are jit-able with ``max_len`` / ``beam_size`` static, e.g.
``jax.jit(functools.partial(greedy_decode, model), static_argnames="max_len")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.recurrent import StackedRecurrent, carry_hidden, make_cell

Array = jax.Array
Dtype = Any
Carry = Any

PAD = 0
BOS = 1
EOS = 2
UNK = 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")

_NEG_INF = -1e9


class DecoderStep(nn.Module):
    """One decoder time step: (optional) attention, stacked cells, output projection.

    With ``attention`` this is Bahdanau (additive) attention: the query is the top-layer
    decoder hidden state *before* the step, ``s_{t-1}``::

        e_{t,j}  = v^T tanh(W_k h_j + W_q s_{t-1})     # W_k h_j precomputed by Seq2Seq.encode
        a_t      = softmax_j(e_{t,j}) over valid source positions (src != PAD)
        ctx_t    = sum_j a_{t,j} h_j
        s_t      = cells([embed(y_{t-1}); ctx_t], s_{t-1})
        logits_t = W_o [s_t; ctx_t] + b_o

    Without attention: ``s_t = cells(embed(y_{t-1}), s_{t-1})`` and ``logits_t = W_o s_t + b_o``.

    Attributes:
        cell: Cell name (``rnn`` | ``lstm`` | ``gru``).
        hidden_size: Hidden size of every layer.
        num_layers: Number of stacked cells.
        tgt_vocab_size: Output vocabulary size.
        attention: Use Bahdanau attention.
        dtype: Computation dtype.
    """

    cell: str
    hidden_size: int
    num_layers: int
    tgt_vocab_size: int
    attention: bool = False
    dtype: Dtype = jnp.float32

    def setup(self):
        self.cells = [
            make_cell(self.cell, self.hidden_size, dtype=self.dtype) for _ in range(self.num_layers)
        ]
        if self.attention:
            self.query = Dense(self.hidden_size, use_bias=False, dtype=self.dtype)
            self.energy = Dense(1, use_bias=False, dtype=self.dtype)
        self.out = Dense(self.tgt_vocab_size, dtype=self.dtype)

    def __call__(
        self, carry: Sequence[Carry], emb_t: Array, memory: dict[str, Array]
    ) -> tuple[tuple[Carry, ...], Array]:
        """Runs one step.

        Args:
            carry: Tuple of per-layer cell carries.
            emb_t: Embedded previous token ``[batch, embed]``.
            memory: Output of ``Seq2Seq.encode``: ``states [batch, S, hidden]``,
                ``mask [batch, S]`` and, with attention, ``keys [batch, S, hidden]``.

        Returns:
            ``(new_carry, logits)`` with logits ``[batch, tgt_vocab]``.
        """
        h = emb_t
        if self.attention:
            query = self.query(carry_hidden(carry[-1]))  # [batch, hidden]
            energy = self.energy(jnp.tanh(memory["keys"] + query[:, None, :]))[..., 0]  # [b, S]
            energy = jnp.where(memory["mask"], energy, _NEG_INF)
            weights = jax.nn.softmax(energy.astype(jnp.float32), axis=-1)  # [batch, S]
            context = jnp.einsum(
                "bs,bsh->bh", weights.astype(self.dtype), memory["states"]
            )  # [batch, hidden]
            h = jnp.concatenate([h, context], axis=-1)
        new_carry = []
        for cell, c in zip(self.cells, carry, strict=True):
            c, h = cell(c, h)
            new_carry.append(c)
        if self.attention:
            h = jnp.concatenate([h, context], axis=-1)
        return tuple(new_carry), self.out(h)


class Seq2Seq(nn.Module):
    """Recurrent encoder-decoder with teacher forcing in ``__call__``.

    The encoder is a unidirectional ``StackedRecurrent`` over embedded source tokens, masked by
    ``src != PAD`` (source padding never changes a result). The decoder (``DecoderStep``) has the
    same number of layers and starts from the encoder's per-layer final carries. With
    ``attention=True`` the decoder uses Bahdanau additive attention over the encoder outputs,
    masked by source padding (see ``DecoderStep``).

    Attributes:
        src_vocab_size: Source vocabulary size (ids include the reserved ``PAD..UNK``).
        tgt_vocab_size: Target vocabulary size.
        cell: Cell name (``rnn`` | ``lstm`` | ``gru``).
        embed_dim: Token embedding size (source and target).
        hidden_size: Hidden size of every encoder / decoder layer.
        num_layers: Number of encoder layers (= decoder layers).
        attention: Use Bahdanau attention.
        dropout_rate: Dropout on embeddings and encoder outputs during training.
        dtype: Computation dtype.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    cell: str = "gru"
    embed_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    attention: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

    def setup(self):
        self.src_embed = nn.Embed(self.src_vocab_size, self.embed_dim, dtype=self.dtype)
        self.tgt_embed = nn.Embed(self.tgt_vocab_size, self.embed_dim, dtype=self.dtype)
        self.encoder = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
        )
        if self.attention:
            self.attention_keys = Dense(self.hidden_size, use_bias=False, dtype=self.dtype)
        self.decoder = DecoderStep(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            tgt_vocab_size=self.tgt_vocab_size,
            attention=self.attention,
            dtype=self.dtype,
        )
        self.dropout = Dropout(rate=self.dropout_rate)

    def encode(
        self, src: Array, *, train: bool = False
    ) -> tuple[dict[str, Array], tuple[Carry, ...]]:
        """Encodes a padded source batch.

        Args:
            src: Int ids ``[batch, S]`` padded with ``PAD``.
            train: Enables dropout.

        Returns:
            ``(memory, carry)``: ``memory`` holds ``states [batch, S, hidden]`` (zero at padding),
            ``mask [batch, S]`` and, with attention, ``keys [batch, S, hidden]``; ``carry`` is
            the tuple of per-layer final encoder carries, the decoder's initial state.
        """
        src = jnp.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"expected src ids [batch, S], got shape {tuple(src.shape)}")
        mask = src != PAD  # [batch, S]
        emb = self.dropout(self.src_embed(src), deterministic=not train)  # [batch, S, embed]
        carry, states = self.encoder(emb, mask=mask, train=train)  # states: [batch, S, hidden]
        states = self.dropout(states, deterministic=not train)
        memory = {"states": states, "mask": mask}
        if self.attention:
            memory["keys"] = self.attention_keys(states)  # [batch, S, hidden]
        return memory, carry

    def decode_step(
        self, carry: Sequence[Carry], token: Array, memory: dict[str, Array]
    ) -> tuple[tuple[Carry, ...], Array]:
        """Advances the decoder by one token (inference, no dropout).

        Args:
            carry: Per-layer decoder carries (initially the ``carry`` from ``encode``).
            token: Previous output token ids ``[batch]`` (``BOS`` at the first step).
            memory: The ``memory`` from ``encode``.

        Returns:
            ``(new_carry, logits)`` with logits ``[batch, tgt_vocab]``.
        """
        return self.decoder(carry, self.tgt_embed(token), memory)

    def __call__(self, src: Array, tgt_in: Array, *, train: bool = False) -> Array:
        """Teacher-forced decoding.

        Args:
            src: Source ids ``[batch, S]`` padded with ``PAD``.
            tgt_in: Decoder input ids ``[batch, T]``, starting with ``BOS`` (the target shifted
                right).
            train: Enables dropout (needs a ``dropout`` RNG when ``dropout_rate > 0``).

        Returns:
            Logits ``[batch, T, tgt_vocab]`` for the next token at every position.
        """
        memory, carry = self.encode(src, train=train)
        tgt_in = jnp.asarray(tgt_in)
        if tgt_in.ndim != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"expected tgt_in [batch={src.shape[0]}, T], got shape {tuple(tgt_in.shape)}"
            )
        emb = self.dropout(self.tgt_embed(tgt_in), deterministic=not train)  # [batch, T, embed]
        scan = nn.scan(
            lambda decoder, c, e, mem: decoder(c, e, mem),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=(1, nn.broadcast),
            out_axes=1,
        )
        _, logits = scan(self.decoder, carry, emb, memory)  # [batch, T, vocab]
        return logits


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
        src: Source ids ``[batch, S]`` padded with ``PAD``.
        max_len: Number of output steps (static).
        return_scores: Also return the log-probability of each output.

    Returns:
        Tokens ``[batch, max_len]`` (without the leading ``BOS``; ``EOS`` kept, then ``PAD``),
        and with ``return_scores`` the ``[batch]`` summed log-probabilities of the tokens up to
        and including the first ``EOS``.
    """
    memory, carry = module.apply(variables, src, method=Seq2Seq.encode)
    batch = src.shape[0]

    def body(state, _):
        carry, token, done, score = state
        carry, logits = module.apply(variables, carry, token, memory, method=Seq2Seq.decode_step)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [batch, vocab]
        next_token = jnp.argmax(log_probs, axis=-1)
        step_score = jnp.take_along_axis(log_probs, next_token[:, None], axis=-1)[:, 0]
        next_token = jnp.where(done, PAD, next_token)
        score = score + jnp.where(done, 0.0, step_score)
        done = done | (next_token == EOS)
        return (carry, next_token, done, score), next_token

    init = (
        carry,
        jnp.full((batch,), BOS, jnp.int32),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
    )
    (_, _, _, scores), tokens = jax.lax.scan(body, init, None, length=max_len)
    tokens = tokens.T.astype(jnp.int32)  # [batch, max_len]
    return (tokens, scores) if return_scores else tokens


def _length_norm(lengths: Array, alpha: float) -> Array:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


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
    ``|y|`` counts tokens up to and including ``EOS``; ``length_penalty=0`` ranks by the raw
    log-probability. A finished hypothesis (one that emitted ``EOS``) stays in the beam, extended
    only by ``PAD`` at no cost. With ``beam_size=1`` this is exactly ``greedy_decode``.

    Args:
        module: The ``Seq2Seq`` model.
        variables: Its variables.
        src: Source ids ``[batch, S]`` padded with ``PAD``.
        max_len: Number of output steps (static).
        beam_size: Number of hypotheses kept (static, at most ``tgt_vocab_size``).
        length_penalty: GNMT length-penalty exponent ``alpha``.

    Returns:
        ``(tokens, scores)``: the best hypothesis per example ``[batch, max_len]`` (without
        ``BOS``; ``EOS`` kept, then ``PAD``) and its ``[batch]`` length-normalised score (the
        summed log-probability when ``length_penalty=0``).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if beam_size > module.tgt_vocab_size:
        raise ValueError(f"beam_size={beam_size} exceeds tgt_vocab_size={module.tgt_vocab_size}")
    batch, k = src.shape[0], beam_size
    memory, carry = module.apply(variables, src, method=Seq2Seq.encode)

    def tile(x: Array) -> Array:
        return jnp.repeat(x, k, axis=0)  # [batch * k, ...]

    memory = jax.tree_util.tree_map(tile, memory)
    carry = jax.tree_util.tree_map(tile, carry)
    vocab = module.tgt_vocab_size
    # Only finished hypotheses may continue, and only with PAD at zero cost.
    pad_row = jnp.full((vocab,), _NEG_INF, jnp.float32).at[PAD].set(0.0)  # [vocab]
    batch_offset = (jnp.arange(batch) * k)[:, None]  # [batch, 1]

    def body(state, t):
        carry, tokens, raw, finished, lengths = state
        last = jnp.where(t == 0, BOS, tokens[:, :, jnp.maximum(t - 1, 0)])  # [batch, k]
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
        finished = prev_finished | (token == EOS)
        tokens = jnp.take_along_axis(tokens, beam_idx[..., None], axis=1)
        tokens = tokens.at[:, :, t].set(token.astype(jnp.int32))
        carry = jax.tree_util.tree_map(lambda c: c[(batch_offset + beam_idx).reshape(-1)], carry)
        return (carry, tokens, raw, finished, lengths), None

    init = (
        carry,
        jnp.zeros((batch, k, max_len), jnp.int32),
        jnp.tile(jnp.array([0.0] + [_NEG_INF] * (k - 1), jnp.float32), (batch, 1)),
        jnp.zeros((batch, k), bool),
        jnp.zeros((batch, k), jnp.int32),
    )
    (_, tokens, raw, _, lengths), _ = jax.lax.scan(body, init, jnp.arange(max_len))
    scores = raw / _length_norm(lengths, length_penalty)  # [batch, k]
    best = jnp.argmax(scores, axis=-1)  # [batch]
    best_tokens = jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]
    best_scores = jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]
    return best_tokens, best_scores


class Vocabulary:
    """Maps characters (or tokens) to ids, with ``PAD, BOS, EOS, UNK`` reserved at ids 0..3.

    Example::

        vocab = Vocabulary("abc")
        ids = vocab.encode("cab", add_bos=True, add_eos=True, max_len=8)  # padded with PAD
        vocab.decode(ids)  # -> "cab"

    Args:
        tokens: The symbols, in id order (duplicates and the reserved strings are skipped). A
            string is read character by character.
        separator: Joins decoded symbols (``""`` for characters, ``" "`` for words).
    """

    def __init__(self, tokens: Iterable[str], separator: str = ""):
        self.separator = separator
        self.itos: list[str] = list(SPECIAL_TOKENS)
        for token in tokens:
            if token not in self.itos:
                self.itos.append(token)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[Sequence[str]], separator: str = "") -> Vocabulary:
        """Builds a vocabulary of every symbol in ``texts``, sorted.

        Args:
            texts: Strings (characters are symbols) or sequences of tokens.
            separator: See the class docstring.

        Returns:
            The vocabulary.
        """
        return cls(sorted({symbol for text in texts for symbol in text}), separator=separator)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def size(self) -> int:
        """Number of ids, reserved ones included."""
        return len(self.itos)

    def encode(
        self,
        text: Sequence[str],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        max_len: int | None = None,
        truncate: bool = False,
    ) -> np.ndarray:
        """Converts a sequence of symbols to ids; unknown symbols become ``UNK``.

        Args:
            text: A string (one symbol per character) or a sequence of tokens.
            add_bos: Prepend ``BOS``.
            add_eos: Append ``EOS``.
            max_len: If given, the result is padded with ``PAD`` to exactly ``max_len`` ids.
            truncate: With ``max_len``, drop trailing symbols (``BOS``/``EOS`` are kept) instead
                of raising.

        Returns:
            int32 ids ``[n]`` (``[max_len]`` when given).

        Raises:
            ValueError: For an empty ``text``, or one longer than ``max_len`` (``BOS``/``EOS``
                included) when ``truncate`` is False.
        """
        if len(text) == 0:
            raise ValueError("cannot encode an empty sequence")
        body = [self.stoi.get(symbol, UNK) for symbol in text]
        prefix = [BOS] if add_bos else []
        suffix = [EOS] if add_eos else []
        if max_len is not None:
            total = len(prefix) + len(body) + len(suffix)
            if total > max_len:
                if not truncate:
                    raise ValueError(
                        f"sequence of length {total} (BOS/EOS included) exceeds max_len={max_len}"
                    )
                room = max_len - len(prefix) - len(suffix)
                if room < 1:
                    raise ValueError(f"max_len={max_len} leaves no room for any symbol")
                body = body[:room]
        ids = prefix + body + suffix
        if max_len is not None:
            ids = ids + [PAD] * (max_len - len(ids))
        return np.asarray(ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[Sequence[str]], max_len: int, **kwargs) -> np.ndarray:
        """Encodes several sequences into one ``[n, max_len]`` int32 array.

        Args:
            texts: The sequences.
            max_len: Padded length.
            **kwargs: Passed to ``encode`` (``add_bos``, ``add_eos``, ``truncate``).

        Returns:
            int32 ids ``[n, max_len]``.
        """
        return np.stack([self.encode(t, max_len=max_len, **kwargs) for t in texts])

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Converts ids to symbols, stopping at the first ``EOS`` and dropping ``PAD``/``BOS``.

        Args:
            ids: 1-D ids (list, numpy or jax array).

        Returns:
            The symbols (``UNK`` decodes to ``"<unk>"``).

        Raises:
            ValueError: If an id is outside ``[0, size)``.
        """
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        for i in ids:
            if not 0 <= i < self.size:
                raise ValueError(f"token id {i} is outside the vocabulary of size {self.size}")
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Like ``decode_tokens``, joined with ``separator``.

        Args:
            ids: 1-D ids.

        Returns:
            The decoded text.
        """
        return self.separator.join(self.decode_tokens(ids))

    def decode_batch(self, ids: Any) -> list[str]:
        """Decodes every row of ``[n, length]`` ids."""
        return [self.decode(row) for row in np.asarray(ids)]
