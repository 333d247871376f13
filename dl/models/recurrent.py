"""Recurrent networks: Elman RNN, LSTM and GRU cells, layers run with ``lax.scan``, and heads.

Everything here is a pure Flax linen module; heads return raw logits / values (never softmax).

Cells share one interface:

* ``cell(carry, x) -> (new_carry, y)`` with ``x`` of shape ``[*batch, features]`` and ``y`` the new
  hidden state ``[*batch, hidden_size]``.
* ``cell.initialize_carry(batch_shape) -> carry``: an all-zero carry for a batch of shape
  ``batch_shape`` (a tuple such as ``(batch,)``). It needs no RNG and no parameters, so it can be
  called on an unbound module. The carry is an array ``[*batch, hidden]`` for ``SimpleRNNCell`` and
  ``GRUCell`` and a tuple ``(c, h)`` of two such arrays for ``LSTMCell``; ``carry_hidden`` returns
  the hidden state ``h`` of any of them.

``RecurrentLayer`` runs one cell over a ``[batch, time, features]`` sequence with a lifted
``jax.lax.scan`` (``nn.scan``), so the compiled program does not grow with the sequence length.
Padding is handled by masking inside the scan: on a padded step the carry is held and the output
is zero, so padding never changes a result. A reverse layer scans from the last position to the
first; because padded steps hold the (initial) carry, the backward pass over a sequence of valid
length ``L`` effectively starts at position ``L - 1``, not at the padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from dl.errors import unknown_name
from dl.models.dense import Dense
from dl.models.dropout import Dropout

Array = jax.Array
Dtype = Any
Carry = Any

_default_kernel_init = nn.initializers.lecun_normal()
_default_recurrent_init = nn.initializers.orthogonal()


def _zeros_carry(batch_shape: Sequence[int], hidden_size: int, dtype: Dtype) -> Array:
    return jnp.zeros((*tuple(batch_shape), hidden_size), dtype)


class SimpleRNNCell(nn.Module):
    """Elman recurrent cell.

    Equations (``x``: input ``[*batch, features]``, ``h``: carry ``[*batch, hidden]``)::

        h' = tanh(W_x x + b + W_h h)
        y  = h'

    Parameters: ``input`` is a Dense over ``x`` holding ``W_x`` (``kernel [features, hidden]``) and
    the only bias ``b``; ``hidden`` is a Dense over ``h`` holding ``W_h`` (``kernel [hidden,
    hidden]``) without bias. The carry is a single array ``h``.

    Attributes:
        hidden_size: Size of the hidden state.
        dtype: Computation dtype (also the carry dtype).
        param_dtype: Parameter dtype.
        kernel_init: Initializer of the input kernel.
        recurrent_kernel_init: Initializer of the recurrent kernel.
        bias_init: Initializer of the bias.
    """

    hidden_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable[..., Array] = _default_kernel_init
    recurrent_kernel_init: Callable[..., Array] = _default_recurrent_init
    bias_init: Callable[..., Array] = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, carry: Array, x: Array) -> tuple[Array, Array]:
        """Advances the cell by one step.

        Args:
            carry: Hidden state ``h`` of shape ``[*batch, hidden]``.
            x: Input of shape ``[*batch, features]``.

        Returns:
            ``(h', h')``: the new carry and the output, both ``[*batch, hidden]``.
        """
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        xh = Dense(
            self.hidden_size,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name="input",
            **dense,
        )(x)
        hh = Dense(
            self.hidden_size,
            use_bias=False,
            kernel_init=self.recurrent_kernel_init,
            name="hidden",
            **dense,
        )(carry)
        h = jnp.tanh(xh + hh).astype(self.dtype)  # [*batch, hidden]
        return h, h

    def initialize_carry(self, batch_shape: Sequence[int]) -> Array:
        """Returns a zero carry ``[*batch_shape, hidden]``.

        Args:
            batch_shape: Leading batch dimensions, e.g. ``(batch,)``.

        Returns:
            The zero hidden state.
        """
        return _zeros_carry(batch_shape, self.hidden_size, self.dtype)


def _lstm_bias_init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
    """Zero bias for the fused ``(i, f, g, o)`` LSTM gates, with the forget block set to 1."""
    del key
    hidden = shape[-1] // 4
    bias = np.zeros(shape, dtype=np.float32)
    bias[..., hidden : 2 * hidden] = 1.0
    return jnp.asarray(bias, dtype)


class LSTMCell(nn.Module):
    """Long short-term memory cell with all four gates in one fused matmul per operand.

    Equations (``x``: input, ``(c, h)``: carry, ``sigma``: logistic sigmoid)::

        z = W_x x + b + W_h h                      # [*batch, 4 * hidden]
        i, f, g, o = split(z, 4)                  # gate order in the fused kernels
        i = sigma(i); f = sigma(f); g = tanh(g); o = sigma(o)
        c' = f * c + i * g
        h' = o * tanh(c')
        y  = h'

    Parameters: ``input`` is a Dense over ``x`` with ``kernel [features, 4 * hidden]`` and the only
    bias ``b [4 * hidden]``; ``hidden`` is a Dense over ``h`` with ``kernel [hidden, 4 * hidden]``
    and no bias. Both kernels are laid out in gate order ``(i, f, g, o)`` along the last axis.
    The forget-gate slice of the bias, ``b[hidden:2 * hidden]``, is initialised to 1.0 (the other
    slices to 0) so the cell starts by remembering (Jozefowicz et al., 2015).

    The carry is the tuple ``(c, h)``.

    Attributes:
        hidden_size: Size of the hidden and cell states.
        dtype: Computation dtype (also the carry dtype).
        param_dtype: Parameter dtype.
        kernel_init: Initializer of the input kernel.
        recurrent_kernel_init: Initializer of the recurrent kernel.
        bias_init: Initializer of the fused bias (default: zeros with forget slice 1.0).
    """

    hidden_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable[..., Array] = _default_kernel_init
    recurrent_kernel_init: Callable[..., Array] = _default_recurrent_init
    bias_init: Callable[..., Array] = _lstm_bias_init

    @nn.compact
    def __call__(self, carry: tuple[Array, Array], x: Array) -> tuple[tuple[Array, Array], Array]:
        """Advances the cell by one step.

        Args:
            carry: ``(c, h)``, each of shape ``[*batch, hidden]``.
            x: Input of shape ``[*batch, features]``.

        Returns:
            ``((c', h'), h')``.
        """
        c, h = carry
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        z = Dense(
            4 * self.hidden_size,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name="input",
            **dense,
        )(x) + Dense(
            4 * self.hidden_size,
            use_bias=False,
            kernel_init=self.recurrent_kernel_init,
            name="hidden",
            **dense,
        )(h)  # [*batch, 4 * hidden]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        new_c = (nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)).astype(self.dtype)
        new_h = (nn.sigmoid(o) * jnp.tanh(new_c)).astype(self.dtype)
        return (new_c, new_h), new_h

    def initialize_carry(self, batch_shape: Sequence[int]) -> tuple[Array, Array]:
        """Returns a zero carry ``(c, h)``, each ``[*batch_shape, hidden]``.

        Args:
            batch_shape: Leading batch dimensions, e.g. ``(batch,)``.

        Returns:
            The zero ``(c, h)`` tuple.
        """
        zeros = _zeros_carry(batch_shape, self.hidden_size, self.dtype)
        return zeros, zeros


class GRUCell(nn.Module):
    """Gated recurrent unit in the PyTorch / cuDNN convention (reset applied after the matmul).

    Equations (``x``: input, ``h``: carry, ``sigma``: logistic sigmoid)::

        r  = sigma(W_ir x + b_ir + W_hr h + b_hr)
        z  = sigma(W_iz x + b_iz + W_hz h + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h
        y  = h'

    Parameters: ``input`` is a Dense over ``x`` with ``kernel [features, 3 * hidden]`` and bias
    ``[b_ir, b_iz, b_in]``; ``hidden`` is a Dense over ``h`` with ``kernel [hidden, 3 * hidden]``
    and bias ``[b_hr, b_hz, b_hn]``. Both fused kernels and biases are laid out in gate order
    ``(r, z, n)`` along the last axis. Both biases are kept (as in PyTorch) because ``b_hn`` sits
    inside the reset product; all biases start at zero.

    The carry is a single array ``h``.

    Attributes:
        hidden_size: Size of the hidden state.
        dtype: Computation dtype (also the carry dtype).
        param_dtype: Parameter dtype.
        kernel_init: Initializer of the input kernel.
        recurrent_kernel_init: Initializer of the recurrent kernel.
        bias_init: Initializer of both biases.
    """

    hidden_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable[..., Array] = _default_kernel_init
    recurrent_kernel_init: Callable[..., Array] = _default_recurrent_init
    bias_init: Callable[..., Array] = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, carry: Array, x: Array) -> tuple[Array, Array]:
        """Advances the cell by one step.

        Args:
            carry: Hidden state ``h`` of shape ``[*batch, hidden]``.
            x: Input of shape ``[*batch, features]``.

        Returns:
            ``(h', h')``: the new carry and the output, both ``[*batch, hidden]``.
        """
        h = carry
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, bias_init=self.bias_init)
        xi = Dense(3 * self.hidden_size, kernel_init=self.kernel_init, name="input", **dense)(x)
        hi = Dense(
            3 * self.hidden_size, kernel_init=self.recurrent_kernel_init, name="hidden", **dense
        )(h)  # [*batch, 3 * hidden]
        x_r, x_z, x_n = jnp.split(xi, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(hi, 3, axis=-1)
        r = nn.sigmoid(x_r + h_r)
        z = nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        new_h = ((1.0 - z) * n + z * h).astype(self.dtype)
        return new_h, new_h

    def initialize_carry(self, batch_shape: Sequence[int]) -> Array:
        """Returns a zero carry ``[*batch_shape, hidden]``.

        Args:
            batch_shape: Leading batch dimensions, e.g. ``(batch,)``.

        Returns:
            The zero hidden state.
        """
        return _zeros_carry(batch_shape, self.hidden_size, self.dtype)


CELLS: dict[str, type[nn.Module]] = {"rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(cell: str, hidden_size: int, **kwargs: Any) -> nn.Module:
    """Builds a cell from its ``CELLS`` name.

    Args:
        cell: One of ``CELLS`` (``"rnn"``, ``"lstm"``, ``"gru"``).
        hidden_size: Size of the hidden state.
        **kwargs: Further cell fields (``dtype``, ``param_dtype``, ``name``, ...).

    Returns:
        The (unbound) cell module.

    Raises:
        ConfigError: (a ``ValueError``) if ``cell`` is not a known cell name.
    """
    if cell not in CELLS:
        raise unknown_name("cell", cell, CELLS)
    return CELLS[cell](hidden_size=hidden_size, **kwargs)


def zero_carry(
    cell: str, hidden_size: int, batch_shape: Sequence[int], dtype: Dtype = jnp.float32
) -> Carry:
    """Returns the zero carry of a ``CELLS`` cell without creating a bound module.

    Args:
        cell: Cell name, one of ``CELLS``.
        hidden_size: Hidden size of the cell.
        batch_shape: Leading batch dimensions, e.g. ``(batch,)``.
        dtype: Carry dtype.

    Returns:
        The cell's zero carry (``(c, h)`` for LSTM, ``h`` otherwise).
    """
    return make_cell(cell, hidden_size, dtype=dtype, parent=None).initialize_carry(batch_shape)


def carry_hidden(carry: Carry) -> Array:
    """Returns the hidden state ``h`` of a cell carry (``(c, h)`` for LSTM, ``h`` otherwise)."""
    return carry[1] if isinstance(carry, tuple) else carry


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
    """

    cell: str = "lstm"
    hidden_size: int = 128
    reverse: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

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
            _masked_step,
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
    """

    cell: str = "lstm"
    hidden_size: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kwargs = dict(
            cell=self.cell,
            hidden_size=self.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
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
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

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
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    num_outputs: int = 10
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

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
    """

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    horizon: int = 1
    num_outputs: int = 1
    flatten: bool = True
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

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
    """

    vocab_size: int
    embed_dim: int = 64
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 1
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

    def setup(self):
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.rnn = StackedRecurrent(
            cell=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
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


def sample(
    module: CharLM,
    variables: Any,
    rng: Array,
    prompt_tokens: Array,
    length: int,
    temperature: float = 1.0,
) -> Array:
    """Samples a continuation of a prompt autoregressively from a ``CharLM``.

    The prompt is run once through the model; then ``length`` tokens are drawn with a
    ``lax.scan`` that carries the recurrent state (one cell step per token, the prefix is never
    re-run). ``length`` and ``temperature`` must be static under ``jax.jit``.

    Args:
        module: The ``CharLM``.
        variables: Its variables (``{"params": ...}``).
        rng: PRNG key.
        prompt_tokens: Int ids ``[batch, prompt_len]`` or ``[prompt_len]`` (``prompt_len >= 1``).
        length: Number of tokens to generate.
        temperature: Softmax temperature; ``0`` means greedy (argmax).

    Returns:
        The generated tokens ``[batch, length]`` (``[length]`` for a 1-D prompt), excluding the
        prompt.
    """
    prompt = jnp.asarray(prompt_tokens)
    squeeze = prompt.ndim == 1
    if squeeze:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be [batch, prompt_len >= 1], got shape {prompt.shape}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    carry, logits = module.apply(variables, prompt, return_carry=True)
    last_logits = logits[:, -1]  # [batch, vocab]

    def draw(key: Array, logits_t: Array) -> Array:
        if temperature == 0:
            return jnp.argmax(logits_t, axis=-1)
        return jax.random.categorical(key, logits_t.astype(jnp.float32) / temperature, axis=-1)

    def body(state, key):
        carry, logits_t = state
        token = draw(key, logits_t)  # [batch]
        carry, logits_t = module.apply(variables, carry, token, method=CharLM.step)
        return (carry, logits_t), token

    keys = jax.random.split(rng, length)
    _, tokens = jax.lax.scan(body, (carry, last_logits), keys)  # [length, batch]
    tokens = tokens.T  # [batch, length]
    return tokens[0] if squeeze else tokens


def input_gradient_norms(
    module: nn.Module,
    variables: Any,
    x: Array,
    *,
    loss_fn: Callable[[Any], Array] | None = None,
    **apply_kwargs: Any,
) -> Array:
    """Measures ``||d loss / d x_t||`` for every time step ``t`` (vanishing-gradient probe).

    Args:
        module: Any module whose input has time on axis 1 (``[batch, time, ...]``), e.g. a
            ``RecurrentClassifier`` (images count rows as time) or a ``RecurrentLayer``.
        variables: The module's variables.
        x: Float input ``[batch, time, ...]``.
        loss_fn: Maps the module's output to a scalar. Default: the sum of the output (for a
            ``[batch, time, D]`` output, or the output part of a ``(carry, outputs)`` tuple, the
            sum at the final time step).
        **apply_kwargs: Extra keyword arguments for ``module.apply`` (e.g. ``lengths``).

    Returns:
        ``[time]`` L2 norms of the gradient slice ``d loss / d x[:, t]`` (over batch and
        features).
    """

    def default_loss(out: Any) -> Array:
        if isinstance(out, tuple):
            out = out[-1]
        if out.ndim == 3:
            out = out[:, -1]
        return jnp.sum(out)

    loss = loss_fn or default_loss
    grads = jax.grad(lambda inp: loss(module.apply(variables, inp, **apply_kwargs)))(
        jnp.asarray(x, jnp.float32)
    )  # same shape as x
    axes = tuple(i for i in range(grads.ndim) if i != 1)
    return jnp.sqrt(jnp.sum(jnp.square(grads), axis=axes))  # [time]
