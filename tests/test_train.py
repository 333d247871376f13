"""The training loop, end to end in-process: experiments, resume, errors."""

import io
import json
import os

import jax
import numpy as np
import pytest

from conftest import load_config
from dl.data import TrainOrder
from dl.errors import ConfigError
from dl.train import Checkpoints, NonFiniteError, build, train


def quiet_train(config, workdir):
    return train(config, str(workdir), stream=io.StringIO())


def restore(config, workdir, which="latest"):
    exp = build(config)
    state, meta, step = Checkpoints(str(workdir), read_only=True).restore(
        exp.abstract_state(), which
    )
    return state, meta, step


def tree_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def test_mlp_xor_reaches_100_percent(tmp_path):
    summary = quiet_train(load_config("mlp_xor"), tmp_path)
    assert summary["train"]["accuracy"] == 1.0
    assert summary["converged"] is True


def test_perceptron_learns_and_and_or(tmp_path):
    for gate in ("and", "or"):
        c = load_config("perceptron_and")
        c.dataset.name = gate
        summary = quiet_train(c, tmp_path / gate)
        assert summary["converged"] is True and summary["train"]["accuracy"] == 1.0


def test_perceptron_reports_that_it_cannot_learn_xor(tmp_path):
    summary = quiet_train(load_config("perceptron_xor"), tmp_path)
    assert summary["converged"] is False
    assert summary["train"]["accuracy"] <= 0.75
    assert "did not converge" in summary["message"]


def test_perceptron_training_is_rosenblatts_rule(tmp_path):
    """The loop's updates equal the classic rule applied in the loop's example order."""
    c = load_config("perceptron_and")
    c.target_metric, c.num_train_steps = "", 12
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 12
    quiet_train(c, tmp_path)
    state, _, _ = restore(c, tmp_path)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.array([0, 0, 0, 1], np.float64)
    w, b = np.zeros(2), 0.0
    for i in TrainOrder(4, 1, int(c.seed)).indices(0, 12).ravel():
        predicted = 1.0 if x[i] @ w + b >= 0 else 0.0
        w, b = w + (y[i] - predicted) * x[i], b + (y[i] - predicted)
    np.testing.assert_allclose(np.asarray(state.params["unit"]["kernel"])[:, 0], w)
    assert float(state.params["unit"]["bias"][0]) == pytest.approx(b)


def test_logistic_and_linear_regression_experiments(tmp_path):
    summary = quiet_train(load_config("logistic_breast_cancer"), tmp_path / "logistic")
    assert summary["test"]["accuracy"] > 0.93
    summary = quiet_train(load_config("linear_diabetes"), tmp_path / "linear")
    # A least-squares fit of the ten standardized features explains about half of
    # the variance of the target (std about 77), so the MSE is far below the variance.
    assert summary["test"]["mse"] < 0.7 * 77.0**2


def test_metrics_file_and_checkpoint_retention(tmp_path):
    c = load_config("mlp_digits")
    c.num_train_steps, c.log_every_steps, c.eval_every_steps = 300, 50, 100
    c.checkpoint_every_steps, c.keep_checkpoints = 50, 2
    quiet_train(c, tmp_path)
    with open(tmp_path / "metrics.jsonl") as f:
        events = [json.loads(line) for line in f]
    train_events = [e for e in events if e["split"] == "train"]
    assert [e["step"] for e in train_events] == [50, 100, 150, 200, 250, 300]
    for key in ("loss", "accuracy", "learning_rate", "grad_norm", "steps_per_second"):
        assert key in train_events[0]
    assert [e["step"] for e in events if e["split"] == "validation"] == [100, 200, 300]
    ckpts = Checkpoints(str(tmp_path), read_only=True)
    assert ckpts.steps() == [250, 300]
    assert len(ckpts.steps("best")) == 1
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["model"]["name"] == "mlp"


def test_resume_is_exact(tmp_path):
    c = load_config("mlp_digits")
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 40
    c.schedule.name = "constant"  # cosine's length follows num_train_steps, changed below
    c.num_train_steps = 120
    quiet_train(c, tmp_path / "straight")
    c.num_train_steps = 40
    quiet_train(c, tmp_path / "resumed")
    c.num_train_steps = 120
    quiet_train(c, tmp_path / "resumed")
    a, _, _ = restore(c, tmp_path / "straight")
    b, _, _ = restore(c, tmp_path / "resumed")
    assert int(a.step) == int(b.step) == 120
    assert tree_equal(a, b)


def test_nonfinite_loss_stops_with_the_step_and_keeps_only_finite_checkpoints(tmp_path):
    c = load_config("linear_diabetes")
    c.optimizer.name, c.optimizer.learning_rate = "sgd", 1e18
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 1
    c.num_train_steps = 50
    with pytest.raises(NonFiniteError, match=r"non-finite values at training step \d+") as e:
        quiet_train(c, tmp_path)
    assert str(e.value).endswith(
        "Lower optimizer.learning_rate, set grad_clip_norm, or set nonfinite.policy='skip'."
    )
    exp = build(c)
    ckpts = Checkpoints(str(tmp_path), read_only=True)
    assert ckpts.steps(), "the steps before the failure were checkpointed"
    for step in ckpts.steps():
        state, _, _ = ckpts.restore(exp.abstract_state(), step)
        for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state)):
            assert np.all(np.isfinite(np.asarray(leaf)))


