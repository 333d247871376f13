"""The fields every experiment config shares, with their defaults.

Experiment configs (experiments/configs/NAME.py) start from `base_config()`
and set what differs. Fields are typed and the structure is locked, so a
mistyped `--config.FIELD=VALUE` override fails with the field's name.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import ml_collections
from ml_collections import config_dict

from dl.errors import ConfigError


def dataset_defaults() -> ml_collections.ConfigDict:
    """The `dataset` section of `base_config`: the fields every dataset shares."""
    return ml_collections.ConfigDict(
        dict(
            name="digits",
            validation_fraction=0.15,
            test_fraction=0.2,
            split_seed=0,
            standardize="feature",
            # "memory" (every split in host and device memory) or "stream" (read from
            # disk through Grain as training goes: README, "Data bigger than memory").
            pipeline="memory",
            workers=0,  # stream: Grain worker processes that read and decode (0: none)
            read_threads=2,  # stream: threads reading examples in each process
            prefetch=4,  # stream: batches each reader prepares ahead
            # Fields of the user's own files (README, "Configs"), unset unless given:
            # --config.dataset.label_column=species works although configs are locked.
            kind=config_dict.placeholder(str),  # npz/csv: "classification" or "regression"
            label_column=config_dict.placeholder(str),  # csv: the target column
            image_size=config_dict.placeholder(int),  # images, digits: resize to a square
            channels=config_dict.placeholder(int),  # images: 1 (grayscale) or 3 (RGB)
            num_classes=config_dict.placeholder(int),  # detection_npz, synthetic sets
            box_units=config_dict.placeholder(str),  # detection_npz: "normalized" or "pixels"
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """Defaults for the shared fields of an experiment.

    Returns:
      A ConfigDict with: name, seed, dataset, model, dtype, task, optimizer,
      schedule, grad_clip_norm, batch_size, grad_accum_steps, eval_batch_size,
      num_train_steps, steps_per_call, log_every_steps, eval_every_steps,
      checkpoint_every_steps, keep_checkpoints, best_metric, target_metric,
      target_value, early_stopping, nonfinite, augment, init_from, freeze, ema,
      mesh and loss_scale.
    """
    c = ml_collections.ConfigDict()
    c.name = ""
    c.seed = 0
    c.dataset = dataset_defaults()
    c.model = ml_collections.ConfigDict(dict(name="mlp"))
    # Compute dtype of the model: float32, bfloat16 or float16. Parameters and
    # optimizer state stay float32. A `dtype` in the model's own fields wins.
    c.dtype = "float32"
    # `name` (a key of dl.tasks.TASKS) plus the task's own fields, as for `model`.
    c.task = ml_collections.ConfigDict(dict(name="classification"))
    c.optimizer = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=1e-3, momentum=0.9, weight_decay=0.0)
    )
    c.schedule = ml_collections.ConfigDict(dict(name="constant"))
    c.grad_clip_norm = 0.0
    c.batch_size = 32
    # Each batch as K microbatches in the step, one update (the memory of batch_size / K).
    c.grad_accum_steps = 1
    c.eval_batch_size = 256
    c.num_train_steps = 1000
    c.steps_per_call = 1
    c.log_every_steps = 100
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    c.best_metric = "accuracy"
    # Stop early once e.g. "train/accuracy" reaches target_value; the summary
    # says whether it converged.
    c.target_metric = ""
    c.target_value = config_dict.placeholder(float)
    c.nonfinite = ml_collections.ConfigDict(dict(policy="stop", max_consecutive_skips=10))
    # Stop when best_metric has not improved by more than min_delta for
    # `patience` evaluations (0: never); the run ends on the best state.
    c.early_stopping = ml_collections.ConfigDict(dict(patience=0, min_delta=0.0))
    # Image augmentation inside the jitted step, seeded by the step.
    c.augment = ml_collections.ConfigDict(dict(crop_padding=0, horizontal_flip=False))
    # Start a fresh run from another run's parameters and model state (fresh
    # optimizer state); `exclude`: regular expressions over parameter paths
    # (e.g. "head/.*") left at their fresh initialization. A run that has
    # checkpoints of its own resumes from them and ignores this.
    c.init_from = ml_collections.ConfigDict(dict(workdir="", checkpoint="latest", exclude=()))
    # Regular expressions over parameter paths that are not trained.
    c.freeze = ()
    # ema = decay * ema + (1 - decay) * params after each update (0: none); select_best:
    # the loop's evaluations (best, early stopping, target, summary) score the average.
    c.ema = ml_collections.ConfigDict(dict(decay=0.0, select_best=False))
    # The devices as a mesh of data x fsdp (their product: jax.device_count(), every
    # process). Batches are split over all of them; parameters and optimizer state over
    # the fsdp devices of each data group (dl/train/sharding.py). data=0: all the
    # devices fsdp leaves. The default, fsdp=1, is plain data parallelism.
    c.mesh = ml_collections.ConfigDict(dict(data=0, fsdp=1))
    # float16 runs: the loss times `initial` before differentiation; an overflow skips
    # the update and divides the scale by `factor`, growth_interval good steps multiply it.
    c.loss_scale = ml_collections.ConfigDict(
        dict(initial=2.0**15, growth_interval=2000, factor=2.0)
    )
    return c


def option(cfg, name: str, default):
    """`cfg[name]`, or `default` when cfg is None or the field is absent or None.

    The one way dl reads an optional field of a config section (a dataset's,
    a schedule's) whose fields vary with its `name`.

    Args:
      cfg: a ConfigDict, a dict, or None.
      name: the field.
      default: its value when absent.

    Returns:
      The value.

    >>> option({"noise": 0.3}, "noise", 0.1), option({}, "noise", 0.1), option(None, "noise", 0.1)
    (0.3, 0.1, 0.1)
    """
    value = cfg.get(name, default) if cfg is not None else default
    return default if value is None else value


def upgrade(config: dict) -> dict:
    """A stored config dict (config.json, checkpoint metadata) in today's layout.

    Configs written before tasks had fields name the task as a string; today
    `task` is a section like `model`.

    Args:
      config: the stored dict.

    Returns:
      The same dict, upgraded in place.

    >>> upgrade({"task": "classification"})
    {'task': {'name': 'classification'}}
    """
    if isinstance(config.get("task"), str):
        config["task"] = {"name": config["task"]}
    return config


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts: finite numbers between two bounds.

    Attributes:
      low: the lower bound, or None for none.
      high: the upper bound, or None for none.
      low_open: `low` itself is excluded.
      high_open: `high` itself is excluded.
      integer: only integers (not bools, not floats such as 2.0).
      each: the field is a list; every entry must be in the range (an empty
        list is accepted).

    >>> r = Range(0, 1, high_open=True)
    >>> r.accepts(0.5), r.accepts(1.0), r.accepts(float("nan")), str(r)
    (True, False, False, 'a finite number in [0, 1)')
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    each: bool = False

    def _number(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def accepts(self, value) -> bool:
        """Whether `value` is in the range."""
        if self.each:
            return isinstance(value, list | tuple) and all(self._number(v) for v in value)
        return self._number(value)

    def __str__(self) -> str:
        kind = "integer" if self.integer else "finite number"
        if self.low is not None and self.high is not None:
            bounds = (
                f"in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}"
            )
        elif self.low is not None:
            bounds = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f"{'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = ""
        if self.each:
            return f"a list of {kind}s {bounds}".rstrip()
        return f"{'an' if self.integer else 'a'} {kind} {bounds}".rstrip()


def check_ranges(section, ranges: dict[str, Range], prefix: str) -> None:
    """Refuses a field of a config section whose value is outside its declared range.

    Fields that are absent or None are not checked (they take their defaults).

    Args:
      section: a ConfigDict, a dict, or None.
      ranges: field -> Range.
      prefix: what names the section in messages, e.g. "optimizer.".

    Raises:
      ConfigError: naming the field, its value and the range.

    >>> check_ranges({"dropout_rate": 2.0}, {"dropout_rate": Range(0, 1, high_open=True)}, "model.")
    Traceback (most recent call last):
    ...
    dl.errors.ConfigError: model.dropout_rate must be a finite number in [0, 1), got 2.0
    """
    if section is None:
        return
    for name, accepted in ranges.items():
        value = section.get(name, None)
        if value is not None and not accepted.accepts(value):
            raise ConfigError(f"{prefix}{name} must be {accepted}, got {value!r}")
