"""Gradient accumulation (`grad_accum_steps`): K microbatches in the step, one update."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_resume_is_exact, load_config
from dl.errors import ConfigError
from dl.train import build


def _one_step(config, batch):
    exp = build(config)
    state = exp.init_state()
    new_state, metrics = jax.jit(exp.steps.train_step)(state, batch)
    return exp, state, new_state, metrics


def _first_batch(exp, n):
    return {k: jnp.asarray(v[:n]) for k, v in exp.dataset.splits["train"].items()}


def test_k_microbatches_of_b_equal_one_step_on_the_batch_of_k_times_b():
    c = load_config("mlp_digits")
    c.model.dropout_rate, c.batch_size = 0.0, 64
    batch = _first_batch(build(c), 64)
    _, state, whole, m1 = _one_step(c, batch)
    c.grad_accum_steps = 4
    _, state4, accumulated, m4 = _one_step(c, batch)
    for a, b in zip(
        jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state4), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # the same start
    assert float(m4["loss"]) == pytest.approx(float(m1["loss"]), abs=1e-6)
    assert float(m4["grad_norm"]) == pytest.approx(float(m1["grad_norm"]), rel=1e-6)
    for k in m1["sums"]:  # every example counted once
        np.testing.assert_allclose(m4["sums"][k], m1["sums"][k], rtol=1e-6)
    moved = 0.0
    for a, b, before in zip(
        jax.tree_util.tree_leaves(whole.params),
        jax.tree_util.tree_leaves(accumulated.params),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
        moved = max(moved, float(np.max(np.abs(np.asarray(a) - np.asarray(before)))))
    assert moved > 1e-4  # the update is far larger than the tolerance
    assert int(accumulated.step) == 1


class _NormedMLP(nn.Module):
    """Dense, batch norm, ReLU, dense: the smallest model with batch statistics."""

    num_outputs: int = 10

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Dense(16)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
        return nn.Dense(self.num_outputs)(nn.relu(x))


def test_batch_norm_statistics_follow_the_microbatches_in_order():
    # dl's convention: each microbatch normalizes with its own statistics and
    # updates the running averages, one microbatch after the other, as K
    # steps of the model would (PyTorch's and Lightning's accumulation).
    c = load_config("mlp_digits")
    c.model = {"name": "mlp"}  # the fields of the module handed in: none
    c.batch_size, c.grad_accum_steps = 32, 2
    exp = build(c, model=_NormedMLP)
    batch = _first_batch(exp, 32)
    state = exp.init_state()
    new_state, _ = jax.jit(exp.steps.train_step)(state, batch)
    model_state = state.model_state
    for i in range(2):
        micro = {k: v[i::2] for k, v in batch.items()}
        _, model_state = exp.model.apply(
            {"params": state.params, **model_state},
            micro["x"],
            train=True,
            mutable=list(model_state),
        )
    for a, b in zip(
        jax.tree_util.tree_leaves(new_state.model_state),
        jax.tree_util.tree_leaves(model_state),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    once = exp.model.apply(
        {"params": state.params, **state.model_state},
        batch["x"],
        train=True,
        mutable=["batch_stats"],
    )[1]
    differs = [
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(once), jax.tree_util.tree_leaves(model_state), strict=True
        )
    ]
    assert any(differs)  # not the statistics of the whole batch at once


def test_a_run_with_microbatches_and_dropout_resumes_exactly(tmp_path):
    c = load_config("mlp_digits")  # dropout on: each microbatch draws its own masks
    c.grad_accum_steps = 2
    c.schedule.name = "constant"  # the same rates whatever num_train_steps says
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
    c.num_train_steps = 30
    assert_resume_is_exact(c, tmp_path, stop=10)


@pytest.mark.parametrize(
    "value,message",
    [
        (0, r"grad_accum_steps must be .*>= 1"),
        (3, r"batch_size=64 must be a multiple of grad_accum_steps=3"),
    ],
)
def test_bad_grad_accum_steps_are_refused_before_anything_is_built(value, message):
    c = load_config("mlp_digits")
    c.grad_accum_steps = value
    with pytest.raises(ConfigError, match=message):
        build(c)
