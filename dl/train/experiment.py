"""From a config to an `Experiment`: dataset, task, model, optimizer and compiled steps.

`build(config)` looks every name up in dl's tables, builds the parts, and
checks by abstract evaluation that the data fits the model and the task
before anything compiles.
"""

from __future__ import annotations

import copy
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dl.config import Range, check_ranges
from dl.data import Dataset, load_dataset
from dl.data.augment import make_augment
from dl.data.stream import StreamDataset, is_streamed, load_stream_dataset
from dl.errors import ConfigError
from dl.imports import MARKER, import_path_of, record_name
from dl.models import build_model, instance_fields
from dl.tasks import Task, make_task
from dl.train.loss_scale import LossScaling
from dl.train.optim import check_optimizer_config, make_optimizer
from dl.train.sharding import check_divisible, make_mesh, put_state, state_shardings
from dl.train.state import TrainState
from dl.train.step import StepConfig, Steps

INTERVALS = ("num_train_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps")
# The other numbers of a run that have a range: section ("" for the top level)
# -> field -> Range. Those of the model and the optimizer are declared with them.
RUN_RANGES = {
    "": {
        "keep_checkpoints": Range(1, integer=True),
        "target_value": Range(),
        "grad_accum_steps": Range(1, integer=True),
    },
    "ema": {"decay": Range(0.0, 1.0, high_open=True)},
    "loss_scale": {
        "initial": Range(1.0, 2.0**24),
        "growth_interval": Range(1, integer=True),
        "factor": Range(1.0, low_open=True),
    },
    # data=0: all the devices fsdp leaves; the product is checked against the devices
    # when the experiment is assembled (dl.train.sharding.mesh_shape).
    "mesh": {"data": Range(0, integer=True), "fsdp": Range(1, integer=True)},
    "early_stopping": {"patience": Range(0, integer=True), "min_delta": Range(0)},
    "nonfinite": {"max_consecutive_skips": Range(0, integer=True)},
    "dataset": {
        "workers": Range(0, integer=True),
        "read_threads": Range(1, integer=True),
        "prefetch": Range(1, integer=True),
    },
}


@dataclasses.dataclass
class Experiment:
    """Everything a config builds, before any state exists.

    Attributes:
      config: the experiment config.
      dataset: the split and standardized data.
      task: the loss and metrics.
      model: the flax module.
      steps: the compiled train, evaluation and prediction calls.
      mesh: the ("data", "fsdp") mesh of the devices: batches are split over
        all of them, parameters and optimizer state over "fsdp".
    """

    config: object
    dataset: Dataset
    task: Task
    model: object
    steps: Steps
    mesh: object = None

    def example_batch(self, size: int = 2) -> dict:
        """The first `size` training examples, field -> array [size, ...]."""
        return {k: v[:size] for k, v in self.dataset.splits["train"].items()}

    def init_state(self, from_data: bool = True) -> TrainState:
        """A fresh state; `from_data` passes the training split to the model's init_from_data."""
        return self.steps.init_state(
            jax.random.PRNGKey(int(self.config.seed)),
            self.example_batch(int(self.config.batch_size)),
            self.dataset.splits["train"] if from_data else None,
        )

    def placed_init_state(self) -> TrainState:
        """A fresh state, placed over the experiment's mesh (`place`)."""
        return self.place(self.init_state())

    def place(self, state: TrainState) -> TrainState:
        """A state (host or device arrays) placed as training holds it: `state_shardings`."""
        return put_state(state, self.mesh)

    def state_shardings(self, state) -> TrainState:
        """The sharding of every leaf of a state (or of its shapes) on the experiment's mesh."""
        return state_shardings(state, self.mesh)

    def abstract_state(self) -> TrainState:
        """The state's shapes, dtypes and placement (this run's mesh), without computing it."""
        shapes = jax.eval_shape(lambda: self.init_state(from_data=False))
        return jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            shapes,
            self.state_shardings(shapes),
        )


