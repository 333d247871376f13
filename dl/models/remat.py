"""Rematerialization (`model.remat`): blocks whose activations are recomputed in the backward pass.

`rematerialize(Block, policy)` returns the block class wrapped in
`flax.linen.remat` with one of JAX's checkpoint policies, or the class itself
for "off". The models with repeated blocks take a `remat` field and wrap
their block with it: the values and gradients are those of the plain block;
the step keeps fewer activations alive (XLA's temporary memory, in the
benchmark's rows) for more compute.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from dl.errors import ConfigError

# "full": save nothing inside a block (jax.checkpoint's default); the others
# are the argument-free policies of jax.checkpoint_policies, by their names.
POLICIES = (
    "off",
    "full",
    "nothing_saveable",
    "everything_saveable",
    "dots_saveable",
    "checkpoint_dots",
    "dots_with_no_batch_dims_saveable",
    "checkpoint_dots_with_no_batch_dims",
)


def rematerialize(block, policy: str, static_argnums: tuple[int, ...] = ()):
    """`block` under `nn.remat` with the named policy; itself for "off".

    Args:
      block: a Module class, or a function whose first argument is a module
        (`stage(conv, x)`): the function's work, the module's call included,
        is recomputed, and the parameters stay the module's own.
      policy: a name of POLICIES.
      static_argnums: the positions of the block's call arguments that are
        Python values (`train`), counting `self` (or the module) as 0.

    Raises:
      ConfigError: an unknown policy name.
    """
    if policy not in POLICIES:
        raise ConfigError(f"model.remat must be one of {POLICIES}, got {policy!r}")
    if policy == "off":
        return block
    chosen = None if policy == "full" else getattr(jax.checkpoint_policies, policy)
    return nn.remat(block, policy=chosen, static_argnums=static_argnums)
