"""What a batch means: the loss and metrics of each kind of problem.

A task turns model outputs and a batch into per-example (numerator,
denominator) pairs. The training loop masks and sums them, so a metric over a
padded batch, or over many batches, is exactly the metric over the examples.
"""

from dl.errors import unknown_name
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


def make_task(name: str, dataset) -> Task:
    """Builds the task `name` for a dataset.

    Args:
      name: a key of TASKS.
      dataset: the Dataset the task is trained on.

    Returns:
      The Task.
    """
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    return TASKS[name](dataset)


__all__ = [
    "TASKS",
    "Task",
    "make_task",
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