def check_shapes(model, task: Task, dataset: Dataset) -> None:
    """Checks, by abstract evaluation only, that the data fits the model and the task.

    Raises:
      ConfigError: naming the expected and the actual shapes.
    """
    example = {
        k: jax.ShapeDtypeStruct((2,) + v.shape[1:], v.dtype)
        for k, v in dataset.splits["train"].items()
    }
    shapes = {k: tuple(v.shape[1:]) for k, v in example.items()}
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}
    try:
        outputs, _ = jax.eval_shape(
            lambda b: model.init_with_output(rngs, *task.inputs(b), train=False), example
        )
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 -- any failure to build the model is a config problem
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"dataset {dataset.name!r} gives per-example shapes {shapes}, which "
            f"model {type(model).__name__} cannot take: {type(e).__name__}: {first}"
        ) from e
    problem = task.check_outputs(tuple(outputs.shape[1:]))
    if problem:
        raise ConfigError(problem)


def check_intervals(config) -> dict[str, int]:
    """The config's step counts and batch sizes, checked.

    Returns:
      field -> value for steps_per_call, the intervals and the batch sizes.

    Raises:
      ConfigError: a value below 1, or an interval that is not a multiple of
        steps_per_call.
    """
    k = int(config.get("steps_per_call", 1))
    if k < 1:
        raise ConfigError(f"steps_per_call must be >= 1, got {k}")
    out = {"steps_per_call": k}
    for name in (*INTERVALS, "batch_size", "eval_batch_size"):
        value = int(config[name])
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
        if name in INTERVALS and value % k:
            raise ConfigError(f"{name}={value} must be a multiple of steps_per_call={k}")
        out[name] = value
    accum = config.get("grad_accum_steps", 1)
    if isinstance(accum, int) and accum >= 1 and out["batch_size"] % accum:
        raise ConfigError(
            f"batch_size={out['batch_size']} must be a multiple of grad_accum_steps={accum} "
            "(each microbatch holds batch_size / grad_accum_steps examples)"
        )
    return out


def check_numbers(config) -> None:
    """Refuses a number of the config outside its range, before any data is loaded.

    The intervals and batch sizes (`check_intervals`), the optimizer, schedule
    and clipping numbers (`dl.train.optim.check_optimizer_config`) and those
    of RUN_RANGES; model fields are checked when the model is built.

    Raises:
      ConfigError: naming the field, its value and the values accepted.
    """
    check_intervals(config)
    check_optimizer_config(config)
    for section, ranges in RUN_RANGES.items():
        part = config.get(section, None) if section else config
        check_ranges(part, ranges, f"{section}." if section else "")
    check_ema(config)


def check_ema(config) -> None:
    """Refuses ema.select_best without a moving average to select on."""
    ema = config.get("ema", {})
    if ema.get("select_best", False) and not float(ema.get("decay", 0.0) or 0.0) > 0:
        raise ConfigError(
            "ema.select_best=True scores the moving average of the parameters: set "
            "ema.decay in (0, 1), e.g. --config.ema.decay=0.999"
        )


def step_config(config, model) -> StepConfig:
    """The static choices of the training step that a config makes, for the model built."""
    nonfinite = config.get("nonfinite", {})
    return StepConfig(
        nonfinite_policy=nonfinite.get("policy", "stop"),
        max_consecutive_skips=int(nonfinite.get("max_consecutive_skips", 10)),
        augment=make_augment(config.get("augment")),
        grad_accum_steps=int(config.get("grad_accum_steps", 1)),
        ema_decay=float(config.get("ema", {}).get("decay", 0.0)),
        loss_scaling=_loss_scaling(config, model),
    )


def _loss_scaling(config, model) -> LossScaling | None:
    """Dynamic loss scaling for a float16 run, else None.

    The run is float16 when the built model computes in float16: its own
    `dtype` field, else the config's `dtype` (`build_model` resolves the
    two), or the dtype of a Module instance handed in.
    """
    dtype = getattr(model, "dtype", None)
    try:
        float16 = dtype is not None and jnp.dtype(dtype) == jnp.float16
    except TypeError:  # a model of one's own whose `dtype` is no dtype
        float16 = False
    if not float16:
        return None
    ls = config.get("loss_scale", {})
    return LossScaling(
        initial=float(ls.get("initial", 2.0**15)),
        growth_interval=int(ls.get("growth_interval", 2000)),
        factor=float(ls.get("factor", 2.0)),
    )


