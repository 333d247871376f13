"""float16 training with dynamic loss scaling (`dtype="float16"`, `loss_scale.*`)."""

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import (
    assert_resume_is_exact,
    config_path,
    load_config,
    metric_events,
    run_binary,
    train_digits_beside_float32,
)
from dl.models.mlp import MLP
from dl.train import Checkpoints, StepConfig, TrainState, build, train
from dl.train.loss_scale import LossScale, LossScaling
from dl.train.step import _finish_step


def _digits(steps):
    c = load_config("mlp_digits")
    c.num_train_steps, c.dtype = steps, "float16"
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = min(steps, 500)
    return c


def test_the_scale_halves_on_overflow_and_doubles_after_the_interval():
    scaling = LossScaling(initial=8.0, growth_interval=3, factor=2.0)
    ls = LossScale.create(8.0)
    ls = scaling.adjust(ls, jnp.array(True))
    assert float(ls.scale) == 4.0 and int(ls.good_steps) == 0
    for _ in range(2):
        ls = scaling.adjust(ls, jnp.array(False))
    assert float(ls.scale) == 4.0 and int(ls.good_steps) == 2
    ls = scaling.adjust(ls, jnp.array(False))
    assert float(ls.scale) == 8.0 and int(ls.good_steps) == 0
    one = scaling.adjust(LossScale.create(1.0), jnp.array(True))
    assert float(one.scale) == 1.0  # never below 1


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_an_overflow_is_no_failure_but_a_non_finite_gradient_at_scale_1_is(policy):
    """Above the floor a finite loss with an inf gradient lowers the scale; at 1 the
    gradient itself is non-finite and goes to the non-finite guard."""
    cfg = StepConfig(nonfinite_policy=policy, loss_scaling=LossScaling(growth_interval=5))
    tx = optax.sgd(0.1)
    params = {"w": jnp.ones(3)}
    inf = {"w": jnp.array([1.0, jnp.inf, 0.0])}

    def one(scale):
        state = TrainState.create(params, {}, tx, jax.random.PRNGKey(0))
        state = state.replace(loss_scale=LossScale.create(scale))
        finish = functools.partial(_finish_step, tx=tx, schedule=lambda s: 0.1, cfg=cfg)
        return finish(state, jnp.float32(0.5), inf, {}, {})

    state, metrics = one(4.0)
    assert bool(metrics["finite"]) and bool(metrics["overflow"])
    assert float(metrics["loss_scale"]) == 2.0 and float(state.loss_scale.scale) == 2.0
    assert int(state.step) == 1 and int(state.skipped) == 0 and int(state.halted) == 0
    np.testing.assert_array_equal(np.asarray(state.params["w"]), np.ones(3))
    state, metrics = one(1.0)
    assert not bool(metrics["finite"]) and not bool(metrics["overflow"])
    assert float(state.loss_scale.scale) == 1.0 and int(state.skipped) == 1
    assert int(state.halted) == (policy == "stop")
    np.testing.assert_array_equal(np.asarray(state.params["w"]), np.ones(3))


def test_the_run_is_float16_when_the_model_built_computes_in_float16():
    c = load_config("mlp_xor")
    assert build(c).steps.cfg.loss_scaling is None
    assert build(c).init_state().loss_scale is None
    c.model.dtype = "float16"  # the model's own field
    assert build(c).steps.cfg.loss_scaling == LossScaling()
    del c.model["dtype"]
    instance = MLP(hidden_sizes=(4,), num_outputs=1, dtype=jnp.float16)
    exp = build(c, model=instance)  # an instance handed in: its own dtype
    assert exp.steps.cfg.loss_scaling is not None
    assert float(exp.init_state().loss_scale.scale) == 2.0**15


@pytest.mark.slow
def test_float16_training_stays_as_close_to_float32_as_bfloat16_does(tmp_path):
    # The tolerance tests/test_fast_paths.py gives bfloat16, from one place.
    state = train_digits_beside_float32(tmp_path, "float16")
    assert state.loss_scale is not None and float(state.loss_scale.scale) >= 1.0


def test_overflowing_steps_lower_the_scale_take_no_update_and_are_no_failure(tmp_path):
    c = _digits(40)
    c.loss_scale.initial = 2.0**24  # float16 overflows at 65504: the first steps overflow
    c.loss_scale.growth_interval = 10
    c.nonfinite.policy = "stop"
    c.log_every_steps = 10
    start = build(c).init_state()
    summary = train(c, str(tmp_path), stream=io.StringIO())
    assert summary["step"] == 40 and "stopped" not in summary
    state = Checkpoints(str(tmp_path), read_only=True).restore(build(c).abstract_state())[0]
    assert int(state.halted) == 0 and int(state.skipped) == 0
    events = metric_events(tmp_path, "train")
    overflows = events[0]["overflow_steps"]
    assert overflows >= 1 and events[0]["loss_scale"] <= 2.0**24 / 2**overflows
    assert np.isfinite(events[0]["grad_norm"])
    assert events[-1]["loss"] < events[0]["loss"]  # then it trains
    # Each overflow halved the scale and each run of 10 good steps doubled it.
    good = 40 - sum(e.get("overflow_steps", 0) for e in events)
    assert float(state.loss_scale.scale) <= 2.0**24 / 2**overflows * 2 ** (good // 10)
    # No update on an overflowing step: one overflowing step leaves the parameters.
    c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 1
    train(c, str(tmp_path / "one"), stream=io.StringIO())
    one = Checkpoints(str(tmp_path / "one"), read_only=True).restore(build(c).abstract_state())[0]
    assert int(one.step) == 1 and float(one.loss_scale.scale) == 2.0**23
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(one.params), leaves(start.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_non_finite_loss_still_stops_a_float16_run(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={tmp_path}",
        "--config.dtype=float16",
        "--config.optimizer.learning_rate=1e12",
        "--config.num_train_steps=50",
        "--config.log_every_steps=10",
    )
    assert proc.returncode == 3, proc.stderr  # EXIT_NONFINITE


def test_a_float16_run_resumes_exactly_with_its_scale(tmp_path):
    c = _digits(30)
    c.schedule.name = "constant"
    c.loss_scale.growth_interval = 4  # the scale changes across the resume
    c.loss_scale.initial = 2.0**20
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
    assert_resume_is_exact(c, tmp_path, stop=10)


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--config.loss_scale.initial=0.5", "loss_scale.initial"),
        ("--config.loss_scale.growth_interval=0", "loss_scale.growth_interval"),
        ("--config.loss_scale.factor=1.0", "loss_scale.factor"),
    ],
)
def test_bad_loss_scale_fields_exit_2_naming_them(tmp_path, flag, message):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={tmp_path}",
        "--config.dtype=float16",
        flag,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
