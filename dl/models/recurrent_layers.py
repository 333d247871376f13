"""Recurrent layers: one cell run over time with ``lax.scan``, both directions, and stacks.

``RecurrentLayer`` runs one cell over a ``[batch, time, features]`` sequence with a lifted
``jax.lax.scan`` (``nn.scan``), so the compiled program does not grow with the sequence length.
Padding is handled by masking inside the scan: on a padded step the carry is held and the output
is zero, so padding never changes a result. A reverse layer scans from the last position to the
first; because padded steps hold the (initial) carry, the backward pass over a sequence of valid
length ``L`` effectively starts at position ``L - 1``, not at the padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from dl.models.dropout import Dropout
from dl.models.recurrent_cells import Carry, Dtype, make_cell, zero_carry
from dl.models.remat import rematerialize

Array = jax.Array


def sequence_mask(x: Array, lengths: Array | None = None, mask: Array | None = None) -> Array:
    """Builds the ``[batch, time]`` boolean validity mask of a ``[batch, time, ...]`` input.

    Args:
        x: Input whose first two axes are ``[batch, time]``.
        lengths: Optional ``[batch]`` int valid lengths (steps ``t >= length`` are padding).
        mask: Optional ``[batch, time]`` mask (nonzero = valid). Combined with ``lengths`` by AND.

    Returns:
        A ``[batch, time]`` bool array, all True when neither ``lengths`` nor ``mask`` is given.
    """
    batch, time = x.shape[:2]
    valid = jnp.ones((batch, time), dtype=bool)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape {(batch,)}, got {lengths.shape}")
        valid = valid & (jnp.arange(time)[None, :] < lengths[:, None])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != (batch, time):
            raise ValueError(f"mask must have shape {(batch, time)}, got {mask.shape}")
        valid = valid & mask.astype(bool)
    return valid


def _masked_step(cell: nn.Module, carry: Carry, x_t: Array, m_t: Array) -> tuple[Carry, Array]:
    """One cell step that holds the carry and zeroes the output where ``m_t`` is False."""
    new_carry, y = cell(carry, x_t)  # y: [batch, hidden]
    keep = m_t[:, None]  # [batch, 1]
    new_carry = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
    y = jnp.where(keep, y, jnp.zeros_like(y))
    return new_carry, y


class RecurrentLayer(nn.Module):
    """One recurrent cell run over time with a lifted ``lax.scan``.

    Padded steps (from ``lengths`` or ``mask``) hold the carry and output zeros. With
    ``reverse=True`` the scan runs from the last position to the first and outputs stay in the
    original time order; since the padding at the end holds the initial carry, the backward
    pass over a length-``L`` sequence starts at position ``L - 1``.

    Parameters live under ``cell`` (e.g. ``cell/input/kernel``).

    Attributes:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of the cell.
        reverse: Process the sequence from the end to the start.
        dtype: Computation dtype.
        param_dtype: Parameter dtype.
        remat: "off", or a policy of ``dl.models.remat.POLICIES``: each time step's
            cell activations are recomputed in the backward pass.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    reverse: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: str = "off"

    def setup(self):
        self.cell_module = make_cell(
            self.cell,
            self.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="cell",
        )

    def initialize_carry(self, batch_shape: Sequence[int]) -> Carry:
        """Returns the cell's zero carry for ``batch_shape`` (see the cell's docstring)."""
        return zero_carry(self.cell, self.hidden_size, batch_shape, self.dtype)

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        initial_carry: Carry | None = None,
    ) -> tuple[Carry, Array]:
        """Runs the cell over a batch of sequences.

        Args:
            x: Inputs ``[batch, time, features]``.
            lengths: Optional ``[batch]`` int valid lengths.
            mask: Optional ``[batch, time]`` validity mask (nonzero = valid).
            initial_carry: Optional initial carry; zeros by default.

        Returns:
            ``(final_carry, outputs)``: the carry after the last valid step of each sequence
            (for ``reverse=True``: after position 0) and the outputs ``[batch, time, hidden]``,
            zero at padded steps.
        """
        if x.ndim != 3:
            raise ValueError(f"expected input [batch, time, features], got shape {x.shape}")
        valid = sequence_mask(x, lengths, mask)  # [batch, time]
        carry = initial_carry
        if carry is None:
            carry = self.initialize_carry((x.shape[0],))
        scan = nn.scan(
            rematerialize(_masked_step, self.remat),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
            reverse=self.reverse,
        )
        return scan(self.cell_module, carry, x.astype(self.dtype), valid)

    def step(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """Advances the layer by a single time step (no masking).

        Args:
            carry: The layer's carry.
            x_t: Input ``[batch, features]``.

        Returns:
            ``(new_carry, y)`` with ``y`` of shape ``[batch, hidden]``.
        """
        return self.cell_module(carry, x_t.astype(self.dtype))


class Bidirectional(nn.Module):
    """A forward and a backward ``RecurrentLayer`` whose outputs are concatenated.

    Parameters live under ``forward`` and ``backward``. The backward layer respects ``lengths``
    (it starts at the last valid step).

    Attributes:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of each direction.
        dtype: Computation dtype.
        param_dtype: Parameter dtype.
        remat: see ``RecurrentLayer``.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: str = "off"

    def setup(self):
        kwargs = dict(
            cell=self.cell,
            hidden_size=self.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            remat=self.remat,
        )
        self.forward = RecurrentLayer(reverse=False, **kwargs)
        self.backward = RecurrentLayer(reverse=True, **kwargs)

    def initialize_carry(self, batch_shape: Sequence[int]) -> tuple[Carry, Carry]:
        """Returns the zero ``(forward_carry, backward_carry)``."""
        carry = zero_carry(self.cell, self.hidden_size, batch_shape, self.dtype)
        return carry, carry

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
    ) -> tuple[tuple[Carry, Carry], Array]:
        """Runs both directions.

        Args:
            x: Inputs ``[batch, time, features]``.
            lengths: Optional ``[batch]`` int valid lengths.
            mask: Optional ``[batch, time]`` validity mask.
            initial_carry: Optional ``(forward_carry, backward_carry)``.

        Returns:
            ``((forward_carry, backward_carry), outputs)`` with outputs
            ``[batch, time, 2 * hidden]`` (forward features first), zero at padded steps.
        """
        fwd0, bwd0 = (None, None) if initial_carry is None else initial_carry
        fwd_carry, fwd = self.forward(x, lengths=lengths, mask=mask, initial_carry=fwd0)
        bwd_carry, bwd = self.backward(x, lengths=lengths, mask=mask, initial_carry=bwd0)
        return (fwd_carry, bwd_carry), jnp.concatenate([fwd, bwd], axis=-1)


class StackedRecurrent(nn.Module):
    """``num_layers`` recurrent layers (optionally bidirectional) with dropout between layers.

    Parameters live under ``layers_0 .. layers_{n-1}``.

    Attributes:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of each layer (and of each direction).
        num_layers: Number of stacked layers.
        bidirectional: Use ``Bidirectional`` layers (outputs ``2 * hidden`` features).
        dropout_rate: Dropout on the inputs of layers 1..n-1 (needs a ``dropout`` RNG in train).
        dtype: Computation dtype.
        param_dtype: Parameter dtype.
        remat: see ``RecurrentLayer``.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: str = "off"

    def setup(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        layer_cls = Bidirectional if self.bidirectional else RecurrentLayer
        self.layers = [
            layer_cls(
                cell=self.cell,
                hidden_size=self.hidden_size,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                remat=self.remat,
            )
            for _ in range(self.num_layers)
        ]
        self.dropout = Dropout(rate=self.dropout_rate)

    @property
    def output_size(self) -> int:
        """Feature size of the outputs of the top layer."""
        return self.hidden_size * (2 if self.bidirectional else 1)

    def initialize_carry(self, batch_shape: Sequence[int]) -> tuple[Carry, ...]:
        """Returns the zero carries, one per layer, as a tuple."""
        carry = zero_carry(self.cell, self.hidden_size, batch_shape, self.dtype)
        if self.bidirectional:
            carry = (carry, carry)
        return tuple(carry for _ in range(self.num_layers))

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        initial_carry: Sequence[Carry] | None = None,
        train: bool = False,
    ) -> tuple[tuple[Carry, ...], Array]:
        """Runs the stack over a batch of sequences.

        Args:
            x: Inputs ``[batch, time, features]``.
            lengths: Optional ``[batch]`` int valid lengths.
            mask: Optional ``[batch, time]`` validity mask.
            initial_carry: Optional tuple of per-layer carries.
            train: Enables dropout between layers.

        Returns:
            ``(carries, outputs)``: a tuple of per-layer final carries and the top layer's
            outputs ``[batch, time, output_size]`` (zero at padded steps).
        """
        carries = []
        h = x
        for i, layer in enumerate(self.layers):
            if i > 0:
                h = self.dropout(h, deterministic=not train)
            carry0 = None if initial_carry is None else initial_carry[i]
            carry, h = layer(h, lengths=lengths, mask=mask, initial_carry=carry0)
            carries.append(carry)
        return tuple(carries), h

    def step(
        self, carry: Sequence[Carry], x_t: Array, *, train: bool = False
    ) -> tuple[tuple[Carry, ...], Array]:
        """Advances a unidirectional stack by one time step.

        Args:
            carry: Tuple of per-layer carries.
            x_t: Input ``[batch, features]``.
            train: Enables dropout between layers.

        Returns:
            ``(new_carries, y)`` with ``y`` of shape ``[batch, hidden]`` from the top layer.
        """
        if self.bidirectional:
            raise ValueError("step() is only defined for unidirectional stacks")
        new_carries = []
        h = x_t
        for i, layer in enumerate(self.layers):
            if i > 0:
                h = self.dropout(h, deterministic=not train)
            c, h = layer.step(carry[i], h)
            new_carries.append(c)
        return tuple(new_carries), h


__all__ = ["Bidirectional", "RecurrentLayer", "StackedRecurrent", "sequence_mask"]
