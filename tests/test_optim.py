"""Optimizers and schedules built from configs."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dl.errors import ConfigError
from dl.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule


def config(opt="sgd", lr=0.1, schedule="constant", steps=100, clip=0.0, wd=0.0, **sched):
    return ml_collections.ConfigDict(
        dict(
            optimizer=dict(name=opt, learning_rate=lr, momentum=0.9, weight_decay=wd),
            schedule=dict(name=schedule, **sched),
            grad_clip_norm=clip,
            num_train_steps=steps,
        )
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_minimises_a_quadratic(name):
    tx, _ = make_optimizer(config(name, lr=0.05))
    params = {"w": jnp.array([3.0, -2.0])}
    state = tx.init(params)
    loss = lambda p: jnp.sum(p["w"] ** 2)
    for _ in range(200):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * 13.0


def test_momentum_builds_inertia_compared_to_plain_gradient_descent():
    # On f(w) = w^2 / 2 from w = 1, one step of GD gives 1 - lr; with momentum 0.9
    # the second step is larger than the first: v2 = 0.9 v1 + g2.
    tx, _ = make_optimizer(config("momentum", lr=0.1))
    p = {"w": jnp.array(1.0)}
    s = tx.init(p)
    steps = []
    for _ in range(2):
        u, s = tx.update({"w": p["w"]}, s, p)
        p = optax.apply_updates(p, u)
        steps.append(float(u["w"]))
    assert steps[0] == pytest.approx(-0.1)
    assert steps[1] == pytest.approx(-0.1 * (0.9 * 1.0 + 0.9))


def test_step_schedule_boundaries_as_fractions_and_steps():
    s = make_schedule(
        config(lr=1.0, schedule="step", steps=100, boundaries=(0.5, 80), decay_factor=0.1)
    )
    assert float(s(49)) == pytest.approx(1.0)
    assert float(s(50)) == pytest.approx(0.1)
    assert float(s(80)) == pytest.approx(0.01)


def test_warmup_cosine_peaks_after_warmup_and_decays_to_end_value():
    s = make_schedule(config(lr=2.0, schedule="warmup_cosine", steps=100, warmup_steps=10))
    assert float(s(0)) == pytest.approx(0.0)
    assert float(s(10)) == pytest.approx(2.0)
    assert float(s(100)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_exponential_and_one_cycle_shapes():
    cos = make_schedule(config(lr=1.0, schedule="cosine", steps=100))
    assert float(cos(50)) == pytest.approx(0.5, abs=1e-6)
    exp = make_schedule(config(lr=1.0, schedule="exponential", transition_steps=10, decay_rate=0.5))
    assert float(exp(20)) == pytest.approx(0.25)
    one = make_schedule(config(lr=1.0, schedule="one_cycle", steps=100, pct_start=0.3))
    values = np.array([float(one(t)) for t in range(101)])
    assert values.argmax() == 30 and values[30] == pytest.approx(1.0)
    assert values[0] < 0.1 and values[-1] < 1e-3


def test_all_schedules_are_buildable():
    for name in SCHEDULES:
        assert np.isfinite(float(make_schedule(config(schedule=name))(5)))


def test_gradient_clipping_bounds_the_update():
    tx, _ = make_optimizer(config("sgd", lr=1.0, clip=1.0))
    p = {"w": jnp.zeros(4)}
    u, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(p), p)
    assert float(optax.tree.norm(u)) == pytest.approx(1.0, rel=1e-5)


def test_weight_decay_skips_biases():
    tx, _ = make_optimizer(config("sgd", lr=1.0, wd=0.1))
    p = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    u, _ = tx.update(zeros, tx.init(p), p)
    np.testing.assert_allclose(u["kernel"], -0.1)
    np.testing.assert_allclose(u["bias"], 0.0)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown optimizer 'adagrad'.*adam, adamw, momentum"):
        make_optimizer(config("adagrad"))
    with pytest.raises(ConfigError, match="unknown schedule 'linear'.*constant, cosine"):
        make_optimizer(config(schedule="linear"))
    with pytest.raises(ConfigError, match="learning_rate must be a finite number > 0, got 0.0"):
        make_optimizer(config(lr=0.0))


def test_a_warmup_longer_than_the_run_is_a_config_error_naming_the_fields():
    c = config(schedule="warmup_cosine", steps=60, warmup_steps=100)
    with pytest.raises(ConfigError, match="warmup_cosine.*warmup_steps=100.*num_train_steps=60"):
        make_schedule(c)
