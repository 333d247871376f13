"""Recurrent heads: sequence classification, forecasting and a character language model.

They run the layers of dl.models.recurrent_layers over the cells of
dl.models.recurrent_cells and return raw logits / values (never softmax).
Sampling text from a ``CharLM`` is dl.models.sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from dl.models.dense import Dense
from dl.models.dropout import Dropout
from dl.models.recurrent_cells import Carry, Dtype, zero_carry
from dl.models.recurrent_layers import StackedRecurrent

Array = jax.Array


def _as_sequence(x: Array) -> Array:
    """Accepts ``[batch, time, features]`` or images ``[batch, H, W, C]`` (rows as time steps)."""
    if x.ndim == 3:
        return x
    if x.ndim == 4:
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])  # [batch, H, W * C]
    raise ValueError(
        "expected a sequence [batch, time, features] (rank 3) or an image "
        f"[batch, height, width, channels] (rank 4), got shape {tuple(x.shape)} (rank {x.ndim})"
    )


def _last_valid(outputs: Array, lengths: Array | None, hidden_size: int, bidirectional: bool):
    """Reads out the final state of each direction from ``[batch, time, D]`` outputs.

    Forward: the output at the last valid step ``lengths - 1``; backward (when bidirectional):
    the output at step 0, which is where the backward pass ends. Returns ``[batch, D]``.
    """
    batch, time = outputs.shape[:2]
    if lengths is None:
        last = jnp.full((batch,), time - 1)
    else:
        last = jnp.clip(jnp.asarray(lengths) - 1, 0, time - 1)
    fwd = outputs[jnp.arange(batch), last, :hidden_size]  # [batch, hidden]
    if not bidirectional:
        return fwd
    bwd = outputs[:, 0, hidden_size:]  # [batch, hidden]
    return jnp.concatenate([fwd, bwd], axis=-1)


class RecurrentClassifier(nn.Module):
    """Sequence classifier: stacked recurrent layers, last-step readout, Dense to logits.

    Images ``[batch, H, W, C]`` are read row by row: ``H`` time steps of ``W * C`` features
    (e.g. 8x8 digits become 8 steps of 8 features).

    The readout is the top layer's output at the last valid step (``lengths - 1``, or the last
    position without ``lengths``); when bidirectional, the backward direction's final state
    (its output at step 0) is concatenated to it.

    Attributes:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of each layer / direction.
        num_layers: Number of stacked recurrent layers.
        bidirectional: Use bidirectional layers.
        num_outputs: Number of classes (logits).
        dropout_rate: Dropout between layers and before the readout Dense.
        dtype: Computation dtype.
        remat: "off", or a policy of `dl.models.remat.POLICIES` (per time step).
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    num_outputs: int = 10
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, x: Array, *, lengths: Array | None = None, train: bool = False) -> Array:
        """Classifies a batch of sequences.

        Args:
            x: ``[batch, time, features]`` or an image ``[batch, H, W, C]``.
            lengths: Optional ``[batch]`` int valid lengths.
            train: Enables dropout.

        Returns:
            Logits ``[batch, num_outputs]``.

        Raises:
            ValueError: If ``x`` is not of rank 3 or 4.
        """
        x = _as_sequence(jnp.asarray(x))  # [batch, time, features]
        _, outputs = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            remat=self.remat,
            name="rnn",
        )(x, lengths=lengths, train=train)  # [batch, time, D]
        h = _last_valid(outputs, lengths, self.hidden_size, self.bidirectional)  # [batch, D]
        h = Dropout(rate=self.dropout_rate)(h, deterministic=not train)
        return Dense(self.num_outputs, dtype=self.dtype, name="head")(h)


