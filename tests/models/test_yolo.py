"""Tests for dl.models.yolo: NMS, decoding and the network's output shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.yolo import YOLOv1, YOLOv1Paper, decode, nms


def logit(p):
    return float(np.log(p / (1.0 - p)))


def test_nms_suppresses_overlaps_and_keeps_fixed_size():
    boxes = jnp.array(
        [
            [0.0, 0.0, 1.0, 1.0],  # A, score 0.9
            [0.05, 0.0, 1.05, 1.0],  # IoU with A = 0.95/1.05 = 0.905: suppressed
            [0.5, 0.0, 1.5, 1.0],  # IoU with A = 0.5/1.5 = 0.333: kept
            [3.0, 3.0, 4.0, 4.0],  # disjoint but scores 0: dropped by the score threshold
            [5.0, 5.0, 6.0, 6.0],  # disjoint, kept
        ]
    )
    scores = jnp.array([0.9, 0.95 * 0.9, 0.7, 0.0, 0.3])
    det = jax.jit(nms, static_argnames=("max_detections",))(boxes, scores, 0.5, max_detections=6)
    assert det.boxes.shape == (6, 4) and det.scores.shape == (6,) and det.valid.shape == (6,)
    np.testing.assert_array_equal(det.valid, [True, True, True, False, False, False])
    np.testing.assert_array_equal(det.indices[:3], [0, 2, 4])
    np.testing.assert_allclose(det.scores, [0.9, 0.7, 0.3, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(det.classes, [0, 0, 0, -1, -1, -1])
    # With a stricter threshold box 2 (IoU 0.333 with A) goes too.
    strict = nms(boxes, scores, 0.3, 2)
    np.testing.assert_array_equal(strict.indices, [0, 4])
    assert bool(strict.valid.all())


def test_nms_per_class_and_class_agnostic():
    boxes = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = jnp.array([0.9, 0.8])
    classes = jnp.array([0, 1])
    per_class = nms(boxes, scores, 0.5, 3, classes=classes)
    np.testing.assert_array_equal(per_class.valid, [True, True, False])
    np.testing.assert_array_equal(per_class.classes, [0, 1, -1])
    agnostic = nms(boxes, scores, 0.5, 3, classes=classes, class_agnostic=True)
    np.testing.assert_array_equal(agnostic.valid, [True, False, False])


def test_nms_batches_with_vmap():
    boxes = jnp.tile(jnp.array([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]]), (3, 1, 1))
    det = jax.vmap(lambda b, s: nms(b, s, 0.5, 2))(boxes, jnp.array([[0.2, 0.1]] * 3))
    assert det.boxes.shape == (3, 2, 4)
    np.testing.assert_array_equal(det.valid, [[True, False]] * 3)


def test_decode_puts_box_where_expected():
    s, b, c = 2, 2, 3
    head = np.full((1, s, s, b * 5 + c), -20.0, np.float32)  # confidences ~0 everywhere
    # Cell row 1, column 0, second box: centre offset (0.5, 0.25), sqrt size (0.4, 0.6).
    cell = head[0, 1, 0]
    cell[5:10] = [0.0, logit(0.25), logit(0.4), logit(0.6), logit(0.8)]
    cell[10:] = [0.0, np.log(3.0), 0.0]  # class probabilities 0.2, 0.6, 0.2
    boxes, scores, classes = decode(jnp.asarray(head), s, b, c)
    assert boxes.shape == (1, s * s * b, 4) and scores.shape == classes.shape == (1, s * s * b)
    k = (1 * s + 0) * b + 1  # row-major cells, then box within the cell
    assert int(jnp.argmax(scores[0])) == k
    # Centre ((0 + 0.5) / 2, (1 + 0.25) / 2) = (0.25, 0.625); size (0.16, 0.36).
    np.testing.assert_allclose(boxes[0, k], [0.17, 0.445, 0.33, 0.805], atol=1e-5)
    np.testing.assert_allclose(scores[0, k], 0.8 * 0.6, rtol=1e-5)
    assert int(classes[0, k]) == 1


def test_decode_clips_to_the_image():
    head = np.zeros((1, 1, 1, 6), np.float32)
    head[0, 0, 0, :4] = [logit(0.9), logit(0.9), logit(0.9), logit(0.9)]
    boxes, _, _ = decode(jnp.asarray(head), 1, 1, 1)
    assert float(boxes.max()) <= 1.0 and float(boxes.min()) >= 0.0


def test_decode_rejects_wrong_depth():
    with pytest.raises(ValueError, match=r"B\*5 \+ C"):
        decode(jnp.zeros((1, 7, 7, 12)), 7, 2, 3)


@pytest.mark.parametrize("s,b,c", [(7, 2, 3), (8, 1, 5)])
def test_small_yolo_output_shape(s, b, c):
    model = YOLOv1(num_classes=c, grid_size=s, boxes_per_cell=b)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)
    assert out.shape == (2, s, s, b * 5 + c) and out.dtype == jnp.float32
    assert "batch_stats" in variables


def test_small_yolo_dense_head_shape():
    model = YOLOv1(num_classes=3, head="dense", head_hidden=32, batch_norm=False)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)
    assert out.shape == (1, 7, 7, 13)
    assert "batch_stats" not in variables


def test_paper_yolo_layout_and_output_shape():
    model = YOLOv1Paper()
    x = jax.ShapeDtypeStruct((1, 448, 448, 3), jnp.float32)
    out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)
    assert out.shape == (1, 7, 7, 30)
    params = variables["params"]
    convs = [k for k in params if k.startswith("conv")]
    assert len(convs) == 24
    assert params["conv0"]["kernel"].shape == (7, 7, 3, 64)
    assert params["conv23"]["kernel"].shape == (3, 3, 1024, 1024)
    assert params["hidden"]["kernel"].shape == (7 * 7 * 1024, 4096)
    assert params["out"]["kernel"].shape == (4096, 7 * 7 * 30)


def test_small_yolo_runs_and_trains_mode():
    model = YOLOv1(num_classes=3, grid_size=4, widths=(4, 8), head_hidden=8, dropout_rate=0.5)
    x = jnp.ones((2, 16, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(
        lambda v, x: model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
        )
    )
    out, updates = apply(variables, x)
    assert out.shape == (2, 4, 4, 13) and bool(jnp.all(jnp.isfinite(out)))
    assert "batch_stats" in updates


def test_unknown_backbone_names_choices():
    with pytest.raises(ValueError, match="paper"):
        YOLOv1(backbone="vgg").init(jax.random.key(0), jnp.ones((1, 64, 64, 3)))
