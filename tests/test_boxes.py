"""Tests for dl.boxes: one box geometry for numpy on the host and jax under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.boxes import box_area, box_intersection, iou


def test_iou_hand_computed():
    a = jnp.array([0.0, 0.0, 2.0, 2.0])
    # Overlap 1x1, areas 4 and 4: 1 / 7.
    np.testing.assert_allclose(iou(a, jnp.array([1.0, 1.0, 3.0, 3.0])), 1 / 7, rtol=1e-6)
    # Contained 1x2 box: 2 / 4.
    np.testing.assert_allclose(iou(a, jnp.array([0.5, 0.0, 1.5, 2.0])), 0.5, rtol=1e-6)
    assert float(iou(a, a)) == 1.0
    assert float(iou(a, jnp.array([2.0, 0.0, 3.0, 1.0]))) == 0.0  # touching edges
    assert float(iou(jnp.zeros(4), jnp.zeros(4))) == 0.0  # empty union
    pairwise = iou(a[None, None], jnp.stack([a, jnp.array([1.0, 1.0, 3.0, 3.0])])[None])
    assert pairwise.shape == (1, 2)


def test_numpy_in_numpy_out_and_jax_under_jit_agree():
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 1, (2, 50, 2, 2)), axis=2)  # [2, boxes, min/max, x/y]
    a, b = (c.reshape(50, 4).astype(np.float32) for c in corners)
    host = iou(a[:, None], b[None])
    assert isinstance(host, np.ndarray) and host.shape == (50, 50)
    traced = jax.jit(iou)(a[:, None], b[None])
    assert isinstance(traced, jax.Array)
    np.testing.assert_array_equal(host, np.asarray(traced))
    host64 = iou(a.astype(np.float64)[:, None], b.astype(np.float64)[None])
    assert host64.dtype == np.float64
    np.testing.assert_allclose(host64, host, rtol=1e-5, atol=1e-7)


def test_area_and_intersection():
    a = np.array([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 0.5, 2.0]])  # the second is inverted: empty
    np.testing.assert_array_equal(box_area(a), [6.0, 0.0])
    b = np.array([1.0, 2.0, 4.0, 4.0])
    np.testing.assert_array_equal(box_intersection(a, b), [1.0, 0.0])
    assert float(box_intersection(jnp.asarray(a[0]), b)) == pytest.approx(1.0)
