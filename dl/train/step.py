"""The train state and the one generic train and evaluation step.

`train_step(state, batch) -> (state, metrics)` and
`eval_step(state, batch) -> metric sums` are the same for every model family:
what differs between a CNN, a seq2seq model and a GNN is the model, the batch
and the task. `Steps` binds the model, task and optimizer and jit-compiles
the calls the loop makes: K fused training steps over batches gathered on the
device, and a whole evaluation pass.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dl.errors import ConfigError
from dl.train.accumulate import accumulated, masked_sums
from dl.train.loss_scale import LossScale, LossScaling, unscale
from dl.train.loss_scale import all_finite as tree_all_finite
from dl.train.sharding import constrain_state, shard_batch
from dl.train.state import TrainState

NONFINITE_POLICIES = ("stop", "skip")


def nonfinite_advice(config) -> str:
    """What to change after training stopped on non-finite values, for the config's policy.

    >>> from dl.config import base_config
    >>> c = base_config()
    >>> nonfinite_advice(c)
    "Lower optimizer.learning_rate, set grad_clip_norm, or set nonfinite.policy='skip'."
    >>> c.nonfinite.policy, c.grad_clip_norm = "skip", 1.0
    >>> print(nonfinite_advice(c))  # doctest: +NORMALIZE_WHITESPACE
    Lower optimizer.learning_rate or grad_clip_norm (now 1), or raise
    nonfinite.max_consecutive_skips (now 10).
    """
    nonfinite = config.get("nonfinite", {})
    clip = float(config.get("grad_clip_norm", 0.0) or 0.0)
    if clip > 0:
        fixes = [f"Lower optimizer.learning_rate or grad_clip_norm (now {clip:g})"]
    else:
        fixes = ["Lower optimizer.learning_rate", "set grad_clip_norm"]
    if nonfinite.get("policy", "stop") == "skip":
        skips = int(nonfinite.get("max_consecutive_skips", 10))
        fixes.append(f"raise nonfinite.max_consecutive_skips (now {skips})")
    else:
        fixes.append("set nonfinite.policy='skip'")
    return ", ".join(fixes[:-1]) + ", or " + fixes[-1] + "."


def masked_mean(pair, mask):
    num, den = pair
    den_sum = jnp.sum(den * mask)
    return jnp.where(den_sum > 0, jnp.sum(num * mask) / jnp.maximum(den_sum, 1e-30), 0.0)


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static choices of the training step.

    Attributes:
      nonfinite_policy: "stop" freezes the state at the first non-finite loss
        or gradient; "skip" drops that update and goes on, halting after
        max_consecutive_skips in a row.
      max_consecutive_skips: see above.
      augment: a batch transform `augment(rng, batch) -> batch` applied to
        training batches inside the step (e.g. `dl.data.augment.Augment`), or
        None. It must be hashable: it is a static argument of the compiled step.
      grad_accum_steps: K > 1 splits each batch into K microbatches (examples
        k, k + K, ...), runs them one after the other in a `lax.scan` and
        applies one update with the gradient of the whole batch's loss.
      ema_decay: d > 0 keeps ema = d * ema + (1 - d) * params after every
        update taken (the state's `ema_params`).
      loss_scaling: dynamic loss scaling (float16 runs), or None: the state's
        `loss_scale` multiplies the loss before differentiation; a step whose
        scaled gradients overflow takes no update, lowers the scale and is
        not a non-finite failure; at the floor scale 1 a non-finite gradient
        is one.
    """

    nonfinite_policy: str = "stop"
    max_consecutive_skips: int = 10
    augment: Callable | None = None
    grad_accum_steps: int = 1
    ema_decay: float = 0.0
    loss_scaling: LossScaling | None = None


