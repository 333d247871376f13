"""Recurrent cells: Elman RNN, LSTM and GRU, and the helpers that name and start them.

Cells share one interface:

* ``cell(carry, x) -> (new_carry, y)`` with ``x`` of shape ``[*batch, features]`` and ``y`` the new
  hidden state ``[*batch, hidden_size]``.
* ``cell.initialize_carry(batch_shape) -> carry``: an all-zero carry for a batch of shape
  ``batch_shape`` (a tuple such as ``(batch,)``). It needs no RNG and no parameters, so it can be
  called on an unbound module. The carry is an array ``[*batch, hidden]`` for ``SimpleRNNCell`` and
  ``GRUCell`` and a tuple ``(c, h)`` of two such arrays for ``LSTMCell``; ``carry_hidden`` returns
  the hidden state ``h`` of any of them.
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


__all__ = [
    "CELLS",
    "GRUCell",
    "LSTMCell",
    "SimpleRNNCell",
    "carry_hidden",
    "make_cell",
    "zero_carry",
]
