"""The `subproblems` dataset: one binary task made of distinct sub-problems.

Examples come from dl.models.modular.distinct_subproblems: x [examples, 5]
(one-hot sub-problem id, then a point in [-1, 1]^2), y in {0, 1}, and the
extra field `problem_id` [examples], split with x and y, so that a trained
mixture of experts can be asked which expert handles which sub-problem
(experiments/expert_report.py).
"""

from __future__ import annotations

from dl.data.source import Source


def load_subproblems(cfg) -> Source:
    """Fields: num_samples (default 3000), seed."""
    from dl.models.modular import SUBPROBLEMS, distinct_subproblems

    n = int(cfg.get("num_samples", 3000)) if cfg is not None else 3000
    seed = int(cfg.get("seed", 0)) if cfg is not None else 0
    x, y, problem_id = distinct_subproblems(n, seed)
    return Source(
        x,
        y,
        "classification",
        2,
        info={"source": "distinct_subproblems", "problems": list(SUBPROBLEMS)},
        extra={"problem_id": problem_id},
    )


__all__ = ["load_subproblems"]