def train_step(state: TrainState, batch, *, model, task, tx, schedule, cfg: StepConfig):
    """One step of gradient descent on the task's loss.

    Args:
      state: the train state.
      batch: field -> array [batch, ...]; an optional "mask" [batch] weights
        examples (0 for padding).
      model: a flax.linen Module.
      task: a dl Task.
      tx: the optax transformation.
      schedule: step -> learning rate, for logging.
      cfg: static step options (non-finite policy, batch augmentation).

    Returns:
      (new state, metrics): metrics hold the loss, gradient norm, learning
      rate, the task's metric sums and whether the step was finite.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    if cfg.augment is not None:
        batch = cfg.augment(jax.random.fold_in(rng, 1), batch)
    mask = batch.get("mask")
    if mask is None:
        mask = jnp.ones(batch["y"].shape[:1], jnp.float32)
    mutable = list(state.model_state)
    scale = 1.0 if state.loss_scale is None else state.loss_scale.scale
    if cfg.grad_accum_steps > 1:
        loss, grads, sums, new_model_state = accumulated(
            state, batch, mask, rng, model=model, task=task, k=cfg.grad_accum_steps, scale=scale
        )
        grads = unscale(grads, state.loss_scale)
        return _finish_step(state, loss, grads, sums, new_model_state, tx, schedule, cfg)

    def loss_fn(params):
        variables = {"params": params, **state.model_state}
        out = model.apply(
            variables,
            *task.inputs(batch),
            train=True,
            rngs={"dropout": rng},
            mutable=mutable or False,
        )
        outputs, new_model_state = out if mutable else (out, state.model_state)
        loss = masked_mean(task.loss(outputs, batch), mask)
        return loss * scale, (loss, outputs, new_model_state)

    (_, (loss, outputs, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    grads = unscale(grads, state.loss_scale)
    sums = masked_sums(task.metrics(jax.lax.stop_gradient(outputs), batch), mask)
    return _finish_step(state, loss, grads, sums, new_model_state, tx, schedule, cfg)


def _finish_step(state, loss, grads, sums, new_model_state, tx, schedule, cfg: StepConfig):
    """The guarded update and the step's metrics, from its loss and gradient."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    overflow = None
    if state.loss_scale is not None:
        # A finite loss with non-finite scaled gradients: the scale was too large. At
        # the floor scale (1) nothing was scaled: the gradient itself is non-finite,
        # and the step goes to the non-finite guard.
        overflow = jnp.isfinite(loss) & ~tree_all_finite(grads) & (state.loss_scale.scale > 1.0)
        finite = jnp.isfinite(loss) & (jnp.isfinite(grad_norm) | overflow)
    new_state = _guarded_update(state, grads, new_model_state, finite, tx, cfg, overflow)
    running = state.halted == 0
    metrics = {
        "step": state.step,
        "loss": loss,
        "grad_norm": grad_norm,
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        "finite": finite & running,
        "sums": sums,
    }
    if overflow is not None:
        metrics["overflow"] = overflow & running
        metrics["loss_scale"] = new_state.loss_scale.scale  # after this step's adjustment
    return new_state, metrics


def _guarded_update(
    state: TrainState, grads, new_model_state, finite, tx, cfg: StepConfig, overflow=None
):
    """The state after one step: updated if the step is finite and training runs, else kept.

    The non-finite policy decides when training halts (the state then stays
    frozen at the last good step). A loss-scale overflow (`overflow`) counts
    as finite for the policy, takes no update and lowers the scale.
    """
    skipped = jnp.where(finite, 0, state.skipped + 1)
    if cfg.nonfinite_policy == "stop":
        halt_now = ~finite
    else:
        halt_now = skipped > cfg.max_consecutive_skips
    running = state.halted == 0

    def update(operands):
        grads, opt_state, params, model_state, ema = operands
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema is not None:
            d = cfg.ema_decay
            ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
        return params, opt_state, model_state, ema

    def keep(operands):
        return operands[2], operands[1], state.model_state, operands[4]

    # A conditional rather than a select over every leaf: a skipped update
    # costs nothing and a taken one no extra pass over parameters and
    # optimizer state.
    operands = (grads, state.opt_state, state.params, new_model_state, state.ema_params)
    apply = finite & running if overflow is None else finite & running & ~overflow
    params, opt_state, model_state, ema = jax.lax.cond(apply, update, keep, operands)
    loss_scale = state.loss_scale
    if overflow is not None:
        adjusted = cfg.loss_scaling.adjust(loss_scale, overflow)
        loss_scale = jax.tree_util.tree_map(
            lambda new, old: jnp.where(running & finite, new, old), adjusted, loss_scale
        )
    return state.replace(
        step=jnp.where(running & ~halt_now, state.step + 1, state.step),
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        skipped=jnp.where(running, skipped, state.skipped),
        halted=jnp.where(running & halt_now, 1, state.halted).astype(jnp.int32),
        ema_params=ema,
        loss_scale=loss_scale,
    )


