"""Gradient accumulation: a batch run as K microbatches in the step (`grad_accum_steps`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dl.errors import ConfigError
from dl.train.state import TrainState


def masked_sums(pairs, mask):
    """Per-example (numerator, denominator) pairs -> masked sums over the batch."""
    return {k: (jnp.sum(n * mask), jnp.sum(d * mask)) for k, (n, d) in pairs.items()}


def _microbatches(tree, k: int):
    """field -> [B, ...] as field -> [k, B / k, ...]: microbatch i holds examples i, i + k, ...

    Strided rather than contiguous, so that each device's share of a batch
    split over devices stays on that device.
    """

    def split(name, a):
        if a.shape[0] % k:
            raise ConfigError(
                f"grad_accum_steps={k} must divide the batch: field {name!r} has {a.shape[0]} rows"
            )
        return jnp.moveaxis(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 1, 0)

    return {name: split(name, a) for name, a in tree.items()}


def accumulated(state: TrainState, batch, mask, rng, *, model, task, k: int, scale=1.0):
    """Loss, gradient, metric sums and model state of a batch run as k microbatches.

    The loss is the whole batch's masked mean: the microbatches' gradients of
    their loss sums are added and divided by the batch's total weight (the
    task's denominators, which depend on the data alone). Mutable collections
    (batch-norm statistics) go through the microbatches in order, as k
    steps of the model would update them; dropout draws with key
    fold_in(step key, 2 + i) in microbatch i. `scale` multiplies the loss
    that is differentiated (the loss scale of float16 runs): the gradients
    returned are then those of the scaled loss.
    """
    mutable = list(state.model_state)

    def micro_step(model_state, i, micro):
        micro = dict(micro)
        micro_mask = micro.pop("mask")

        def loss_sum(params):
            out = model.apply(
                {"params": params, **model_state},
                *task.inputs(micro),
                train=True,
                rngs={"dropout": jax.random.fold_in(rng, 2 + i)},
                mutable=mutable or False,
            )
            outputs, new_model_state = out if mutable else (out, model_state)
            num, den = task.loss(outputs, micro)
            num = jnp.sum(num * micro_mask)
            # Differentiated times the loss scale (1 but in float16 runs).
            return num * scale, (num, jnp.sum(den * micro_mask), outputs, new_model_state)

        (_, (num, den, outputs, new_model_state)), grads = jax.value_and_grad(
            loss_sum, has_aux=True
        )(state.params)
        sums = masked_sums(task.metrics(jax.lax.stop_gradient(outputs), micro), micro_mask)
        return new_model_state, (num, den, grads, sums)

    def one(carry, inputs):  # the totals carried, not stacked: one gradient's memory
        model_state, totals = carry
        model_state, parts = micro_step(model_state, *inputs)
        return (model_state, jax.tree_util.tree_map(jnp.add, totals, parts)), None

    micro = _microbatches({**batch, "mask": mask}, k)
    first = jax.tree_util.tree_map(lambda a: a[0], micro)
    shapes = jax.eval_shape(micro_step, state.model_state, jnp.int32(0), first)[1]
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    (new_model_state, (num, den, grads, sums)), _ = jax.lax.scan(
        one, (state.model_state, zeros), (jnp.arange(k), micro)
    )
    scale = jnp.where(den > 0, 1.0 / jnp.maximum(den, 1e-30), 0.0)
    grads = jax.tree_util.tree_map(lambda g: g * scale.astype(g.dtype), grads)
    return num * scale, grads, sums, new_model_state
