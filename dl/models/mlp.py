"""Perceptron and feedforward networks (multilayer perceptrons).

Both return raw outputs (logits): the output non-linearity of the lecture
(softmax, sigmoid or none) belongs to the task, which computes it stably
from the logits in its loss and in `Task.predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dl.errors import ConfigError, unknown_name
from dl.models.dense import Dense
from dl.models.dropout import Dropout

ACTIVATIONS = {
    "sigmoid": nn.sigmoid,
    "tanh": nn.tanh,
    "relu": nn.relu,
    "linear": lambda x: x,
}


def activation(name: str):
    """Looks up an activation function by name (sigmoid, tanh, relu, linear)."""
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


def flatten(x):
    return x.reshape(x.shape[0], -1)  # [batch, features]


class Perceptron(nn.Module):
    """One artificial neuron: z = w.x + b.

    Its output is the pre-activation z; the task applies the step function
    (task "perceptron", Rosenblatt's rule) or the sigmoid (task
    "binary_classification", gradient descent on cross-entropy).

    Attributes:
      num_outputs: number of units (1 for the classic perceptron).
      zero_init: start from w = 0, b = 0 as the classic algorithm does.
    """

    num_outputs: int = 1
    zero_init: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        return Dense(self.num_outputs, kernel_init=init, dtype=self.dtype, name="unit")(
            flatten(x)
        )  # [batch, num_outputs]


class MLP(nn.Module):
    """Feedforward network: Dense -> activation for each hidden size, then Dense.

    With no hidden sizes it is linear regression (task "regression") or
    logistic / softmax regression (the classification tasks). Layers are named
    hidden_0, hidden_1, ... and output; each has a kernel [in, out] and a bias.

    Attributes:
      hidden_sizes: width of each hidden layer; () for none.
      activation: hidden non-linearity: sigmoid, tanh, relu or linear.
      num_outputs: width of the output layer.
      dropout_rate: dropout after each hidden activation, in training only.
      dtype: compute dtype; parameters stay float32.
    """

    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"
    num_outputs: int = 10
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        act = activation(self.activation)
        bad = [w for w in self.hidden_sizes if not isinstance(w, int) or w < 1]
        if bad:
            raise ConfigError(
                f"model.hidden_sizes must be positive integers, got {tuple(self.hidden_sizes)}"
            )
        h = flatten(x).astype(self.dtype)  # [batch, features]
        for i, width in enumerate(self.hidden_sizes):
            h = act(Dense(int(width), dtype=self.dtype, name=f"hidden_{i}")(h))
            if self.dropout_rate > 0:
                h = Dropout(self.dropout_rate, deterministic=not train)(h)
        return Dense(self.num_outputs, dtype=self.dtype, name="output")(h)  # [batch, outputs]
