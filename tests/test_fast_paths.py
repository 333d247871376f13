"""Fused steps, no recompilation, mixed precision."""

import io

import jax
import numpy as np
import pytest

from conftest import load_config, train_digits_beside_float32
from dl.train import Checkpoints, build, train


def final_state(config, workdir):
    train(config, str(workdir), stream=io.StringIO())
    return Checkpoints(str(workdir), read_only=True).restore(build(config).abstract_state())[0]


def test_fused_steps_equal_single_steps(tmp_path):
    c = load_config("mlp_digits")
    c.num_train_steps, c.log_every_steps, c.eval_every_steps = 48, 8, 24
    c.checkpoint_every_steps = 24
    single = final_state(c, tmp_path / "k1")
    c.steps_per_call = 8
    fused = final_state(c, tmp_path / "k8")
    assert int(single.step) == int(fused.step) == 48
    np.testing.assert_array_equal(single.rng, fused.rng)
    for a, b in zip(
        jax.tree_util.tree_leaves(single.params),
        jax.tree_util.tree_leaves(fused.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def count_compiles(fn):
    events = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


def test_no_recompilation_as_a_run_gets_longer(tmp_path):
    """More steps, evaluations, checkpoints and a partial last eval batch: no more compiles."""
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        c = load_config("mlp_digits")
        c.eval_batch_size = 100  # 269 validation examples: the last batch is partial
        c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
        c.num_train_steps = 20
        # A first run in a fresh process also compiles what any run needs once
        # (initialisation, checkpointing helpers); count from the second.
        train(c, str(tmp_path / "warm-up"), stream=io.StringIO())
        short = count_compiles(lambda: train(c, str(tmp_path / "short"), stream=io.StringIO()))
        c.num_train_steps = 120
        long = count_compiles(lambda: train(c, str(tmp_path / "long"), stream=io.StringIO()))
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
    assert short > 0 and long == short


@pytest.mark.slow
def test_bfloat16_compute_stays_close_to_float32(tmp_path):
    train_digits_beside_float32(tmp_path, "bfloat16")
