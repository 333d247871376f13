"""What a batch means: the loss and metrics of each kind of problem.

A task turns model outputs and a batch into per-example (numerator,
denominator) pairs. The training loop masks and sums them, so a metric over a
padded batch, or over many batches, is exactly the metric over the examples.
"""

import inspect

import ml_collections

from dl.errors import ConfigError, unknown_name
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
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    values = {**task_fields(TASKS[name]), **fields}
    return ml_collections.ConfigDict({"name": name, **_check_fields(name, values)})


def _check_fields(name: str, given: dict) -> dict:
    known = task_fields(TASKS[name])
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"task {name!r} has no field(s) {', '.join(unknown)}; its fields are: {listed}"
        )
    return dict(given)


def make_task(cfg, dataset) -> Task:
    """Builds the task a config's `task` section names, for a dataset.

    Args:
      cfg: the `task` section: `name` (a key of TASKS) plus the task's own
        fields; a bare name is accepted too (configs written before tasks had
        fields).
      dataset: the Dataset the task is trained on.

    Returns:
      The Task.

    Raises:
      ConfigError: an unknown task or field (the message lists the valid ones).
    """
    fields = {"name": cfg} if isinstance(cfg, str) else dict(cfg)
    name = fields.pop("name", None)
    if name not in TASKS:
        raise unknown_name("task", str(name), TASKS)
    fields = _check_fields(name, fields)
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    return TASKS[name](dataset, **fields)


__all__ = [
    "TASKS",
    "Task",
    "make_task",
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
