"""Dynamic loss scaling for float16 compute (`dtype="float16"`, `loss_scale.*`).

float16 has 5 exponent bits: gradients below about 6e-8 flush to zero. The
step multiplies the loss by a scale before differentiating and divides the
gradients by it in float32. A step whose scaled gradients overflow (a
non-finite gradient while the loss itself is finite) takes no update and
divides the scale by `factor`; after `growth_interval` steps in a row without
overflow the scale is multiplied by it. At the floor scale 1 nothing is
scaled, and a non-finite gradient is a non-finite step like any other (the
non-finite guard's policy), so that a run cannot skip updates for ever. This
is the scheme of PyTorch's GradScaler and of Keras' LossScaleOptimizer,
written here in a few lines rather than taken from `jmp`, whose last release
is from 2023. The scale lives in the train state, so it
is checkpointed with it and a resumed run continues with the same scale.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

MAX_SCALE = 2.0**24  # far below float32's limit: a scaled float32 loss stays finite


class LossScale(flax.struct.PyTreeNode):
    """The scale of the loss and the steps since it last overflowed."""

    scale: jax.Array  # float32 scalar
    good_steps: jax.Array  # int32 scalar

    @classmethod
    def create(cls, initial: float) -> LossScale:
        return cls(jnp.asarray(initial, jnp.float32), jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True)
class LossScaling:
    """Static options of the scaling (config `loss_scale`)."""

    initial: float = 2.0**15
    growth_interval: int = 2000
    factor: float = 2.0

    def adjust(self, ls: LossScale, overflow: jax.Array) -> LossScale:
        """The scale after a step: lowered on overflow, raised after growth_interval good steps."""
        good = jnp.where(overflow, 0, ls.good_steps + 1)
        grow = good >= self.growth_interval
        scale = jnp.where(
            overflow,
            jnp.maximum(ls.scale / self.factor, 1.0),
            jnp.where(grow, jnp.minimum(ls.scale * self.factor, MAX_SCALE), ls.scale),
        )
        return LossScale(scale.astype(jnp.float32), jnp.where(grow, 0, good).astype(jnp.int32))


def unscale(grads, ls: LossScale | None):
    """Gradients of the scaled loss -> gradients of the loss (float32 division)."""
    if ls is None:
        return grads
    return jax.tree_util.tree_map(lambda g: (g / ls.scale).astype(g.dtype), grads)


def all_finite(tree) -> jax.Array:
    """True if every floating leaf of a pytree is finite (traceable; jitted in dl.train.step)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
