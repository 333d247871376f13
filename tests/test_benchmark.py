"""The benchmark binary and the device-side batch indices it times."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import config_path, run_binary
from dl.data import TrainOrder
from dl.train.step import batch_indices


@pytest.mark.parametrize("n,batch,steps", [(10, 4, 1), (10, 4, 3), (7, 7, 2), (4, 1, 8), (5, 3, 4)])
def test_device_batch_indices_equal_the_host_order(n, batch, steps):
    order = TrainOrder(n, batch, seed=3)
    first = None
    for step in range(0, 40, steps):
        moved = order.window(step, steps, first)
        if moved is not None:
            first, perms = moved
        for s in range(step, step + steps):
            got = batch_indices(jnp.int32(s), batch, jnp.asarray(perms), jnp.int32(first))
            np.testing.assert_array_equal(np.asarray(got), order.indices(s)[0])


def test_benchmark_prints_a_row_with_flops_and_compile_time():
    proc = run_binary(
        "experiments.benchmark",
        f"--config={config_path('mlp_xor')}",
        "--repeats=2",
        "--steps_per_block=2",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    row = rows[-1]
    assert row["parameters"] == 2 * 4 + 4 + 4 + 1
    for key in (
        "compile_seconds",
        "step_ms_median",
        "examples_per_second",
        "flops_per_step",
        "device_kind",
    ):
        assert key in row
    assert row["flops_per_step"] > 0


def test_benchmark_suite_compares_with_plain_jax():
    proc = run_binary(
        "experiments.benchmark", "--suite=mlp_digits", "--repeats=2", "--steps_per_block=2"
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["dl_over_plain_jax"] > 0 and row["dl_over_bare_jax"] > 0
