"""The train state: one pytree of everything that changes during training.

`TrainState.create` is the one place a state is assembled, for a fresh run
(`Steps.init_state`) and for a run that starts over from existing parameters
with a fresh optimizer (`restart`, used by the learning-rate finder).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl.errors import ConfigError


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, checkpointed together.

    Attributes:
      step: number of training steps taken.
      params: the model's parameters.
      opt_state: the optimizer's state.
      model_state: mutable collections such as batch_stats ({} if none).
      rng: the run's base key; step s draws from fold_in(rng, s).
      skipped: consecutive steps whose update was skipped as non-finite.
      halted: 1 once training stopped on non-finite values; the state is
        then frozen at the last good step.
      ema_params: the exponential moving average of the parameters
        (`ema.decay` > 0), updated with every update taken; None otherwise.
      loss_scale: the dynamic loss scale of a float16 run
        (`dl.train.loss_scale.LossScale`); None otherwise.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array
    skipped: jax.Array
    halted: jax.Array
    ema_params: Any = None
    loss_scale: Any = None

    @classmethod
    def create(
        cls,
        params,
        model_state,
        tx: optax.GradientTransformation,
        rng: jax.Array,
        ema: bool = False,
        loss_scale=None,
    ) -> TrainState:
        """A state at step 0 with a fresh optimizer state for `params`.

        Args:
          params: the model's parameters.
          model_state: its other variable collections ({} if none).
          tx: the optimizer.
          rng: the run's base key.
          ema: keep a moving average of the parameters, starting at `params`.
          loss_scale: the initial LossScale of a float16 run, or None.

        Returns:
          The TrainState.

        >>> import optax, jax.numpy as jnp
        >>> s = TrainState.create({"w": jnp.ones(3)}, {}, optax.sgd(0.1), jax.random.PRNGKey(0))
        >>> int(s.step), int(s.halted)
        (0, 0)
        """
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            model_state=model_state,
            rng=rng,
            skipped=jnp.zeros((), jnp.int32),
            halted=jnp.zeros((), jnp.int32),
            ema_params=jax.tree_util.tree_map(jnp.array, params) if ema else None,
            loss_scale=loss_scale,
        )

    def with_ema_weights(self) -> TrainState:
        """This state with the moving average in place of the parameters (to evaluate it)."""
        if self.ema_params is None:
            raise ConfigError(
                "this run keeps no moving average of its parameters (ema.decay was 0); "
                "evaluate its own weights (--weights=params)"
            )
        return self.replace(params=self.ema_params)


def restart(state: TrainState, tx: optax.GradientTransformation) -> TrainState:
    """The parameters, model state, key and loss scale of `state` at step 0, with a fresh
    optimizer state."""
    return TrainState.create(
        state.params, state.model_state, tx, state.rng, loss_scale=state.loss_scale
    )


def param_count(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
