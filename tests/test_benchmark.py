"""The benchmark binary and the device-side batch indices it times."""

import importlib.util
import json
import sys

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


# The 2-4-1 XOR MLP at batch 4: forward x W1 (2*4*2*4) and h W2 (2*4*4*1); backward
# h^T dy (2*4*4*1), dy W2^T (2*4*1*4) and x^T dh (2*2*4*4); the inputs get no gradient.
XOR_STEP_PRODUCT_FLOPS = 64 + 32 + 32 + 32 + 64


def test_product_flops_count_loops_in_full():
    import jax
    from jax import lax

    from dl.tools.benchmark import product_flops

    w, h0 = jnp.ones((8, 16)), jnp.ones((3, 8))

    def rnn(w, xs):  # 5 steps of [3, 8] x [8, 16]
        return lax.scan(lambda h, x: (jnp.tanh(h @ w[:, :8] + x), None), h0, xs)[0]

    xs = jnp.ones((5, 3, 8))
    assert product_flops(jax.make_jaxpr(rnn)(w, xs)) == (5 * 2 * 3 * 8 * 8, True)
    branches = jax.make_jaxpr(lambda p, a: lax.cond(p, lambda: a @ a @ a, lambda: a @ a))
    assert product_flops(branches(True, jnp.ones((4, 4)))) == (2 * 2 * 4 * 4 * 4, True)
    loop = jax.make_jaxpr(
        lambda a, n: lax.while_loop(lambda c: c[1] < n, lambda c: (c[0] @ a, c[1] + 1), (a, 0))
    )
    assert product_flops(loop(jnp.ones((4, 4)), 3)) == (2 * 4 * 4 * 4, False)  # body once
    conv = jax.make_jaxpr(
        lambda x, k: lax.conv_general_dilated(
            x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
        )
    )
    # Output [2, 4, 4, 6]; each value sums a 3x3 window of 4 / 2 input features.
    assert product_flops(conv(jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 2, 6))))[0] == (
        2 * (2 * 4 * 4 * 6) * (3 * 3 * 2)
    )


def test_matmul_peak_is_the_best_of_the_measured_products(monkeypatch):
    from dl.tools.peaks import matmul_peaks

    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    peaks = matmul_peaks(n=256, dtype="float32", repeats=3)
    assert peaks.torch is None and peaks.torch_skipped == "PyTorch is not installed"
    found = peaks.candidates()
    assert set(found) == {"xla_matmul", "numpy_matmul"} and min(found.values()) > 0
    assert peaks.best == max(found.values()) and all(peaks.best >= v for v in found.values())
    assert found[peaks.source] == peaks.best
    # Back to what sys.modules held (the torch module already imported, if any):
    # deleting the entry would make the next import run torch's __init__ twice.
    monkeypatch.undo()
    bf16 = matmul_peaks(n=256, dtype=jnp.bfloat16, repeats=2)
    assert bf16.dtype == "bfloat16" and bf16.numpy_dtype == "float32"
    assert bf16.best == max(bf16.candidates().values())
    if importlib.util.find_spec("torch") is not None:
        assert bf16.torch and bf16.torch_skipped is None
    alone = matmul_peaks(n=256, repeats=2, host=False)  # an accelerator's: XLA's alone
    assert alone.candidates() == {"xla_matmul": alone.xla} and alone.source == "xla_matmul"