class RecurrentRegressor(nn.Module):
    """Sequence-to-value / multi-step forecasting head for time series.

    Reads the top layer's state at the last valid step and maps it with one Dense to
    ``horizon * num_outputs`` values: the next ``horizon`` steps of ``num_outputs`` features.
    By default (``flatten=True``) they come back as ``[batch, horizon * num_outputs]``, step-major
    (``y[:, s * num_outputs + f]`` is feature ``f`` of future step ``s``), which is what a
    regression loss over "outputs per example" expects; ``flatten=False`` gives
    ``[batch, horizon, num_outputs]``.

    Attributes:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of each layer.
        num_layers: Number of stacked recurrent layers.
        horizon: Number of future steps predicted.
        num_outputs: Features predicted per future step.
        flatten: Return ``[batch, horizon * num_outputs]`` (default) instead of
            ``[batch, horizon, num_outputs]``.
        dropout_rate: Dropout between layers and before the readout Dense.
        dtype: Computation dtype.
        remat: "off", or a policy of `dl.models.remat.POLICIES` (per time step).
    """

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    horizon: int = 1
    num_outputs: int = 1
    flatten: bool = True
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    remat: str = "off"

    @nn.compact
    def __call__(self, x: Array, *, lengths: Array | None = None, train: bool = False) -> Array:
        """Predicts the next ``horizon`` steps.

        Args:
            x: ``[batch, time, features]``, or ``[batch, time]`` for a univariate series.
            lengths: Optional ``[batch]`` int valid lengths.
            train: Enables dropout.

        Returns:
            ``[batch, horizon * num_outputs]``, or ``[batch, horizon, num_outputs]`` when
            ``flatten`` is False.

        Raises:
            ValueError: If ``x`` is not of rank 2 or 3.
        """
        x = jnp.asarray(x)
        if x.ndim == 2:
            x = x[..., None]  # [batch, time, 1]
        if x.ndim != 3:
            raise ValueError(
                "expected [batch, time, features] or [batch, time], got shape "
                f"{tuple(x.shape)} (rank {x.ndim})"
            )
        _, outputs = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            remat=self.remat,
            name="rnn",
        )(x, lengths=lengths, train=train)  # [batch, time, hidden]
        h = _last_valid(outputs, lengths, self.hidden_size, False)  # [batch, hidden]
        h = Dropout(rate=self.dropout_rate)(h, deterministic=not train)
        y = Dense(self.horizon * self.num_outputs, dtype=self.dtype, name="head")(h)
        if self.flatten:
            return y  # [batch, horizon * num_outputs]
        return y.reshape(y.shape[0], self.horizon, self.num_outputs)


class CharLM(nn.Module):
    """Character (token) language model: embedding, stacked recurrent layers, Dense(vocab).

    Attributes:
        vocab_size: Number of token ids.
        embed_dim: Embedding size.
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of each layer.
        num_layers: Number of stacked recurrent layers.
        dropout_rate: Dropout on the embeddings, between layers and before the output Dense.
        dtype: Computation dtype.
        remat: "off", or a policy of `dl.models.remat.POLICIES` (per time step).
    """

    vocab_size: int
    embed_dim: int = 64
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 1
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    remat: str = "off"

    def setup(self):
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.rnn = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            remat=self.remat,
        )
        self.dropout = Dropout(rate=self.dropout_rate)
        self.head = Dense(self.vocab_size, dtype=self.dtype)

    def initialize_carry(self, batch_size: int) -> tuple[Carry, ...]:
        """Returns the zero per-layer carries for ``batch_size`` sequences."""
        carry = zero_carry(self.cell, self.hidden_size, (batch_size,), self.dtype)
        return tuple(carry for _ in range(self.num_layers))

    def __call__(
        self,
        tokens: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Sequence[Carry] | None = None,
        train: bool = False,
        return_carry: bool = False,
    ) -> Array | tuple[tuple[Carry, ...], Array]:
        """Predicts the next token at every position.

        Args:
            tokens: Int token ids ``[batch, time]``.
            lengths: Optional ``[batch]`` valid lengths.
            initial_carry: Optional per-layer carries (e.g. from a previous chunk).
            train: Enables dropout.
            return_carry: Also return the final per-layer carries.

        Returns:
            Logits ``[batch, time, vocab]``, or ``(carries, logits)`` if ``return_carry``.
        """
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"expected int tokens [batch, time], got shape {tuple(tokens.shape)}")
        h = self.dropout(self.embed(tokens), deterministic=not train)  # [batch, time, embed]
        carries, h = self.rnn(h, lengths=lengths, initial_carry=initial_carry, train=train)
        h = self.dropout(h, deterministic=not train)  # [batch, time, hidden]
        logits = self.head(h)  # [batch, time, vocab]
        return (carries, logits) if return_carry else logits

    def step(self, carry: Sequence[Carry], token: Array) -> tuple[tuple[Carry, ...], Array]:
        """Advances the model by one token (inference, no dropout).

        Args:
            carry: Per-layer carries.
            token: Int token ids ``[batch]``.

        Returns:
            ``(new_carries, logits)`` with logits ``[batch, vocab]``.
        """
        carry, h = self.rnn.step(carry, self.embed(token))
        return carry, self.head(h)


__all__ = ["CharLM", "RecurrentClassifier", "RecurrentRegressor"]
