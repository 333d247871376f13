"""Tests for dl.data.subproblems: the rules of the three sub-problems and the Source."""

import numpy as np

from dl.data.subproblems import SUBPROBLEMS, distinct_subproblems, load_subproblems


def test_distinct_subproblems_rules():
    x, y, problem = distinct_subproblems(600, seed=1)
    assert x.shape == (600, 5) and y.shape == (600,) and problem.shape == (600,)
    np.testing.assert_array_equal(np.argmax(x[:, :3], axis=1), problem)
    p = x[:, 3:]
    xor = problem == 0
    np.testing.assert_array_equal(y[xor], (p[xor, 0] > 0) ^ (p[xor, 1] > 0))
    assert set(np.unique(problem)) == {0, 1, 2}
    assert 0.3 < y.mean() < 0.7
    x2, y2, problem2 = distinct_subproblems(600, seed=1)
    np.testing.assert_array_equal(x, x2)


def test_load_subproblems_source_keeps_the_problem_ids():
    src = load_subproblems({"num_samples": 50, "seed": 2})
    x, y, problem = distinct_subproblems(50, 2)
    np.testing.assert_array_equal(src.x, x)
    np.testing.assert_array_equal(src.y, y)
    np.testing.assert_array_equal(src.extra["problem_id"], problem)
    assert src.info["problems"] == list(SUBPROBLEMS)
