"""Optimizers and learning-rate schedules from a config, as optax chains.

`make_optimizer(config)` reads `optimizer`, `schedule`, `grad_clip_norm` and
`num_train_steps`, and returns the optax transformation and the schedule (a
function of the step, logged as the learning rate).
"""

from __future__ import annotations

import functools

import jax
import optax

from dl.config import Range, check_ranges, option
from dl.errors import ConfigError, unknown_name
from dl.train.finetune import freeze_labels


def _constant(lr, cfg, total):
    return optax.constant_schedule(lr)


def _step(lr, cfg, total):
    """Piecewise constant: multiply by `decay_factor` at each of `boundaries`.

    Boundaries below 1 are fractions of num_train_steps.
    """
    boundaries = list(option(cfg, "boundaries", (0.5, 0.75)))
    factor = float(option(cfg, "decay_factor", 0.1))
    steps = [int(b * total) if b < 1 else int(b) for b in boundaries]
    return optax.piecewise_constant_schedule(lr, {s: factor for s in steps})


def _exponential(lr, cfg, total):
    return optax.exponential_decay(
        lr,
        transition_steps=int(option(cfg, "transition_steps", 100)),
        decay_rate=float(option(cfg, "decay_rate", 0.9)),
        staircase=bool(option(cfg, "staircase", False)),
    )


def _cosine(lr, cfg, total):
    return optax.cosine_decay_schedule(
        lr,
        decay_steps=int(option(cfg, "decay_steps", total)),
        alpha=float(option(cfg, "alpha", 0.0)),
    )


