"""Recurrent encoder-decoder (sequence-to-sequence) over token ids, with optional attention.

``Seq2Seq.__call__`` is teacher forcing (returns raw logits). Inference goes
through dl.models.seq2seq_decode (``greedy_decode``, ``beam_search``), which
calls ``Seq2Seq.encode`` once and ``Seq2Seq.decode_step`` once per output
token. The reserved token ids are fields (``pad_id``, ``bos_id``,
``eos_id``) whose defaults are those of dl.data.vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.recurrent_cells import carry_hidden, make_cell
from dl.models.recurrent_layers import StackedRecurrent
from dl.models.remat import rematerialize

Array = jax.Array
Dtype = Any
Carry = Any

NEG_INF = -1e9  # the logit of a masked attention position or of an impossible beam


class DecoderStep(nn.Module):
    """One decoder time step: (optional) attention, stacked cells, output projection.

    With ``attention`` this is Bahdanau (additive) attention: the query is the top-layer
    decoder hidden state *before* the step, ``s_{t-1}``::

        e_{t,j}  = v^T tanh(W_k h_j + W_q s_{t-1})     # W_k h_j precomputed by Seq2Seq.encode
        a_t      = softmax_j(e_{t,j}) over valid source positions (src != pad_id)
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
            energy = jnp.where(memory["mask"], energy, NEG_INF)
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
    ``src != pad_id`` (source padding never changes a result). The decoder (``DecoderStep``) has the
    same number of layers and starts from the encoder's per-layer final carries. With
    ``attention=True`` the decoder uses Bahdanau additive attention over the encoder outputs,
    masked by source padding (see ``DecoderStep``).

    Attributes:
        src_vocab_size: Source vocabulary size (ids include the reserved ones).
        tgt_vocab_size: Target vocabulary size.
        cell: Cell name (``rnn`` | ``lstm`` | ``gru``).
        embed_dim: Token embedding size (source and target).
        hidden_size: Hidden size of every encoder / decoder layer.
        num_layers: Number of encoder layers (= decoder layers).
        attention: Use Bahdanau attention.
        dropout_rate: Dropout on embeddings and encoder outputs during training.
        dtype: Computation dtype.
        remat: ``"off"``, or a policy of ``dl.models.remat.POLICIES``: each encoder time step and
            each decoder step is recomputed in the backward pass.
        pad_id: Id of source and target padding (``dl.data.vocabulary.PAD``).
        bos_id: Id that starts every decoder input (``dl.data.vocabulary.BOS``).
        eos_id: Id that ends every target (``dl.data.vocabulary.EOS``).
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
    remat: str = "off"
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def setup(self):
        self.src_embed = nn.Embed(self.src_vocab_size, self.embed_dim, dtype=self.dtype)
        self.tgt_embed = nn.Embed(self.tgt_vocab_size, self.embed_dim, dtype=self.dtype)
        self.encoder = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            remat=self.remat,
        )
        if self.attention:
            self.attention_keys = Dense(self.hidden_size, use_bias=False, dtype=self.dtype)
        self.decoder = rematerialize(DecoderStep, self.remat)(
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
            src: Int ids ``[batch, S]`` padded with ``pad_id``.
            train: Enables dropout.

        Returns:
            ``(memory, carry)``: ``memory`` holds ``states [batch, S, hidden]`` (zero at padding),
            ``mask [batch, S]`` and, with attention, ``keys [batch, S, hidden]``; ``carry`` is
            the tuple of per-layer final encoder carries, the decoder's initial state.
        """
        src = jnp.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"expected src ids [batch, S], got shape {tuple(src.shape)}")
        mask = src != self.pad_id  # [batch, S]
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
            token: Previous output token ids ``[batch]`` (``bos_id`` at the first step).
            memory: The ``memory`` from ``encode``.

        Returns:
            ``(new_carry, logits)`` with logits ``[batch, tgt_vocab]``.
        """
        return self.decoder(carry, self.tgt_embed(token), memory)

    def __call__(self, src: Array, tgt_in: Array, *, train: bool = False) -> Array:
        """Teacher-forced decoding.

        Args:
            src: Source ids ``[batch, S]`` padded with ``pad_id``.
            tgt_in: Decoder input ids ``[batch, T]``, starting with ``bos_id`` (the target shifted
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


__all__ = ["DecoderStep", "NEG_INF", "Seq2Seq"]