def build(config, *, model=None, dataset=None, task=None) -> Experiment:
    """Builds the experiment a config describes.

    Args:
      config: an experiment ConfigDict (see dl/config.py for the fields).
      model: instead of `config.model.name`, a flax Module class (built with
        the config's model fields) or instance (used as it is).
      dataset: instead of `config.dataset.name`, a `dl.data.Source` or a
        function taking the dataset config and returning one.
      task: instead of `config.task.name`, a `dl.tasks.Task` subclass.

    Returns:
      The Experiment.

    Raises:
      ConfigError: an unknown name or field, or data that does not fit the
        model and the task (checked before anything compiles).

    >>> from dl.config import base_config
    >>> config = base_config()
    >>> config.model.hidden_sizes = (8,)
    >>> exp = build(config)
    >>> exp.dataset.name, exp.task.name, exp.task.num_outputs()
    ('digits', 'classification', 10)
    """
    check_numbers(config)
    if dataset is None and is_streamed(config.dataset):
        return assemble(config, load_stream_dataset(config.dataset), model=model, task=task)
    return assemble(config, load_dataset(config.dataset, dataset), model=model, task=task)


def assemble(config, data: Dataset, *, model=None, task=None) -> Experiment:
    """Builds the experiment of a config on a dataset already loaded (`build`'s second half).

    `dl.load` assembles a run's experiment on a stand-in of its dataset
    rebuilt from the saved preprocessing, without loading the data.

    Args:
      config: the experiment config.
      data: the Dataset (or a stand-in with the training split's field shapes).
      model, task: as for `build`.

    Returns:
      The Experiment.
    """
    task_ = make_task(config.task, data, task)
    model_ = build_model(config.model, task_.num_outputs(), dtype=config.get("dtype"), model=model)
    if isinstance(data, StreamDataset) and getattr(model_, "init_from_data", None) is not None:
        raise ConfigError(
            f"model {config.model.name!r} sets variables from the whole training split "
            "(init_from_data), which the streaming pipeline does not hold; use "
            "dataset.pipeline='memory'"
        )
    problem = task_.check_model(model_)  # e.g. vocabulary sizes against the data
    if problem:
        raise ConfigError(problem)
    check_shapes(model_, task_, data)
    tx, schedule = make_optimizer(config)
    mesh = make_mesh(config.get("mesh", None))
    check_divisible(int(config.batch_size), mesh)
    steps = Steps(model_, task_, tx, schedule, step_config(config, model_), mesh)
    return Experiment(config, data, task_, model_, steps, mesh)


def recorded_config(config, *, model=None, dataset=None, task=None) -> ml_collections.ConfigDict:
    """The config a workdir records for a run built with objects in place of names.

    Each object is named by its import path, so that any binary finds it again;
    one without (defined in `__main__`, a local class, data in memory) is
    named by a marker `<object>:NAME`, and whatever reads the workdir must be
    handed the same object. A Module instance is recorded as its class and
    the fields it was built with.

    Args:
      config: the experiment config.
      model, dataset, task: the objects given to `build`, or None.

    Returns:
      A copy of `config` (unlocked) with those names replaced.
    """
    out = copy.deepcopy(config)
    with out.unlocked():
        if isinstance(model, nn.Module):
            fields = instance_fields(model)
            path = import_path_of(type(model))
            if path is None or fields is None:
                out.model = ml_collections.ConfigDict({"name": f"{MARKER}{type(model).__name__}"})
            else:
                out.model = ml_collections.ConfigDict({"name": path, **fields})
        elif model is not None:
            out.model.name = record_name(model, getattr(model, "__name__", type(model).__name__))
        if dataset is not None:
            label = getattr(dataset, "__name__", type(dataset).__name__)
            out.dataset.name = record_name(dataset, label)
        if task is not None:
            out.task.name = record_name(task, getattr(task, "__name__", "task"))
    return out
