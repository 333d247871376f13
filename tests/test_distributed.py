"""jax.distributed: two local processes of two CPU devices each, gloo collectives."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, config_path, load_config, run_binary

ARGS = [
    "--config.num_train_steps=24",
    "--config.log_every_steps=1",
    "--config.eval_every_steps=12",
    "--config.checkpoint_every_steps=12",
    "--config.batch_size=64",
    "--config.model.dropout_rate=0.0",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train_losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [e["loss"] for e in map(json.loads, f) if e["split"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tmp_path):
    single = tmp_path / "single"
    proc = run_binary(
        "experiments.train", f"--config={config_path('mlp_digits')}", f"--workdir={single}", *ARGS
    )
    assert proc.returncode == 0, proc.stderr

    multi = tmp_path / "multi"
    port = free_port()
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.train",
                f"--config={config_path('mlp_digits')}",
                f"--workdir={multi}",
                *ARGS,
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [c.communicate(timeout=300) for c in children]
    finally:
        for c in children:  # one failing process would leave the other waiting
            if c.poll() is None:
                c.kill()
    for c, (_, err) in zip(children, outs, strict=True):
        assert c.returncode == 0, err
    assert "summary " in outs[0][0] and "summary " not in outs[1][0]  # process 0 reports

    np.testing.assert_allclose(train_losses(multi), train_losses(single), atol=1e-5, rtol=0)

    from dl.train import Checkpoints, build

    c = load_config("mlp_digits")
    c.num_train_steps, c.batch_size, c.model.dropout_rate = 24, 64, 0.0
    exp = build(c)
    a, _, step_a = Checkpoints(str(single), read_only=True).restore(exp.abstract_state())
    b, _, step_b = Checkpoints(str(multi), read_only=True).restore(exp.abstract_state())
    assert step_a == step_b == 24
    for x, y in zip(
        jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


def test_distributed_flags_go_together(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_xor')}",
        f"--workdir={tmp_path}",
        "--num_processes=2",
    )
    assert proc.returncode == 2
    assert "--coordinator_address, --num_processes and --process_id go together" in proc.stderr
