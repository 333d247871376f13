"""The detection task (YOLO v1 loss, mAP) and the detection data (shapes, npz files)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data import make_dataset
from dl.data.shapes import generate_shapes, load_detection_npz, make_shapes_source, validate_boxes
from dl.errors import ConfigError
from dl.tasks.detection import (
    Detection,
    average_precision,
    build_targets,
    draw_detections,
    mean_average_precision,
    yolo_loss_terms,
)
from dl.train.step import masked_mean

BIG = 60.0  # a logit whose sigmoid is 1 (or 0) in float32


def logit(p):
    return float(np.log(p / (1.0 - p)))


def shapes_dataset(n=24, **kw):
    cfg = {"num_samples": n, "seed": 1, **kw}
    return make_dataset(make_shapes_source(cfg), "shapes", {"standardize": "none"})


# --- the loss ---------------------------------------------------------------------------


def perfect_head(boxes, classes, mask, s, b, c):
    """A raw head whose activated values equal the YOLO targets exactly."""
    t = jax.tree_util.tree_map(np.asarray, build_targets(boxes, classes, mask, s, c))
    n = boxes.shape[0]
    head = np.zeros((n, s, s, b * 5 + c), np.float32)
    head[..., 4 : b * 5 : 5] = -BIG  # no confidence anywhere ...
    head[..., b * 5 :] = np.where(t["class_one_hot"] > 0, BIG, -BIG)
    for i, r, q in zip(*np.nonzero(t["has_object"]), strict=True):
        xy, swh = t["xy"][i, r, q], t["sqrt_wh"][i, r, q]
        head[i, r, q, 0:5] = [logit(xy[0]), logit(xy[1]), logit(swh[0]), logit(swh[1]), BIG]
        for j in range(1, b):  # ... other predictors: a box elsewhere, confidence 0
            head[i, r, q, 5 * j : 5 * j + 4] = [-3.0, -3.0, -3.0, -3.0]
    return jnp.asarray(head)


def test_loss_is_zero_for_perfect_predictions():
    boxes = np.array(
        [
            [[0.1, 0.1, 0.4, 0.5], [0.55, 0.6, 0.9, 0.95], [0, 0, 0, 0]],
            [[0.3, 0.2, 0.7, 0.6], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    classes = np.array([[2, 0, -1], [1, -1, -1]], np.int32)
    mask = (classes >= 0).astype(np.float32)
    head = perfect_head(boxes, classes, mask, 7, 2, 3)
    for target in ("iou", "one"):
        terms = yolo_loss_terms(head, boxes, classes, mask, 3, confidence_target=target)
        np.testing.assert_allclose(terms["total"], 0.0, atol=1e-6)
    task = Detection(shapes_dataset())
    batch = {"boxes": boxes, "y": classes, "box_mask": mask}
    num, den = task.loss(head, batch)
    assert num.shape == den.shape == (2,)
    np.testing.assert_allclose(num, 0.0, atol=1e-6)
    m = {k: float(masked_mean(v, jnp.ones(2))) for k, v in task.metrics(head, batch).items()}
    assert m["objectness_accuracy"] == 1.0 and m["class_accuracy"] == 1.0
    np.testing.assert_allclose(m["iou"], 1.0, atol=1e-5)


def one_cell_case(swap=False):
    """S=1, B=2, C=2; one object of class 1, box (0.18, 0.18, 0.82, 0.82).

    Ground truth: centre (0.5, 0.5), sqrt w = sqrt h = 0.8.
    Box A: centre (0.5, 0.5), sqrt w = sqrt h = 0.5 -> 0.25 x 0.25 inside the truth,
      IoU = 0.0625 / 0.4096 = 0.1526; confidence 0.5.
    Box B: centre (0.6, 0.5), sqrt w = 0.7, sqrt h = 0.8 -> x in [0.355, 0.845],
      y in [0.18, 0.82]; intersection 0.465 * 0.64 = 0.2976, union 0.3136 + 0.4096 -
      0.2976 = 0.4256, IoU = 93/133 = 0.6992: B is responsible; confidence 0.9.
    Class probabilities softmax(0, log 3) = (0.25, 0.75).
    """
    box_a = [0.0, 0.0, 0.0, 0.0, 0.0]
    box_b = [logit(0.6), 0.0, logit(0.7), logit(0.8), logit(0.9)]
    cells = box_b + box_a if swap else box_a + box_b
    head = jnp.asarray(np.array(cells + [0.0, np.log(3.0)], np.float32).reshape(1, 1, 1, 12))
    boxes = np.array([[[0.18, 0.18, 0.82, 0.82]]], np.float32)
    return head, boxes, np.array([[1]], np.int32), np.ones((1, 1), np.float32)


def test_loss_hand_computed_one_cell():
    head, boxes, classes, mask = one_cell_case()
    t = yolo_loss_terms(head, boxes, classes, mask, 2, confidence_target="one")
    np.testing.assert_array_equal(t["responsible"][0, 0, 0], [0.0, 1.0])
    np.testing.assert_allclose(t["iou"][0, 0, 0], [0.0625 / 0.4096, 93 / 133], rtol=1e-5)
    # coord: 5 * (0.6 - 0.5)^2 on x, 5 * (0.7 - 0.8)^2 on sqrt w (0.1125 if it were on w).
    np.testing.assert_allclose(t["coord"], [0.1], rtol=1e-4)
    np.testing.assert_allclose(t["object"], [(0.9 - 1.0) ** 2], rtol=1e-4)
    # Box A, not responsible: 0.5 * 0.5^2.
    np.testing.assert_allclose(t["no_object"], [0.125], rtol=1e-5)
    # (0.25 - 0)^2 + (0.75 - 1)^2.
    np.testing.assert_allclose(t["class"], [0.125], rtol=1e-5)
    np.testing.assert_allclose(t["total"], [0.36], rtol=1e-5)
    # With the paper's IoU confidence target only the object term changes.
    t_iou = yolo_loss_terms(head, boxes, classes, mask, 2)
    np.testing.assert_allclose(t_iou["object"], [(0.9 - 93 / 133) ** 2], rtol=1e-4)
    np.testing.assert_allclose(t_iou["total"], 0.35 + (0.9 - 93 / 133) ** 2, rtol=1e-5)


def test_responsible_box_is_the_higher_iou_one():
    head, boxes, classes, mask = one_cell_case(swap=True)
    t = yolo_loss_terms(head, boxes, classes, mask, 2, confidence_target="one")
    np.testing.assert_array_equal(t["responsible"][0, 0, 0], [1.0, 0.0])
    np.testing.assert_allclose(t["total"], [0.36], rtol=1e-5)


def test_loss_weights_scale_their_terms():
    head, boxes, classes, mask = one_cell_case()
    t = yolo_loss_terms(
        head, boxes, classes, mask, 2, confidence_target="one", lambda_coord=1.0, lambda_noobj=1.0
    )
    np.testing.assert_allclose(t["coord"], [0.02], rtol=1e-4)
    np.testing.assert_allclose(t["no_object"], [0.25], rtol=1e-5)


def test_targets_one_object_per_cell_largest_wins():
    boxes = np.array(
        [[[0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 1.0, 1.0]]], np.float32
    )
    classes = np.array([[0, 1, 2]], np.int32)
    t = build_targets(boxes, classes, np.ones((1, 3), np.float32), 2, 3)
    np.testing.assert_array_equal(t["has_object"][0], [[1, 0], [0, 1]])
    np.testing.assert_allclose(t["box"][0, 0, 0], boxes[0, 1])  # the larger box wins
    np.testing.assert_allclose(t["xy"][0, 1, 1], [0.6, 0.6], rtol=1e-5)  # centre 0.8 in cell 1
    np.testing.assert_allclose(t["sqrt_wh"][0, 1, 1], [np.sqrt(0.4)] * 2, rtol=1e-5)


def test_loss_gradient_is_finite():
    head, boxes, classes, mask = one_cell_case()
    grad = jax.grad(lambda h: yolo_loss_terms(h, boxes, classes, mask, 2)["total"].sum())(head)
    assert bool(jnp.all(jnp.isfinite(grad)))


# --- mAP --------------------------------------------------------------------------------


def test_average_precision_all_point():
    # Ranked FP, TP with one ground truth: precision (0, 1/2), recall (0, 1);
    # the envelope is 1/2 from recall 0 to 1, so AP = 0.5.
    assert average_precision([0.0, 1.0], [0.0, 0.5]) == pytest.approx(0.5)
    # TP, FP, TP with two ground truths: precision (1, 1/2, 2/3), recall (1/2, 1/2, 1):
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6)


def test_map_perfect_predictions_is_one():
    ds = shapes_dataset(12)
    split = ds.splits["train"]
    m = split["box_mask"].shape[1]
    pred = {
        "boxes": split["boxes"],
        "scores": split["box_mask"] * 0.9,
        "classes": split["y"],
        "valid": split["box_mask"] > 0,
    }
    task = Detection(ds)
    out = task.host_metrics(pred, split)
    assert out["map50"] == pytest.approx(1.0)
    assert {"ap50_circle", "ap50_square", "ap50_triangle"} <= set(out)
    assert pred["boxes"].shape[1] == m


def test_map_false_positive_ranked_first():
    true_boxes = np.array([[[0.1, 0.1, 0.5, 0.5]]], np.float32)
    pred_boxes = np.array([[[0.6, 0.6, 0.9, 0.9], [0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]]])
    mean, ap = mean_average_precision(
        pred_boxes,
        np.array([[0.9, 0.8, 0.0]]),
        np.array([[0, 0, -1]]),
        np.array([[True, True, False]]),
        true_boxes,
        np.array([[0]]),
        np.ones((1, 1)),
        num_classes=2,
    )
    # AP 0.5 (see test_average_precision_all_point); class 1 has no ground truth.
    assert mean == pytest.approx(0.5) and ap[0] == pytest.approx(0.5) and np.isnan(ap[1])


def test_map_duplicates_wrong_class_and_low_iou_are_false_positives():
    true_boxes = np.array([[[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]]], np.float32)
    pred_boxes = np.array(
        [
            [
                [0.0, 0.0, 0.4, 0.4],  # TP for object 0 (class 0), score 0.9
                [0.0, 0.0, 0.4, 0.4],  # duplicate: FP, 0.8
                [0.5, 0.5, 1.0, 1.0],  # object 1's box but class 1, 0.7
                [0.5, 0.5, 0.7, 0.7],  # IoU 0.04/0.25 = 0.16 with object 1: FP, 0.6
            ]
        ],
        np.float32,
    )
    # Both objects are class 0. Class 0 ranking: TP 0.9, FP 0.8, FP 0.6: recall
    # (1/2, 1/2, 1/2), precision (1, 1/2, 1/3), AP = 1/2 * 1 = 0.5. Class 1 has a
    # detection but no ground truth, so it is left out of the mean.
    mean, ap = mean_average_precision(
        pred_boxes,
        np.array([[0.9, 0.8, 0.7, 0.6]]),
        np.array([[0, 0, 1, 0]]),
        np.ones((1, 4), bool),
        true_boxes,
        np.array([[0, 0]]),
        np.ones((1, 2)),
        num_classes=2,
    )
    assert ap[0] == pytest.approx(0.5) and mean == pytest.approx(0.5)


def test_predictions_and_host_metrics_end_to_end():
    ds = shapes_dataset(8)
    split = ds.splits["train"]
    n = len(split["x"])
    task = Detection(ds, max_detections=8)
    head = perfect_head(split["boxes"], split["y"], split["box_mask"], 7, 2, 3)
    pred = jax.jit(task.predictions)(head, split)
    assert pred["boxes"].shape == (n, 8, 4) and pred["valid"].dtype == jnp.bool_
    pred = jax.tree_util.tree_map(np.asarray, pred)
    # Every object whose centre cell it does not share with a larger one is found.
    assert task.host_metrics(pred, split)["map50"] > 0.9


def test_task_checks_output_shape_and_dataset():
    task = Detection(shapes_dataset())
    assert task.check_outputs((7, 7, 13)) is None
    assert "num_classes=3" in task.check_outputs((7, 7, 30))
    assert task.check_outputs((13,)) is not None
    assert task.direction("map50") == "max" and task.direction("loss") == "min"
    classification = make_dataset(
        make_shapes_source({"num_samples": 4}), "shapes", {"standardize": "none"}
    )
    classification.kind = "classification"
    with pytest.raises(ConfigError, match="needs boxes"):
        Detection(classification)


def test_draw_detections_writes_png(tmp_path):
    ds = shapes_dataset(3)
    split = ds.splits["train"]
    pred = {
        "boxes": split["boxes"],
        "scores": split["box_mask"],
        "classes": split["y"],
        "valid": split["box_mask"] > 0,
    }
    path = draw_detections(
        split["x"], pred, split, str(tmp_path / "det.png"), ["circle", "square", "triangle"]
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# --- data -------------------------------------------------------------------------------


def test_shapes_are_deterministic_and_well_formed():
    a = make_shapes_source({"num_samples": 40, "seed": 3})
    b = make_shapes_source({"num_samples": 40, "seed": 3})
    c = make_shapes_source({"num_samples": 40, "seed": 4})
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.extra["boxes"], b.extra["boxes"])
    assert not np.array_equal(a.x, c.x)
    assert a.kind == "detection" and a.num_classes == 3
    assert a.x.shape == (40, 64, 64, 3) and a.x.dtype == np.float32
    assert a.x.min() >= 0 and a.x.max() <= 1
    assert a.y.shape == (40, 4) and a.y.dtype == np.int32
    boxes, mask = a.extra["boxes"], a.extra["box_mask"]
    assert boxes.shape == (40, 4, 4) and mask.shape == (40, 4)
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 4
    real = mask > 0
    np.testing.assert_array_equal(a.y >= 0, real)
    assert set(np.unique(a.y[real])) <= {0, 1, 2}
    assert boxes[real].min() >= 0 and boxes[real].max() <= 1
    assert np.all(boxes[real][:, 2] > boxes[real][:, 0])
    assert np.all(boxes[real][:, 3] > boxes[real][:, 1])
    validate_boxes(boxes, mask, (64, 64, 3))


def test_drawn_pixels_lie_inside_their_boxes():
    data = generate_shapes(30, min_objects=1, max_objects=3, noise=0.0, seed=5)
    for i in range(30):
        image = data["x"][i]
        # Without noise the background is the most common colour.
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        background = colours[np.argmax(counts)]
        drawn = np.any(np.abs(image - background) > 1e-6, axis=-1)  # [64, 64]
        inside = np.zeros_like(drawn)
        for j in np.flatnonzero(data["box_mask"][i]):
            x0, y0, x1, y1 = np.round(data["boxes"][i, j] * 64).astype(int)
            inside[y0:y1, x0:x1] = True
            assert drawn[y0:y1, x0:x1].any()
        assert not np.any(drawn & ~inside), f"image {i} has drawn pixels outside its boxes"


def test_single_object_box_is_tight():
    data = generate_shapes(10, min_objects=1, max_objects=1, noise=0.0, seed=2)
    for i in range(10):
        image = data["x"][i]
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        drawn = np.any(np.abs(image - colours[np.argmax(counts)]) > 1e-6, axis=-1)
        ys, xs = np.nonzero(drawn)
        expected = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / 64
        np.testing.assert_allclose(data["boxes"][i, 0], expected, atol=1e-6)


def test_shapes_config_errors():
    with pytest.raises(ConfigError, match="min_objects"):
        make_shapes_source({"num_samples": 2, "min_objects": 3, "max_objects": 2})
    with pytest.raises(ConfigError, match="min_size"):
        make_shapes_source({"num_samples": 2, "min_size": 0.5, "max_size": 0.2})


def test_validate_boxes_names_example_and_box():
    boxes = np.zeros((3, 2, 4), np.float32)
    boxes[:, 0] = [0.1, 0.1, 0.5, 0.5]
    mask = np.array([[1, 0], [1, 1], [1, 0]], np.float32)
    boxes[1, 1] = [0.5, 0.2, 0.4, 0.6]  # x_max < x_min
    with pytest.raises(ConfigError, match=r"example 1, box 1.*non-positive width"):
        validate_boxes(boxes, mask, (32, 32, 3))
    boxes[1, 1] = [0.5, 0.2, 1.2, 0.6]
    with pytest.raises(ConfigError, match=r"example 1, box 1.*outside the 32x32 image"):
        validate_boxes(boxes, mask, (32, 32, 3))
    boxes[1, 1] = [0.5, 0.2, 0.9, 0.6]
    boxes[2, 1] = [5.0, 5.0, 5.0, 5.0]  # padding: not checked
    validate_boxes(boxes, mask, (32, 32, 3))
    pixels = boxes * 32
    pixels[2, 0] = [-1.0, 0.0, 10.0, 10.0]
    with pytest.raises(ConfigError, match=r"example 2, box 0"):
        validate_boxes(pixels, mask, (32, 32, 3), normalized=False)


def test_load_detection_npz(tmp_path):
    x = np.zeros((2, 16, 20, 3), np.uint8)
    boxes = np.array([[[2, 4, 10, 12], [0, 0, 0, 0]], [[0, 0, 20, 16], [5, 5, 6, 6]]], np.float32)
    labels = np.array([[1, -1], [0, 2]], np.int64)
    path = tmp_path / "det.npz"
    np.savez(path, x=x, boxes=boxes, labels=labels)
    src = load_detection_npz(str(path), {"box_units": "pixels"})
    assert src.kind == "detection" and src.num_classes == 3
    np.testing.assert_allclose(src.extra["boxes"][0, 0], [0.1, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(src.extra["box_mask"], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(src.y, [[1, -1], [0, 2]])
    boxes[1, 1] = [5, 5, 25, 6]
    np.savez(path, x=x, boxes=boxes, labels=labels)
    with pytest.raises(ConfigError, match=r"example 1, box 1.*outside the 16x20 image"):
        load_detection_npz(str(path), {"box_units": "pixels"})
    np.savez(path, x=x, boxes=boxes)
    with pytest.raises(ConfigError, match="lacks arrays"):
        load_detection_npz(str(path), None)
    with pytest.raises(ConfigError, match="not found"):
        load_detection_npz(str(tmp_path / "missing.npz"), None)
