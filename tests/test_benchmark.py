"""The benchmark binary and the device-side batch indices it times."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import config_path, load_config, run_binary
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


def test_benchmark_suite_compares_with_references_and_reports_fused_speedup():
    proc = run_binary(
        "experiments.benchmark",
        "--suite=mlp_digits,mlp_xor_fused",
        "--repeats=2",
        "--steps_per_block=2",
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.strip().splitlines()[1:])}
    row = rows["mlp_digits"]
    assert row["dl_over_plain_jax"] > 0 and row["dl_over_bare_jax"] > 0
    for ref in ("torch_eager", "torch_compile"):  # timed, or skipped with the reason
        assert row.get(f"dl_over_{ref}", 0) > 0 or row[f"{ref}_skipped"]
    assert 0 < row["warm_cache_compile_seconds"] and 0 < row["cold_cache_compile_seconds"]
    fused = rows["mlp_xor_fused"]
    assert fused["steps_per_call"] == 50 and fused["fused_speedup"] > 0


def test_unknown_suite_row_is_named():
    proc = run_binary("experiments.benchmark", "--suite=mlp_digits,resnet9000")
    assert proc.returncode == 2
    assert "unknown suite rows ['resnet9000']; known: mlp_xor_fused" in proc.stderr


def test_misspelt_or_empty_references_are_refused():
    proc = run_binary("experiments.benchmark", "--suite=mlp_digits", "--references=plain_jx")
    assert proc.returncode == 2
    assert "--references got ['plain_jx']; give a comma-separated list of plain_jax" in proc.stderr
    proc = run_binary("experiments.benchmark", "--suite=mlp_digits", "--references=")
    assert proc.returncode == 2
    assert "--references got an empty list" in proc.stderr


def _to_plain(kind, p):
    """dl's parameters of a suite row, in the layout of benchmarks/plain_jax.py."""
    if kind == "mlp":
        return [{"w": p["hidden_0"]["kernel"], "b": p["hidden_0"]["bias"]},
                {"w": p["output"]["kernel"], "b": p["output"]["bias"]}]  # fmt: skip
    if kind == "lenet":
        dense = [p[n] for n in ("dense0", "dense1", "head")]
        return {
            "conv0": {"w": p["conv0"]["kernel"], "b": p["conv0"]["bias"]},
            "conv1": {"w": p["conv1"]["kernel"], "b": p["conv1"]["bias"]},
            "dense": [{"w": d["kernel"], "b": d["bias"]} for d in dense],
        }
    if kind == "lstm":
        cell = p["rnn"]["layers_0"]["cell"]
        return {
            "wx": cell["input"]["kernel"],
            "b": cell["input"]["bias"],
            "wh": cell["hidden"]["kernel"],
            "head": {"w": p["head"]["kernel"], "b": p["head"]["bias"]},
        }
    g = p["graph_layers"]["gcn_0"]
    return [{"w": g["linear"]["kernel"], "b": g["bias"]},
            {"w": p["output"]["linear"]["kernel"], "b": p["output"]["bias"]}]  # fmt: skip


@pytest.mark.parametrize(
    "row", ["mlp_digits", "lenet5_28x28_batch128", "lstm_len32_hidden128_batch64", "gcn_cora_sized"]
)
def test_plain_jax_references_compute_dls_step(row):
    """A ratio to a reference means something only if both compute the same step."""
    import jax
    import optax

    from benchmarks import plain_jax
    from dl.train import build
    from experiments import benchmark

    spec = benchmark.SUITE[row]
    config = benchmark._override(load_config(spec.config), spec.overrides)
    with config.unlocked():
        config.dataset.num_samples = min(config.dataset.get("num_samples", 512) or 512, 512)
    exp = build(config)
    state = exp.init_state()
    order = TrainOrder(exp.dataset.size("train"), int(config.batch_size), 0)
    batch = benchmark._host_batches(exp, order, 1)[0]
    fields = ("x", "y", "senders", "receivers", "label_mask")
    plain_batch = {k: jnp.asarray(v) for k, v in batch.items() if k in fields}
    params = jax.tree.map(jnp.array, _to_plain(spec.model, state.params))  # copies: donated
    tx = optax.adam(float(config.optimizer.learning_rate))
    _, _, plain = plain_jax.make_step(spec.model, tx)(params, tx.init(params), plain_batch)
    _, dl_metrics = exp.steps.train_many(
        state,
        {k: jnp.asarray(v) for k, v in batch.items()},
        jnp.arange(int(config.batch_size), dtype=jnp.int32)[None],
        jnp.int32(0),
        steps=1,
        batch_size=int(config.batch_size),
    )
    dl_metrics = jax.tree.map(np.asarray, dl_metrics)
    np.testing.assert_allclose(plain["loss"], dl_metrics["loss"].reshape(-1)[0], rtol=2e-5)
    np.testing.assert_allclose(
        plain["grad_norm"], dl_metrics["grad_norm"].reshape(-1)[0], rtol=2e-4
    )