def test_skip_policy_counts_skipped_steps(tmp_path):
    c = load_config("linear_diabetes")
    c.optimizer.name, c.optimizer.learning_rate = "sgd", 1e18
    c.nonfinite.policy, c.nonfinite.max_consecutive_skips = "skip", 3
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
    c.num_train_steps = 50
    with pytest.raises(NonFiniteError, match="consecutive") as e:
        quiet_train(c, tmp_path)
    # The advice fits the policy: skipping is on already.
    assert "nonfinite.policy='skip'" not in str(e.value)
    assert str(e.value).endswith(
        "Lower optimizer.learning_rate, set grad_clip_norm, or raise "
        "nonfinite.max_consecutive_skips (now 3)."
    )


def test_changed_config_on_resume_is_refused(tmp_path):
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps = c.checkpoint_every_steps = 50
    quiet_train(c, tmp_path)
    c.model.hidden_sizes = (8,)
    with pytest.raises(ConfigError, match=r"model.hidden_sizes: \[4\] -> \[8\]"):
        quiet_train(c, tmp_path)
    c.model.hidden_sizes = (4,)
    c.num_train_steps = 100  # extending a run is allowed
    assert quiet_train(c, tmp_path)["step"] == 100


def test_checkpoint_from_before_a_new_shared_field_resumes_with_its_default(tmp_path):
    # A run written before config.dtype and the dataset's file fields existed,
    # and when a task was a bare name, resumes with today's config.
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps = c.checkpoint_every_steps = 50
    with c.unlocked():
        del c["dtype"]
        for field in ("kind", "label_column", "image_size", "channels", "box_units"):
            del c.dataset[field]
        del c["task"]
        c.task = "binary_classification"
    quiet_train(c, tmp_path)
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["task"] == "binary_classification"
    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps, c.checkpoint_every_steps, c.dtype = 100, 50, "bfloat16"
    with pytest.raises(ConfigError, match=r"dtype: 'float32' -> 'bfloat16'"):
        quiet_train(c, tmp_path)
    c.dtype = "float32"
    assert quiet_train(c, tmp_path)["step"] == 100


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("dtype", "bfloat8", "unknown dtype 'bfloat8'; known dtypes: bfloat16, float16, float32"),
        ("model.name", "transformer", "unknown model 'transformer'; known models: alexnet"),
        ("dataset.name", "mnist", "unknown dataset 'mnist'"),
        ("task.name", "ranking", "unknown task 'ranking'"),
        ("optimizer.name", "adagrad", "unknown optimizer 'adagrad'"),
        ("schedule.name", "linear", "unknown schedule 'linear'"),
        ("model.num_outputs", 5, "model.num_outputs is 5, but the task needs 10"),
        ("model.activation", "swish", "unknown activation 'swish'"),
        ("best_metric", "f1", "has no metric 'f1'"),
        ("steps_per_call", 7, "must be a multiple of steps_per_call=7"),
        ("eval_batch_size", 0, "eval_batch_size must be >= 1, got 0"),
        ("augment.crop_padding", -1, "augment.crop_padding must be >= 0"),
    ],
)
def test_bad_config_values_get_clear_errors(tmp_path, field, value, message):
    c = load_config("mlp_digits")
    c.num_train_steps = 10
    with c.unlocked():
        section, _, key = field.rpartition(".")
        (c[section] if section else c)[key] = value
    with pytest.raises(ConfigError, match=message):
        quiet_train(c, tmp_path)


def test_unknown_model_field_is_named(tmp_path):
    c = load_config("mlp_digits")
    with c.unlocked():
        c.model.hiden_sizes = (3,)
    with pytest.raises(ConfigError, match="model 'mlp' has no field.*hiden_sizes.*hidden_sizes"):
        build(c)


def test_task_fields_are_validated_like_model_fields():
    c = load_config("mlp_digits")
    with c.unlocked():
        c.task.label_smoothing = 0.1
    with pytest.raises(ConfigError, match="task 'classification' has no field.*label_smoothing"):
        build(c)


def test_detection_options_reach_the_task_from_the_config():
    c = load_config("yolo_shapes")
    c.dataset.num_samples = 40
    assert set(c.task) >= {"name", "lambda_coord", "lambda_noobj", "nms_iou_threshold"}
    c.task.lambda_noobj, c.task.max_detections = 0.25, 7
    task = build(c).task
    assert (task.lambda_noobj, task.max_detections) == (0.25, 7)
    with c.unlocked():
        c.task.lamda_coord = 1.0
    with pytest.raises(ConfigError, match="no field.*lamda_coord; its fields are: .*lambda_coord"):
        build(c)


def test_data_that_does_not_fit_the_model_fails_before_compiling(tmp_path):
    c = load_config("mlp_digits")
    c.dataset.name = "iris"  # [examples, 4]: no image axes for a CNN
    c.model = {"name": "cnn"}
    with pytest.raises(ConfigError, match=r"per-example shapes \{'x': \(4,\).*expected"):
        build(c)


def test_jit_and_eager_train_steps_agree():
    c = load_config("mlp_digits")
    exp = build(c)
    state = exp.init_state()
    batch = {k: v[:8] for k, v in exp.dataset.splits["train"].items()}
    jitted, m1 = jax.jit(exp.steps.train_step)(state, batch)
    with jax.disable_jit():
        eager, m2 = exp.steps.train_step(state, batch)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jitted.params,
        eager.params,
    )


def test_evaluate_matches_the_summary(tmp_path):
    from dl.train.evaluation import evaluate

    c = load_config("logistic_breast_cancer")
    c.num_train_steps = c.checkpoint_every_steps = c.eval_every_steps = 200
    summary = quiet_train(c, tmp_path)
    result = evaluate(str(tmp_path), "latest", "test")
    assert result["step"] == 200
    assert result["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert os.path.exists(tmp_path / "eval_test.json")
