"""Reference training steps written by hand in plain JAX + optax, without dl.

Each reference computes the same step as dl's model and task for the suite
rows of experiments/benchmark.py: same layers, same initializers as
flax.linen (LeCun-normal kernels, zero biases), softmax cross-entropy,
optax.adam. They are what a careful JAX user writes from scratch:

  mlp    Dense -> ReLU stacks (784-512-512-10, and the 8x8 digits MLP)
  lenet  LeNet-5: conv 6 5x5 -> tanh -> avg-pool 2 -> conv 16 5x5 -> tanh ->
         avg-pool 2 -> dense 120 -> tanh -> dense 84 -> tanh -> dense classes
  lstm   one LSTM layer (fused i, f, g, o gates) over [batch, time, features],
         last-step readout, dense to classes
  gcn    two GCN layers (Kipf & Welling) over one graph, A + I normalised by
         degree, loss on the labelled nodes only

A batch is a dict of arrays: x and y, plus for gcn the graph (senders,
receivers) and label_mask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

LECUN_STD = 1.0 / 0.87962566103423978  # truncated-normal correction of variance_scaling


def _kernel(key, shape, fan_in):
    return jax.random.truncated_normal(key, -2.0, 2.0, shape) * (LECUN_STD / fan_in**0.5)


def _dense(key, fan_in, fan_out):
    return {"w": _kernel(key, (fan_in, fan_out), fan_in), "b": jnp.zeros((fan_out,))}


def init_mlp(rng, sizes):
    keys = jax.random.split(rng, len(sizes) - 1)
    return [_dense(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]


def mlp(params, batch):
    h = batch["x"].reshape(batch["x"].shape[0], -1)
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def init_lenet(rng, image_shape, num_classes):
    height, width, channels = image_shape
    k = jax.random.split(rng, 5)
    side_h, side_w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
    return {
        "conv0": {"w": _kernel(k[0], (5, 5, channels, 6), 25 * channels), "b": jnp.zeros(6)},
        "conv1": {"w": _kernel(k[1], (5, 5, 6, 16), 25 * 6), "b": jnp.zeros(16)},
        "dense": [
            _dense(k[2], side_h * side_w * 16, 120),
            _dense(k[3], 120, 84),
            _dense(k[4], 84, num_classes),
        ],
    }


def _avg_pool2(x):
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0


def lenet(params, batch):
    x = batch["x"]
    if x.ndim == 3:
        x = x[..., None]
    for name in ("conv0", "conv1"):
        x = jax.lax.conv_general_dilated(
            x, params[name]["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = _avg_pool2(jnp.tanh(x + params[name]["b"]))
    h = x.reshape(x.shape[0], -1)
    for layer in params["dense"][:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ params["dense"][-1]["w"] + params["dense"][-1]["b"]


def init_lstm(rng, features, hidden, num_classes):
    k = jax.random.split(rng, 3)
    bias = jnp.zeros(4 * hidden).at[hidden : 2 * hidden].set(1.0)  # forget gate starts open
    return {
        "wx": _kernel(k[0], (features, 4 * hidden), features),
        "wh": jax.nn.initializers.orthogonal()(k[1], (hidden, 4 * hidden)),
        "b": bias,
        "head": _dense(k[2], hidden, num_classes),
    }


def lstm(params, batch):
    x = batch["x"]  # [batch, time, features]
    hidden = params["wh"].shape[0]
    xw = jnp.einsum("btf,fg->tbg", x, params["wx"]) + params["b"]  # all steps' inputs at once

    def cell(carry, xw_t):
        c, h = carry
        i, f, g, o = jnp.split(xw_t + h @ params["wh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), None

    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)
    (_, h), _ = jax.lax.scan(cell, (zeros, zeros), xw)
    return h @ params["head"]["w"] + params["head"]["b"]


def init_gcn(rng, features, hidden, num_classes):
    k = jax.random.split(rng, 2)
    return [
        {"w": jax.nn.initializers.lecun_normal()(k[0], (features, hidden)), "b": jnp.zeros(hidden)},
        {
            "w": jax.nn.initializers.lecun_normal()(k[1], (hidden, num_classes)),
            "b": jnp.zeros(num_classes),
        },
    ]


def gcn(params, batch):
    x = batch["x"][0]  # one graph: [nodes, features]
    n = x.shape[0]
    loops = jnp.arange(n, dtype=batch["senders"].dtype)
    senders = jnp.concatenate([batch["senders"][0], loops])
    receivers = jnp.concatenate([batch["receivers"][0], loops])
    degree = jax.ops.segment_sum(jnp.ones(receivers.shape), receivers, n)
    norm = jax.lax.rsqrt(jnp.maximum(degree, 1.0))[:, None]

    def propagate(h):
        return jax.ops.segment_sum((h * norm)[senders], receivers, n) * norm

    h = jax.nn.relu(propagate(x @ params[0]["w"]) + params[0]["b"])
    return (propagate(h @ params[1]["w"]) + params[1]["b"])[None]  # [1, nodes, classes]


MODELS: dict[str, Callable] = {"mlp": mlp, "lenet": lenet, "lstm": lstm, "gcn": gcn}


def make_step(kind: str, tx, metrics: bool = True):
    """A jitted step(params, opt_state, batch) -> (params, opt_state, metrics).

    Args:
      kind: one of MODELS.
      tx: the optax optimizer.
      metrics: report what dl's step logs (loss, accuracy, gradient norm);
        False reports the loss alone (the barest step).
    """
    apply = MODELS[kind]

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, batch):
        def loss_fn(p):
            logits = apply(p, batch)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
            weight = batch.get("label_mask", jnp.ones_like(losses))
            return jnp.sum(losses * weight) / jnp.sum(weight), (logits, weight)

        (loss, (logits, weight)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        out = {"loss": loss}
        if metrics:
            hits = (jnp.argmax(logits, -1) == batch["y"]) * weight
            out["accuracy"] = jnp.sum(hits) / jnp.sum(weight)
            out["grad_norm"] = optax.tree.norm(grads)
        return optax.apply_updates(params, updates), opt_state, out

    return step


def init(kind: str, rng, spec: dict):
    """Parameters of a reference model for a spec (see experiments/benchmark.py)."""
    if kind == "mlp":
        return init_mlp(rng, spec["sizes"])
    if kind == "lenet":
        return init_lenet(rng, spec["image_shape"], spec["classes"])
    if kind == "lstm":
        return init_lstm(rng, spec["features"], spec["hidden"], spec["classes"])
    if kind == "gcn":
        return init_gcn(rng, spec["features"], spec["hidden"], spec["classes"])
    raise ValueError(f"unknown reference {kind!r}; known: {', '.join(MODELS)}")