def eval_step(state: TrainState, batch, *, model, task):
    """The task's metric sums over one batch, in inference mode.

    Returns:
      metric -> (numerator sum, denominator sum) over the unmasked examples.
    """
    variables = {"params": state.params, **state.model_state}
    outputs = model.apply(variables, *task.inputs(batch), train=False)
    return masked_sums(task.metrics(outputs, batch), batch["mask"])


def batch_indices(step, batch_size: int, perms, first_epoch):
    """Example indices of a training step, computed on the device.

    The same indices as dl.data.TrainOrder.indices(step): positions
    step * batch_size + j of the stream of epochs, each epoch a permutation,
    read from `perms`, the permutations of epochs first_epoch, first_epoch + 1, ...

    Args:
      step: int32 scalar.
      batch_size: static batch size.
      perms: int32 [window, examples].
      first_epoch: int32 scalar, the epoch of perms[0].

    Returns:
      int32 [batch_size].
    """
    n = perms.shape[1]
    # step * batch_size + j = (step // n) * n * batch_size + (step % n) * batch_size + j,
    # which keeps every intermediate below n * batch_size (no int32 overflow).
    t = (step % n) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    epoch = (step // n) * batch_size + t // n
    return perms[epoch - first_epoch, t % n]


def gather(arrays, idx):
    """Batch of examples idx [batch] from field -> [examples, ...] arrays, on the device.

    A split of one example read as a batch of one (one graph for node
    classification) is its own batch: the indices can only be [0], and
    skipping the gather saves a copy of every field per step.
    """
    return {
        k: v if v.shape[0] == 1 and idx.shape == (1,) else jnp.take(v, idx, axis=0)
        for k, v in arrays.items()
    }


class Steps:
    """The jit-compiled calls of the training loop, for one model, task and optimizer."""

    def __init__(self, model, task, tx, schedule, cfg: StepConfig = StepConfig(), mesh=None):
        if cfg.nonfinite_policy not in NONFINITE_POLICIES:
            raise ConfigError(
                f"nonfinite.policy must be one of {NONFINITE_POLICIES}, "
                f"got {cfg.nonfinite_policy!r}"
            )
        self.model, self.task, self.tx, self.schedule = model, task, tx, schedule
        self.mesh, self.ema, self.cfg = mesh, cfg.ema_decay > 0, cfg
        self.train_step = functools.partial(
            train_step, model=model, task=task, tx=tx, schedule=schedule, cfg=cfg
        )
        self.eval_step = functools.partial(eval_step, model=model, task=task)
        self.train_many = jax.jit(
            self._train_many, donate_argnums=0, static_argnames=("steps", "batch_size")
        )
        self.train_window = jax.jit(self._train_window, donate_argnums=0, static_argnames="steps")
        self.evaluate_all = jax.jit(self._evaluate_all)
        self.predict_all = jax.jit(self._predict_all)

    def init_state(self, rng: jax.Array, example_batch, train_data=None) -> TrainState:
        """Initializes parameters, optimizer state and mutable collections.

        Args:
          rng: the run's key.
          example_batch: a batch with the per-example shapes of the data.
          train_data: the training split (field -> array), or None. A model
            with a method `init_from_data(variables, *inputs, seed=...) ->
            variables` gets the variables of `model.init` and the split's
            model inputs, and sets variables from the data (e.g. RBF centres
            by k-means), before the optimizer state is built.

        Returns:
          A fresh TrainState at step 0.
        """
        init_rng, run_rng = jax.random.split(rng)
        variables = jax.jit(functools.partial(self.model.init, train=False))(
            {"params": init_rng, "dropout": init_rng}, *self.task.inputs(example_batch)
        )
        init_from_data = getattr(self.model, "init_from_data", None)
        if train_data is not None and init_from_data is not None:
            seed = int(jax.random.randint(init_rng, (), 0, 2**31 - 1))
            variables = init_from_data(variables, *self.task.inputs(train_data), seed=seed)
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState.create(
            params, variables, self.tx, run_rng, ema=self.ema, loss_scale=self.loss_scale()
        )

    def loss_scale(self) -> LossScale | None:
        """The initial loss scale of a float16 run; None otherwise."""
        scaling = self.cfg.loss_scaling
        return None if scaling is None else LossScale.create(scaling.initial)

    def _step(self, state, batch):
        """One training step whose new state keeps the mesh's state shardings (fsdp)."""
        state, metrics = self.train_step(state, batch)
        return constrain_state(state, self.mesh), metrics

    def _train_many(self, state, arrays, perms, first_epoch, *, steps: int, batch_size: int):
        """`steps` training steps in one call, on batches gathered on the device.

        Args:
          state: the train state (donated).
          arrays: the training split, field -> [examples, ...], on the device.
          perms: int32 [window, examples] epoch permutations (TrainOrder.window).
          first_epoch: int32 scalar, the epoch of perms[0].
          steps: static number of steps (config steps_per_call).
          batch_size: static batch size.

        Returns:
          (state, metrics): stacked over the steps when steps > 1.
        """

        def one(state):
            idx = batch_indices(state.step, batch_size, perms, first_epoch)
            return self._step(state, shard_batch(gather(arrays, idx), self.mesh))

        if steps == 1:
            return one(state)  # metrics of one step: scalars, no stacking
        state, metrics = jax.lax.scan(lambda s, _: one(s), state, None, length=steps)
        return constrain_state(state, self.mesh), metrics  # the loop's result too

    def _train_window(self, state, batches, *, steps: int):
        """`steps` training steps in one call, on batches handed in (the streamed input).

        Args:
          state: the train state (donated).
          batches: field -> [steps, batch, ...], split over the devices along the batch.
          steps: static number of steps (config steps_per_call).
        """

        def one(state, batch):
            return self._step(state, shard_batch(batch, self.mesh))

        if steps == 1:
            return one(state, jax.tree_util.tree_map(lambda a: a[0], batches))
        state, metrics = jax.lax.scan(one, state, batches)
        return constrain_state(state, self.mesh), metrics

    def _evaluate_all(self, state, arrays, idx, mask):
        """Metric sums over batches idx [batches, batch] with mask [batches, batch]."""

        def body(total, inputs):
            step_idx, step_mask = inputs
            batch = gather(arrays, step_idx)
            batch["mask"] = step_mask
            sums = self.eval_step(state, shard_batch(batch, self.mesh))
            return jax.tree_util.tree_map(jnp.add, total, sums), None

        zero_batch = gather(arrays, idx[0])
        zero_batch["mask"] = mask[0]
        zeros = jax.tree_util.tree_map(
            jnp.zeros_like, jax.eval_shape(self.eval_step, state, zero_batch)
        )
        total, _ = jax.lax.scan(body, zeros, (idx, mask))
        return total

    def _predict_all(self, state, arrays, idx):
        """Raw outputs and task predictions for batches idx [batches, batch].

        Returns:
          (outputs, predictions), each [batches, batch, ...].
        """
        variables = {"params": state.params, **state.model_state}

        def body(_, step_idx):
            batch = shard_batch(gather(arrays, step_idx), self.mesh)
            outputs = self.model.apply(variables, *self.task.inputs(batch), train=False)
            return None, (outputs, self.task.predictions(outputs, batch))

        _, out = jax.lax.scan(body, None, idx)
        return out


def finalize(sums) -> dict[str, float]:
    """Metric sums (host values) -> metric means."""
    return {k: float(n) / float(d) if float(d) > 0 else float("nan") for k, (n, d) in sums.items()}


# True if every floating leaf of a pytree is finite: the loop's check of a restored state.
all_finite = jax.jit(tree_all_finite)