def _warmup_cosine(lr, cfg, total):
    warmup = int(option(cfg, "warmup_steps", max(1, total // 20)))
    return optax.warmup_cosine_decay_schedule(
        init_value=float(option(cfg, "init_value", 0.0)),
        peak_value=lr,
        warmup_steps=warmup,
        decay_steps=int(option(cfg, "decay_steps", total)),
        end_value=float(option(cfg, "end_value", 0.0)),
    )


def _one_cycle(lr, cfg, total):
    return optax.cosine_onecycle_schedule(
        transition_steps=int(option(cfg, "decay_steps", total)),
        peak_value=lr,
        pct_start=float(option(cfg, "pct_start", 0.3)),
        div_factor=float(option(cfg, "div_factor", 25.0)),
        final_div_factor=float(option(cfg, "final_div_factor", 1e4)),
    )


SCHEDULES = {
    "constant": _constant,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "warmup_cosine": _warmup_cosine,
    "one_cycle": _one_cycle,
}


_POSITIVE = Range(0, low_open=True)
_DECAY = Range(0, 1, high_open=True)  # a factor of an exponential moving average

# The values each number of the `optimizer` and `schedule` sections accepts,
# checked whatever the optimizer or schedule (a field it does not read is
# still a mistake if it is out of range); absent or None fields take defaults.
OPTIMIZER_RANGES = {
    "learning_rate": _POSITIVE,
    "momentum": _DECAY,
    "weight_decay": Range(0),
    "b1": _DECAY,
    "b2": _DECAY,
    "eps": _POSITIVE,
    "decay": _DECAY,
}
SCHEDULE_RANGES = {
    "boundaries": Range(0, each=True),
    "decay_factor": _POSITIVE,
    "transition_steps": Range(1),
    "decay_rate": _POSITIVE,
    "decay_steps": Range(1),
    "alpha": Range(0, 1),
    "warmup_steps": Range(0),
    "init_value": Range(0),
    "end_value": Range(0),
    "pct_start": Range(0, 1, low_open=True, high_open=True),
    "div_factor": _POSITIVE,
    "final_div_factor": _POSITIVE,
}
# 0 turns clipping off.
GRAD_CLIP_RANGE = Range(0)


def check_optimizer_config(config) -> None:
    """Refuses an optimizer, schedule or clipping number that is out of range or not finite.

    Runs before anything is built: a learning rate of inf or a momentum of NaN
    would otherwise show only as a non-finite loss once training has started.

    Raises:
      ConfigError: naming the field, its value and the values accepted.

    >>> from dl.config import base_config
    >>> config = base_config()
    >>> config.optimizer.learning_rate = float("inf")
    >>> check_optimizer_config(config)
    Traceback (most recent call last):
    ...
    dl.errors.ConfigError: optimizer.learning_rate must be a finite number > 0, got inf
    """
    check_ranges(config.get("optimizer", None), OPTIMIZER_RANGES, "optimizer.")
    check_ranges(config.get("schedule", None), SCHEDULE_RANGES, "schedule.")
    check_ranges(config, {"grad_clip_norm": GRAD_CLIP_RANGE}, "")


def _momentum(cfg, default=0.9):
    return float(option(cfg, "momentum", default))


OPTIMIZERS = {
    "sgd": lambda lr, c: optax.sgd(lr),
    "momentum": lambda lr, c: optax.sgd(lr, momentum=_momentum(c)),
    "nesterov": lambda lr, c: optax.sgd(lr, momentum=_momentum(c), nesterov=True),
    "adam": lambda lr, c: optax.adam(
        lr,
        b1=float(option(c, "b1", 0.9)),
        b2=float(option(c, "b2", 0.999)),
        eps=float(option(c, "eps", 1e-8)),
    ),
    "adamw": lambda lr, c: optax.adamw(
        lr,
        b1=float(option(c, "b1", 0.9)),
        b2=float(option(c, "b2", 0.999)),
        weight_decay=float(option(c, "weight_decay", 0.0)),
        mask=_decay_mask,
    ),
    "rmsprop": lambda lr, c: optax.rmsprop(
        lr, decay=float(option(c, "decay", 0.9)), momentum=float(option(c, "momentum", 0.0) or 0.0)
    ),
}


def _decay_mask(params):
    """Weight decay applies to kernels (rank >= 2), not to biases or norm scales."""
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def make_schedule(config):
    """The learning-rate schedule of a config: a function step -> rate."""
    cfg = config.get("schedule", None)
    name = option(cfg, "name", "constant")
    if name not in SCHEDULES:
        raise unknown_name("schedule", name, SCHEDULES)
    check_ranges(config.optimizer, {"learning_rate": _POSITIVE}, "optimizer.")
    check_ranges(cfg, SCHEDULE_RANGES, "schedule.")
    lr = float(config.optimizer.learning_rate)
    total = int(config.num_train_steps)
    try:
        schedule = SCHEDULES[name](lr, cfg, total)
        schedule(0)  # optax checks some arguments only when the schedule is evaluated
    except (ValueError, TypeError) as e:
        fields = ", ".join(f"{k}={v!r}" for k, v in dict(cfg or {}).items() if k != "name")
        raise ConfigError(
            f"schedule {name!r} cannot be built with {fields or 'its defaults'} and "
            f"num_train_steps={total}: {e}"
        ) from None
    return schedule


def make_optimizer(config):
    """Builds the optax chain a config asks for.

    The chain is: clip by global norm (if grad_clip_norm > 0), coupled weight
    decay (for every optimizer but adamw, which decouples it), then the
    optimizer driven by the schedule.

    Args:
      config: the experiment config.

    Returns:
      (optax.GradientTransformation, schedule).

    >>> import jax.numpy as jnp
    >>> from dl.config import base_config
    >>> config = base_config()
    >>> config.optimizer.name, config.optimizer.learning_rate = "momentum", 0.1
    >>> config.schedule.name = "cosine"
    >>> tx, schedule = make_optimizer(config)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    >>> round(float(schedule(0)), 6), [round(float(u), 6) for u in updates["w"]]  # -lr * grad
    (0.1, [-0.1, -0.1])
    """
    ocfg = config.optimizer
    name = ocfg.name
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    check_optimizer_config(config)
    schedule = make_schedule(config)
    chain = []
    clip = float(option(config, "grad_clip_norm", 0.0))
    if clip > 0:
        chain.append(optax.clip_by_global_norm(clip))
    wd = float(option(ocfg, "weight_decay", 0.0))
    if wd > 0 and name != "adamw":
        chain.append(optax.add_decayed_weights(wd, mask=_decay_mask))
    chain.append(OPTIMIZERS[name](schedule, ocfg))
    tx = optax.chain(*chain)
    freeze = tuple(config.get("freeze", ()) or ())
    if freeze:  # frozen leaves get zero updates; the chain sees only the others
        labels = functools.partial(freeze_labels, patterns=freeze)
        tx = optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule
