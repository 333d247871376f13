"""The `subproblems` dataset: one binary task made of distinct sub-problems.

Examples come from `distinct_subproblems`: x [examples, 5]
(one-hot sub-problem id, then a point in [-1, 1]^2), y in {0, 1}, and the
extra field `problem_id` [examples], split with x and y, so that a trained
mixture of experts can be asked which expert handles which sub-problem
(experiments/expert_report.py).
"""

from __future__ import annotations

import numpy as np

from dl.data.source import Source

SUBPROBLEMS = ("xor", "circle", "linear")


def distinct_subproblems(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary classification made of three unrelated sub-problems.

    Each example has a one-hot problem id and a point p uniform in [-1, 1]^2:
    problem 0 ("xor"): y = [p1 > 0] xor [p2 > 0];
    problem 1 ("circle"): y = [||p|| < sqrt(2 / pi)] (half the square's area);
    problem 2 ("linear"): y = [p1 - 0.5 p2 > 0].
    A gate that reads the id can send each problem to its own expert.

    Args:
      num_samples: examples to generate.
      seed: seed of the generator.

    Returns:
      x [examples, 5] float32 (one-hot id, p1, p2), y [examples] int32 in
      {0, 1}, problem_id [examples] int32 in {0, 1, 2}.
    """
    rng = np.random.default_rng(seed)
    problem_id = rng.integers(0, len(SUBPROBLEMS), num_samples).astype(np.int32)
    p = rng.uniform(-1.0, 1.0, (num_samples, 2))
    rules = np.stack(
        [
            (p[:, 0] > 0) ^ (p[:, 1] > 0),
            np.sum(p**2, axis=1) < 2.0 / np.pi,
            p[:, 0] - 0.5 * p[:, 1] > 0,
        ],
        axis=1,
    )  # [examples, problems]
    y = rules[np.arange(num_samples), problem_id].astype(np.int32)
    one_hot = np.eye(len(SUBPROBLEMS), dtype=np.float32)[problem_id]
    x = np.concatenate([one_hot, p.astype(np.float32)], axis=1)
    return x, y, problem_id


def load_subproblems(cfg) -> Source:
    """Fields: num_samples (default 3000), seed."""

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


__all__ = ["SUBPROBLEMS", "distinct_subproblems", "load_subproblems"]
