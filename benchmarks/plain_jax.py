"""An MLP training step in plain JAX + optax, without dl.

The same computation as dl's MLP with the classification task and Adam:
Dense -> ReLU layers, softmax cross-entropy, optax.adam. Parameters use the
same initializers as flax.linen.Dense (LeCun normal kernels, zero biases).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


def init_mlp(rng, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        rng, key = jax.random.split(rng)
        w = jax.random.truncated_normal(key, -2.0, 2.0, (fan_in, fan_out)) * (
            (1.0 / fan_in) ** 0.5 / 0.87962566103423978
        )
        params.append((w, jnp.zeros((fan_out,))))
    return params


def mlp(params, x):
    h = x.reshape(x.shape[0], -1)
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return h @ w + b


def make_step(tx, metrics: bool = True):
    """A jitted step(params, opt_state, x, y) -> (params, opt_state, metrics).

    Args:
      tx: the optax optimizer.
      metrics: report what dl's step logs (loss, accuracy, gradient norm);
        False reports the loss alone (the barest step).
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = mlp(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        out = {"loss": loss}
        if metrics:
            out["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == y)
            out["grad_norm"] = optax.tree.norm(grads)
        return optax.apply_updates(params, updates), opt_state, out

    return step
