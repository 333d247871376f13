"""What a batch means: the loss and metrics of each kind of problem.

A task turns model outputs and a batch into per-example (numerator,
denominator) pairs. The training loop masks and sums them, so a metric over a
padded batch, or over many batches, is exactly the metric over the examples.
"""

import inspect

import ml_collections

from dl.errors import ConfigError
from dl.imports import MARKER, import_object, is_import_path
from dl.tasks.base import Task
from dl.tasks.detection import Detection
from dl.tasks.graph import GraphClassification, NodeClassification
from dl.tasks.sequence import Forecast, Sequence
from dl.tasks.supervised import (
    BinaryClassification,
    Classification,
    PerceptronCriterion,
    Regression,
)

TASKS = {
    "classification": Classification,
    "binary_classification": BinaryClassification,
    "regression": Regression,
    "perceptron": PerceptronCriterion,
    "graph_classification": GraphClassification,
    "node_classification": NodeClassification,
    "sequence": Sequence,
    "forecast": Forecast,
    "detection": Detection,
}


def task_fields(cls) -> dict[str, object]:
    """The configurable fields of a Task class and their defaults (its keyword options)."""
    fields = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[2:]:  # self, dataset
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        fields[p.name] = p.default
    return fields


def task_config(name: str, **fields) -> ml_collections.ConfigDict:
    """A config `task` section naming a task and listing every one of its fields.

    With every field present (at its default unless given), each can be set
    from the command line (`--config.task.FIELD=VALUE`) although the binaries
    lock the config.

    Args:
      name: a key of TASKS.
      **fields: fields to set.

    Returns:
      The ConfigDict.

    >>> task_config("detection", lambda_noobj=0.25).lambda_noobj
    0.25
    """
    cls = task_class(name)
    values = {**task_fields(cls), **fields}
    return ml_collections.ConfigDict({"name": name, **_check_fields(name, cls, values)})


def task_class(name: str, given=None) -> type:
    """The Task class a task name stands for: a key of TASKS or an import path.

    Args:
      name: the config's `task.name`.
      given: a Task class handed in instead of the name.

    Raises:
      ConfigError: an unknown name (listing the known ones), an import that
        fails, or an object that is not a Task class.
    """
    if given is None and name in TASKS:
        return TASKS[name]
    if given is None and not (is_import_path(name) or str(name).startswith(MARKER)):
        raise ConfigError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}; or an import "
            "path 'package.module:Class' of a dl.tasks.Task subclass"
        )
    cls = given if given is not None else import_object(name, "task")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(
            f"task {name!r} is {type(cls).__name__} {cls!r}; a task is a subclass of "
            "dl.tasks.Task (its keyword options are the task's config fields)"
        )
    return cls


def _check_fields(name: str, cls: type, given: dict) -> dict:
    known = task_fields(cls)
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"task {name!r} has no field(s) {', '.join(unknown)}; its fields are: {listed}"
        )
    return dict(given)


def make_task(cfg, dataset, task=None) -> Task:
    """Builds the task a config's `task` section names, for a dataset.

    Args:
      cfg: the `task` section: `name` (a key of TASKS, or an import path
        `package.module:Class`) plus the task's own fields; a bare name is
        accepted too (configs written before tasks had fields).
      dataset: the Dataset the task is trained on.
      task: instead of the name, a Task class (built with the section's fields).

    Returns:
      The Task.

    Raises:
      ConfigError: an unknown task or field (the message lists the valid ones).
    """
    fields = {"name": cfg} if isinstance(cfg, str) else dict(cfg)
    name = fields.pop("name", None)
    cls = task_class(name, task)
    fields = _check_fields(str(name), cls, fields)
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    return cls(dataset, **fields)


__all__ = [
    "TASKS",
    "Task",
    "make_task",
    "task_class",
    "task_config",
    "task_fields",
    "Classification",
    "BinaryClassification",
    "Regression",
    "PerceptronCriterion",
    "GraphClassification",
    "NodeClassification",
    "Sequence",
    "Forecast",
    "Detection",
]
