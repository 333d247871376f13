"""Data parallelism on CPU devices: the same losses on 1, 2 and 8 devices."""

import json

import numpy as np
import pytest

from conftest import DEVICE_RUN_ARGS, config_path, devices_env, run_binary, train_losses

ARGS = DEVICE_RUN_ARGS


def losses_on(workdir, n: int) -> list[float]:
    """Trains the short digits run on n CPU devices; its logged training losses."""
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={workdir}",
        *ARGS,
        env=devices_env(n),
    )
    assert proc.returncode == 0, proc.stderr
    return train_losses(workdir)


@pytest.mark.slow
def test_one_two_and_eight_devices_give_the_same_losses_and_checkpoints(tmp_path):
    losses = {n: losses_on(tmp_path / f"d{n}", n) for n in (1, 2, 8)}
    assert len(losses[1]) == 24
    np.testing.assert_allclose(losses[2], losses[1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(losses[8], losses[1], atol=1e-5, rtol=0)

    results = {}
    for n in (1, 2, 8):
        proc = run_binary(
            "experiments.evaluate",
            f"--workdir={tmp_path / 'd8'}",
            "--split=validation",
            "--figures=false",
            env=devices_env(n),
        )
        assert proc.returncode == 0, proc.stderr
        results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    for n in (1, 2):
        assert results[n]["accuracy"] == results[8]["accuracy"]
        assert results[n]["loss"] == pytest.approx(results[8]["loss"], abs=1e-6)


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={tmp_path}",
        "--config.batch_size=60",
        env=devices_env(8),
    )
    assert proc.returncode == 2
    assert "batch_size=60 must be a multiple of the 8 devices" in proc.stderr
