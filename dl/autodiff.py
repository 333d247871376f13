"""Backpropagation as the lecture states it: reverse-mode autodiff over scalars.

The computation is instantiated as a directed acyclic graph whose nodes are
scalar intermediate quantities. Each node stores (a) the value computed in
the forward pass and (b) the partial derivative of the goal with respect to
it. `backward` initialises every partial derivative to 0, sets the goal's to
1 and visits the nodes in reverse topological order, each adding its
contribution d goal/d node * d node/d parent to the partial derivatives of its
parents (the chain rule).

This is a teaching implementation, written to be read and to check
`jax.grad` against (tests/test_autodiff.py); dl trains with JAX.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class Node:
    """A scalar quantity in the computation graph.

    Attributes:
      value: the forward value.
      grad: d goal / d this node, filled in by `backward`.
      parents: (parent node, d this / d parent) pairs.
      op: the operation that made the node, for display.
    """

    __slots__ = ("value", "grad", "parents", "op")

    def __init__(self, value: float, parents: tuple = (), op: str = ""):
        self.value = float(value)
        self.grad = 0.0
        self.parents = parents
        self.op = op

    def __repr__(self) -> str:
        return f"Node({self.value:.6g}, grad={self.grad:.6g}, op={self.op!r})"

    def __add__(self, other) -> Node:
        other = as_node(other)
        return Node(self.value + other.value, ((self, 1.0), (other, 1.0)), "+")

    __radd__ = __add__

    def __mul__(self, other) -> Node:
        other = as_node(other)
        return Node(self.value * other.value, ((self, other.value), (other, self.value)), "*")

    __rmul__ = __mul__

    def __neg__(self) -> Node:
        return Node(-self.value, ((self, -1.0),), "neg")

    def __sub__(self, other) -> Node:
        return self + (-as_node(other))

    def __rsub__(self, other) -> Node:
        return as_node(other) + (-self)

    def __pow__(self, exponent: float) -> Node:
        return Node(
            self.value**exponent,
            ((self, exponent * self.value ** (exponent - 1)),),
            f"**{exponent}",
        )

    def __truediv__(self, other) -> Node:
        return self * as_node(other) ** -1.0


def as_node(x) -> Node:
    return x if isinstance(x, Node) else Node(x, op="const")


def exp(x: Node) -> Node:
    e = math.exp(x.value)
    return Node(e, ((x, e),), "exp")


def log(x: Node) -> Node:
    return Node(math.log(x.value), ((x, 1.0 / x.value),), "log")


def sigmoid(x: Node) -> Node:
    s = 1.0 / (1.0 + math.exp(-x.value))
    return Node(s, ((x, s * (1.0 - s)),), "sigmoid")


def tanh(x: Node) -> Node:
    t = math.tanh(x.value)
    return Node(t, ((x, 1.0 - t * t),), "tanh")


def relu(x: Node) -> Node:
    return Node(max(x.value, 0.0), ((x, 1.0 if x.value > 0 else 0.0),), "relu")


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "linear": lambda x: x}


def topological_order(goal: Node) -> list[Node]:
    """Nodes that `goal` depends on, each after all of its parents."""
    order, seen = [], set()
    stack = [(goal, False)]
    while stack:  # iterative depth-first search: deep graphs do not hit the recursion limit
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((parent, False) for parent, _ in node.parents if id(parent) not in seen)
    return order


def backward(goal: Node) -> None:
    """Fills in d goal / d node for every node the goal depends on."""
    order = topological_order(goal)
    for node in order:
        node.grad = 0.0
    goal.grad = 1.0
    for node in reversed(order):
        for parent, local in node.parents:
            parent.grad += node.grad * local


def dense(
    inputs: list[Node],
    kernel: np.ndarray,
    bias: np.ndarray,
    weights: list[list[Node]],
    biases: list[Node],
) -> list[Node]:
    """sum_i x_i w_ij + b_j for each output j, over scalar nodes."""
    outputs = []
    for j in range(kernel.shape[1]):
        total = biases[j]
        for i, x in enumerate(inputs):
            total = total + x * weights[i][j]
        outputs.append(total)
    return outputs


def mlp_gradients(
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    activation: str = "sigmoid",
    output_activation: str = "linear",
) -> tuple[float, dict]:
    """Loss and gradients of a dl MLP, by scalar backpropagation.

    The loss is the mean over examples of 0.5 * sum_k (out_k - y_k)^2, with
    out = output_activation(MLP(x)).

    Args:
      params: an MLP's params: {"hidden_0": {"kernel", "bias"}, ..., "output": {...}}.
      x: inputs [examples, features].
      y: targets [examples, outputs].
      activation: the hidden non-linearity.
      output_activation: applied to the output layer ("linear" or "sigmoid").

    Returns:
      (loss, grads) with grads shaped like params.
    """
    layers = sorted((k for k in params if k.startswith("hidden_")), key=lambda k: int(k[7:]))
    layers.append("output")
    weight_nodes = {
        name: [[Node(w, op=f"{name}.w") for w in row] for row in np.asarray(params[name]["kernel"])]
        for name in layers
    }
    bias_nodes = {
        name: [Node(b, op=f"{name}.b") for b in np.asarray(params[name]["bias"])] for name in layers
    }
    act, out_act = ACTIVATIONS[activation], ACTIVATIONS[output_activation]
    total = Node(0.0, op="const")
    for xi, yi in zip(np.asarray(x), np.asarray(y), strict=True):
        h = [Node(v, op="input") for v in xi]
        for name in layers:
            z = dense(
                h,
                np.asarray(params[name]["kernel"]),
                np.asarray(params[name]["bias"]),
                weight_nodes[name],
                bias_nodes[name],
            )
            h = [act(v) for v in z] if name != "output" else [out_act(v) for v in z]
        for out, target in zip(h, np.atleast_1d(yi), strict=True):
            total = total + 0.5 * (out - float(target)) ** 2
    loss = total * (1.0 / len(x))
    backward(loss)
    grads = {
        name: {
            "kernel": np.array([[w.grad for w in row] for row in weight_nodes[name]]),
            "bias": np.array([b.grad for b in bias_nodes[name]]),
        }
        for name in layers
    }
    return loss.value, grads


def values(nodes: Iterable[Node]) -> list[float]:
    return [n.value for n in nodes]