def _cpuinfo(model, flags, cores, *, vendor="GenuineIntel", family=6, number=85, mhz=None,
             threads=1):  # fmt: skip
    """/proc/cpuinfo's text for `cores` cores of `threads` hyperthreads each."""
    blocks = []
    for i in range(cores * threads):
        lines = [f"processor\t: {i}", f"vendor_id\t: {vendor}", f"cpu family\t: {family}",
                 f"model\t\t: {number}", f"model name\t: {model}"]  # fmt: skip
        if mhz is not None:
            lines.append(f"cpu MHz\t\t: {mhz}")
        lines += ["physical id\t: 0", f"core id\t\t: {i % cores}", f"flags\t\t: {flags}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


_BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2"


def test_theoretical_cpu_peak_from_cpuinfo():
    from dl.tools.peaks import cpu_peak_from_cpuinfo

    # Xeon Gold, AVX-512 with two FMA units: 16 lanes x 2 x 2 = 64 FLOPs a cycle; 2 cores
    # of 2 hyperthreads at the 3.00 GHz of the name (not cpu MHz): 2 x 3.0 x 64 = 384 G.
    gold = _cpuinfo("Intel(R) Xeon(R) Gold 6154 CPU @ 3.00GHz", f"{_BASE} avx avx2 fma avx512f",
                    2, mhz="3691.552", threads=2)  # fmt: skip
    peak = cpu_peak_from_cpuinfo(gold)
    assert (peak.cores, peak.clock_ghz, peak.clock_source) == (2, 3.0, "model name")
    assert peak.fp32_flops_per_cycle == 64 and peak.peak_flops == pytest.approx(384e9)
    assert peak.peak_flops_for("bfloat16") == peak.peak_flops and peak.low_precision_flags == ()
    assert peak.peak_flops_for("float64") == pytest.approx(192e9)
    # Processors 0 and 2 are the two threads of core 0: one core, 192 G.
    assert cpu_peak_from_cpuinfo(gold, cpus={0, 2}).peak_flops == pytest.approx(192e9)
    # Skylake-SP Silver: one AVX-512 FMA unit, 32 FLOPs a cycle: 4 x 2.2 x 32 = 281.6 G.
    silver = _cpuinfo("Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", f"{_BASE} avx2 fma avx512f", 4)
    assert cpu_peak_from_cpuinfo(silver).peak_flops == pytest.approx(281.6e9)

    # EPYC 7742 (Zen 2): AVX2, two 256-bit FMA pipes, 8 x 2 x 2 = 32; no clock in the
    # name, so cpu MHz: 4 x 2.25 x 32 = 288 G; cpufreq's base clock comes first.
    zen2 = _cpuinfo("AMD EPYC 7742 64-Core Processor", f"{_BASE} avx avx2 fma", 4,
                    vendor="AuthenticAMD", family=23, number=49, mhz="2250.000")  # fmt: skip
    peak = cpu_peak_from_cpuinfo(zen2, max_khz=3400000)
    assert (peak.clock_source, peak.fp32_flops_per_cycle) == ("cpu MHz", 32)
    assert peak.peak_flops == pytest.approx(288e9)
    peak = cpu_peak_from_cpuinfo(zen2, base_khz=2000000)
    assert peak.clock_source == "cpufreq base_frequency"
    assert peak.peak_flops == pytest.approx(256e9)  # 4 x 2.0 x 32
    # Zen 4 runs AVX-512 as two 256-bit halves (32); Zen 5's 512-bit datapath gives 64.
    zen4 = _cpuinfo("AMD EPYC 9654 96-Core Processor", f"{_BASE} avx2 fma avx512f avx512_bf16",
                    2, vendor="AuthenticAMD", family=25, number=17, mhz="2400.000")  # fmt: skip
    peak = cpu_peak_from_cpuinfo(zen4)
    assert peak.fp32_flops_per_cycle == 32 and peak.peak_flops == pytest.approx(153.6e9)
    assert "avx512_bf16" in peak.low_precision_note("bfloat16")
    assert peak.low_precision_note("float32") is None
    zen5 = zen4.replace("cpu family\t: 25", "cpu family\t: 26")
    assert cpu_peak_from_cpuinfo(zen5).fp32_flops_per_cycle == 64

    # Core 2 Duo, SSE alone: 4 lanes, one add and one multiply unit, 8 FLOPs a cycle;
    # with neither a clock in the name nor cpu MHz, cpufreq's top clock: 2 x 3.0 x 8.
    sse = _cpuinfo("Intel(R) Core(TM)2 Duo CPU E8400", _BASE, 2, number=23)
    peak = cpu_peak_from_cpuinfo(sse, max_khz=3000000)
    assert (peak.fp32_lanes, peak.fma_units, peak.clock_source) == (
        4, 1, "cpufreq cpuinfo_max_freq",
    )  # fmt: skip
    assert peak.peak_flops == pytest.approx(48e9)
    assert cpu_peak_from_cpuinfo(sse) is None  # no clock at all
    # An Arm processor's cpuinfo has no x86 flags: no figure.
    assert cpu_peak_from_cpuinfo("processor\t: 0\nFeatures\t: fp asimd\n") is None


def test_benchmark_prints_a_row_with_flops_and_compile_time():
    proc = run_binary(
        "experiments.benchmark",
        f"--config={config_path('mlp_xor')}",
        "--config.dtype=bfloat16",
        "--repeats=2",
        "--steps_per_block=2",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    row = rows[-1]
    # The fraction of peak is taken against the best matmul measured in the same run:
    # XLA's in bfloat16, numpy's in float32 (it has no bfloat16 BLAS), PyTorch's if any.
    assert row["peak_dtype"] == "bfloat16" and row["peak_numpy_dtype"] == "float32"
    found = {"xla_matmul": row["peak_xla_flops"], "numpy_matmul": row["peak_numpy_flops"]}
    if row["peak_torch_flops"] is not None:
        found["torch_matmul"] = row["peak_torch_flops"]
    if importlib.util.find_spec("torch") is None:
        assert row["peak_torch_flops"] is None and "not installed" in row["peak_torch_skipped"]
    assert row["peak_source"] == max(found, key=found.get) and min(found.values()) > 0
    assert abs(row["peak_gflops"] - max(found.values()) / 1e9) <= 0.1
    assert "fraction_of_peak" in row and "matmul_fraction_of_peak" in row
    # Beside it, the processor's FMA peak and its inputs.
    expected = row["cpu_cores"] * row["cpu_clock_ghz"] * 1e9 * row["fp32_flops_per_cycle"]
    assert row["fp32_flops_per_cycle"] in (8, 16, 32, 64) and row["cpu_model"]
    assert row["theoretical_peak_flops"] == pytest.approx(expected, rel=1e-5)
    assert "fraction_of_theoretical_peak" in row and "matmul_fraction_of_theoretical_peak" in row
    with open("/proc/cpuinfo") as f:
        bf16_units = "avx512_bf16" in f.read()
    assert ("theoretical_peak_note" in row) == bf16_units
    assert row["parameters"] == 2 * 4 + 4 + 4 + 1
    # What the row timed: the dtype the built model computes in and its remat policy.
    assert row["dtype"] == "bfloat16" and row["remat"] == "off"
    for key in (
        "compile_seconds",
        "step_ms_median",
        "examples_per_second",
        "flops_per_step",
        "device_kind",
    ):
        assert key in row
    assert row["flops_per_step"] > 0
    assert row["matmul_flops_per_step"] == XOR_STEP_PRODUCT_FLOPS


@pytest.mark.slow
def test_benchmark_suite_compares_with_references_and_reports_fused_speedup():
    proc = run_binary(
        "experiments.benchmark",
        "--suite=mlp_digits,mlp_xor_fused",
        "--repeats=2",
        "--steps_per_block=2",
    )
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.strip().splitlines()
    rows = {r["name"]: r for r in map(json.loads, lines)}
    rows["peak"] = json.loads(header)["peak_gflops"]  # measured once, float32
    row = rows["mlp_digits"]
    assert row["dl_over_plain_jax"] > 0 and row["dl_over_bare_jax"] > 0
    assert row["peak_dtype"] == "float32" and row["peak_gflops"] == rows["peak"]
    for ref in ("torch_eager", "torch_compile"):  # timed, or skipped with the reason
        assert row.get(f"dl_over_{ref}", 0) > 0 or row[f"{ref}_skipped"]
    assert 0 < row["warm_cache_compile_seconds"] and 0 < row["cold_cache_compile_seconds"]
    fused = rows["mlp_xor_fused"]
    assert fused["steps_per_call"] == 50 and fused["fused_speedup"] > 0
    # 50 steps in one scan, counted in full and reported per step.
    assert fused["matmul_flops_per_step"] == XOR_STEP_PRODUCT_FLOPS


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


def _row(name, step_ms, plain_ms, **extra):
    return {
        "name": name,
        "parameters": 17,
        "batch_size": 4,
        "steps_per_call": 1,
        "step_ms_median": step_ms,
        "step_ms_iqr": 0.1,
        "plain_jax_step_ms_median": plain_ms,
        "dl_over_plain_jax": round(step_ms / plain_ms, 3),
        **extra,
    }


def test_table_of_runs_gives_median_times_and_each_runs_ratio(tmp_path):
    from dl.tools.bench_table import tables

    runs = [(1.0, 2.0), (3.0, 3.0), (2.0, 4.0)]  # (dl ms, plain ms) in three processes
    paths = []
    for i, (dl_ms, plain_ms) in enumerate(runs):
        path = tmp_path / f"run{i}.jsonl"
        rows = [_row("mlp", dl_ms, plain_ms), _row("fused", 0.1, 0.1, fused_speedup=5.0 + i)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(path))
    text = tables(paths)
    assert text.startswith("3 run(s)")
    # Medians over runs (2.0 ms and 3.0 ms); ratios 0.5, 1.0, 0.5 in run order.
    assert "| mlp | 17 | 2.00 | 3.00 | 0.500, 1.000, 0.500 |" in text
    assert "- `fused`: 5.000, 6.000, 7.000x" in text
    appended = tmp_path / "appended.jsonl"
    appended.write_text("".join(open(p).read() for p in paths))
    assert tables([str(appended)]) == text


def test_table_shows_the_fractions_of_the_measured_and_theoretical_peaks(tmp_path):
    from dl.tools.bench_table import tables

    peak = {
        "peak_gflops": 300.0, "peak_source": "numpy_matmul", "peak_dtype": "float32",
        "peak_xla_flops": 250e9, "peak_numpy_flops": 300e9, "peak_numpy_dtype": "float32",
        "peak_torch_flops": None, "theoretical_peak_flops": 332.8e9, "cpu_model": "Xeon",
        "cpu_cores": 2, "cpu_clock_ghz": 2.6, "cpu_clock_source": "cpu MHz",
        "fp32_flops_per_cycle": 64, "achieved_gflops": 150.0, "fraction_of_peak": 0.5,
        "fraction_of_theoretical_peak": 0.451,
    }  # fmt: skip
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(_row("mlp", 1.0, 1.0, **peak)) + "\n")
    text = tables([str(path)])
    assert "| GFLOP/s | of peak | of theoretical | product FLOPs/step |" in text
    assert "| 150.0 | 50.0% | 45.1% |" in text
    assert (
        "- run 1, float32: 300.0 GFLOP/s (numpy_matmul); XLA 250.0, numpy 300.0 (float32), "
        "PyTorch -; theoretical 332.8 GFLOP/s = 2 cores x 2.60 GHz (cpu MHz) x 64 "
        "FLOPs/cycle, Xeon"
    ) in text


def test_table_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_row("mlp", 1.0, 1.0)) + "\nnot json\n")
    proc = run_binary("experiments.benchmark", f"--table={bad}")
    assert proc.returncode == 2
    assert f"{bad}:2 is not a JSON row" in proc.stderr
    proc = run_binary("experiments.benchmark", f"--table={tmp_path / 'none.jsonl'}")
    assert proc.returncode == 2 and "No such file" in proc.stderr
    proc = run_binary("experiments.benchmark", f"--table={bad}", "--suite=all")
    assert proc.returncode == 2 and "takes no --suite" in proc.stderr


