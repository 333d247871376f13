"""Whole-split evaluation and prediction of a train state, one compiled call per split."""

from __future__ import annotations

import jax
import numpy as np

from dl.data import SPLITS, Dataset, eval_order
from dl.train.sharding import data_mesh, put_replicated, to_host
from dl.train.step import finalize


def device_arrays(dataset: Dataset, mesh=None) -> dict:
    """Every split's arrays, put on every device of the mesh once."""
    return put_replicated(dataset.splits, mesh if mesh is not None else data_mesh())


class Evaluator:
    """Evaluates a state on the splits of a dataset, one compiled call per split.

    Every example counts exactly once: the last batch is padded and masked.

    Args:
      experiment: a built `dl.train.Experiment`.
      arrays: its splits on the device (`device_arrays`).
      batch_size: examples per evaluation batch (rounded up to a multiple of
        the devices).
    """

    def __init__(self, experiment, arrays: dict, batch_size: int):
        self.exp, self.arrays = experiment, arrays
        self.orders = {}
        for split in SPLITS:
            n = experiment.dataset.size(split)
            if n:
                # A static batch that every device gets an equal share of.
                size = min(batch_size, n)
                size = -(-size // experiment.mesh.size) * experiment.mesh.size
                idx, mask = eval_order(n, size)
                self.orders[split] = put_replicated((idx, mask), experiment.mesh)
        self._compiled = {}

    def __call__(self, state, split: str) -> dict[str, float]:
        """The task's metrics of `state` over every example of `split` ({} if it is empty)."""
        if split not in self.orders:
            return {}
        idx, mask = self.orders[split]
        if split not in self._compiled:
            self._compiled[split] = self.exp.steps.evaluate_all.lower(
                state, self.arrays[split], idx, mask
            ).compile()
        sums = self._compiled[split](state, self.arrays[split], idx, mask)
        metrics = finalize(to_host(sums))
        if self.exp.task.has_host_metrics:
            _, predictions = self.predict(state, split)
            metrics.update(self.exp.task.host_metrics(predictions, self.exp.dataset.splits[split]))
        return metrics

    def predict(self, state, split: str):
        """Raw outputs and task predictions for every example of a split.

        Returns:
          (outputs, predictions) as numpy arrays [examples, ...], in split order.
        """
        idx, mask = self.orders[split]
        key = ("predict", split)
        if key not in self._compiled:
            self._compiled[key] = self.exp.steps.predict_all.lower(
                state, self.arrays[split], idx
            ).compile()
        out = to_host(self._compiled[key](state, self.arrays[split], idx))
        keep = np.asarray(mask).reshape(-1) > 0
        return jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1, *a.shape[2:])[keep], out)