def test_op_self_times_subtract_nested_ops_and_keep_one_module():
    from dl.tools.profile import op_self_times

    def event(name, ts, dur, tid=1, module="jit_step"):
        args = {"hlo_module": module, "hlo_op": name}
        return {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name, "args": args}

    trace = {
        "traceEvents": [
            event("while.1", 0, 100),  # a loop whose body ran two fusions
            event("fusion.2", 10, 30),
            event("fusion.2", 50, 30),
            event("dot.3", 0, 40, tid=2),  # concurrently, on another thread
            event("dot.3", 200, 5, module="jit_other"),  # another program
            {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 500, "name": "PjitFunction"},
        ]
    }
    assert op_self_times(trace, "jit_step") == {
        "while.1": {"self_us": 40.0, "count": 1},
        "fusion.2": {"self_us": 60.0, "count": 2},
        "dot.3": {"self_us": 40.0, "count": 1},
    }


def test_benchmark_profile_names_the_costliest_ops(tmp_path):
    proc = run_binary(
        "experiments.benchmark",
        f"--config={config_path('mlp_digits')}",
        "--repeats=2",
        "--steps_per_block=2",
        "--nowarm_compile",
        f"--profile_dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(proc.stdout.strip().splitlines()[-1])["profile"]
    assert profile["trace"].startswith(str(tmp_path / "mlp_digits")) and profile["step_ms"] > 0
    ops = profile["top_ops"]
    assert 0 < len(ops) <= 10
    times = [op["self_ms_per_step"] for op in ops]
    assert times == sorted(times, reverse=True) and times[0] > 0


def test_resnet50_comparison_takes_mfu_from_one_flop_count(tmp_path):
    from benchmarks.compare_resnet50 import compare

    # torchvision's 4.09 GMAC forward per image, three passes, 2 FLOPs a MAC.
    flops_per_image = 3 * 2 * 4.09e9
    rows = [
        {"peak_gflops": 989400.0},  # the benchmark's peak line: not a row
        {
            "model": "resnet50",
            "remat": "off",
            "device_kind": "NVIDIA H200",
            "batch_size": 256,
            "step_ms_median": 64.0,
            "examples_per_second": 4000.0,
            "temp_memory_mb": 20000.0,
        },
        {
            "model": "resnet50",
            "remat": "dots_saveable",
            "device_kind": "NVIDIA H200",
            "batch_size": 256,
            "step_ms_median": 80.0,
            "examples_per_second": 3200.0,
        },
        {
            "row": "torch_resnet50_224_bf16",
            "device": "NVIDIA H200",
            "torch": "2.11.0",
            "compiled": True,
            "batch": 256,
            "step_ms": 51.2,
            "images_per_second": 5000.0,
        },
        {
            "model": "resnet50",
            "remat": "off",
            "device_kind": "cpu",
            "batch_size": 2,
            "step_ms_median": 800.0,
            "examples_per_second": 2.5,
        },
    ]
    path = tmp_path / "resnet50.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    result = compare(str(path))
    by_run = {(r["run"], r["device"]): r for r in result["rows"]}
    h200_bf16 = 989.4e12  # NVIDIA's dense bfloat16 figure for the H200 (and H100 SXM)
    assert by_run[("dl, remat=off", "NVIDIA H200")]["mfu"] == pytest.approx(
        4000 * flops_per_image / h200_bf16
    )
    assert by_run[("PyTorch 2.11.0, compiled=True", "NVIDIA H200")]["mfu"] == pytest.approx(
        5000 * flops_per_image / h200_bf16
    )
    assert by_run[("dl, remat=off", "cpu")]["mfu"] is None  # no published peak
    # dl without remat against PyTorch on the same device only.
    assert result["dl_images_per_second_over_torch"] == {"NVIDIA H200": 0.8}


def test_device_check_names_its_phases_and_refuses_an_unknown_one(tmp_path):
    import subprocess
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    proc = subprocess.run(
        ["bash", script, "run", "resnet50", "nosuch"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")},
    )
    assert proc.returncode == 2
    assert "unknown phase 'nosuch'" in proc.stderr
    for phase in ("resnet50", "torch", "remat", "train", "options", "bench", "tests"):
        assert phase in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran
