r"""Benchmarks the jit-compiled training step of experiments.

    python -m experiments.benchmark --config=experiments/configs/mlp_digits.py
    python -m experiments.benchmark --suite=all [--output=bench.jsonl]
    python -m experiments.benchmark --table=run1.jsonl,run2.jsonl,run3.jsonl

For each experiment prints one JSON row: device kind and count, parameter
count, batch size, compile time of the first step (and again with the
persistent compilation cache warm), median and interquartile range of the
step time, examples per second, FLOPs per step from XLA's cost analysis,
achieved FLOP/s and its fraction of the device's peak for the dtype the model
computes in (on a GPU, the published peak; on a CPU, the best of the matmul
throughputs of XLA, numpy's BLAS and PyTorch measured in the same run, each
recorded in the row, and beside it the fraction of the processor's
theoretical FMA peak, cores x clock x FLOPs per cycle; see `Peaks`).
XLA counts a loop body once, so a row also counts the step's matrix products
and convolutions from its jaxpr with every scan counted in full
(`matmul_flops_per_step`, `matmul_gflops`, `matmul_fraction_of_peak`): for
recurrent models that is the figure to read.

Suite rows (SUITE) time references in the same process, in interleaved
blocks, and add the median of the per-block ratios dl / reference:

  plain_jax      the same model written by hand in plain JAX + optax
                 (benchmarks/plain_jax.py), computing what dl's step logs
                 (loss, accuracy, gradient norm)
  bare_jax       the same, computing the loss alone
  torch_eager    the same model in PyTorch (benchmarks/torch_models.py),
  torch_compile  eager and under torch.compile; skipped, with the reason in
                 the row, where PyTorch is not installed
  single_steps   dl with steps_per_call=1, for rows that fuse steps: the
                 ratio is then the fused speed-up (single / fused)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("suite", "", "Comma-separated suite rows, or 'all': " + "rows listed in SUITE.")
flags.DEFINE_integer("repeats", 20, "Timed blocks per row.")
flags.DEFINE_integer("steps_per_block", 10, "Step calls per timed block.")
flags.DEFINE_string("output", "", "Append the rows to this JSONL file.")
REFERENCES = ("plain_jax", "bare_jax", "torch_eager", "torch_compile", "single_steps")
flags.DEFINE_list(
    "references",
    list(REFERENCES),
    "References to time beside dl on suite rows that have them ('none' for "
    "none): " + ", ".join(REFERENCES) + ".",
)
flags.DEFINE_bool(
    "warm_compile",
    True,
    "Also time the compile with the persistent cache cold and warm (a fresh "
    "cache directory per row; the rest of the run uses no persistent cache).",
)
flags.DEFINE_string(
    "profile_dir",
    "",
    "Also profile dl's step of each row into DIR/ROW (a trace for TensorBoard or "
    "Perfetto) and add its costliest XLA ops by self time to the row ('profile').",
)
flags.DEFINE_list(
    "table",
    [],
    "Instead of timing, print markdown tables of the rows in these JSONL files "
    "(written by --output; one run per file, or several appended): step times "
    "as medians over runs, ratios once per run.",
)
flags.DEFINE_bool(
    "lstm_layer",
    False,
    "Also time an LSTM layer (batch 64, hidden 128) at "
    "lengths 32 and 256: compile time and median step time.",
)

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Row:
    """A suite row: a config, overrides, and what to time beside it.

    Attributes:
      config: module under experiments/configs.
      overrides: dotted config field -> value.
      model: reference model kind in benchmarks/ (plain_jax.MODELS), or None.
      fused: the row fuses steps; time it against steps_per_call=1 too.
    """

    config: str
    overrides: dict
    model: str | None = None
    fused: bool = False


# Rows with a reference model turn off dropout so that dl and the reference
# compute the same step.
_IMAGE_28 = {
    "dataset.name": "synthetic",
    "dataset.num_samples": 4096,
    "dataset.feature_shape": (28, 28, 1),
    "dataset.num_classes": 10,
    "dataset.standardize": "none",
    "model": {"name": "lenet5", "dropout_rate": 0.0},
    "augment.crop_padding": 0,
    "schedule.name": "constant",
    "optimizer.learning_rate": 1e-3,
    "batch_size": 128,
}
_SEQUENCE_32 = {
    "dataset.name": "synthetic",
    "dataset.num_samples": 4096,
    "dataset.feature_shape": (32, 32),
    "dataset.num_classes": 10,
    "dataset.standardize": "none",
    "model.hidden_size": 128,
    "schedule.name": "constant",
    "grad_clip_norm": 0.0,
    "batch_size": 64,
}
SUITE = {
    "mlp_xor_fused": Row("mlp_xor", {"target_metric": "", "steps_per_call": 50}, fused=True),
    "mlp_digits_fused": Row(
        "mlp_digits",
        {"model.dropout_rate": 0.0, "schedule.name": "constant", "steps_per_call": 50},
        fused=True,
    ),
    "mlp_digits": Row(
        "mlp_digits",
        {"model.dropout_rate": 0.0, "schedule.name": "constant", "steps_per_call": 1},
        "mlp",
    ),
    "mlp_784_512_512_10": Row("mlp_synthetic", {}, "mlp"),
    "mlp_784_512_512_10_batch1024": Row("mlp_synthetic", {"batch_size": 1024}, "mlp"),
    "lenet5_28x28_batch128": Row("cnn_digits", _IMAGE_28, "lenet"),
    "lstm_len32_hidden128_batch64": Row("lstm_digits", _SEQUENCE_32, "lstm"),
    "gcn_cora_sized": Row(
        "gcn_citation",
        {"model.dropout_rate": 0.0, "optimizer.weight_decay": 0.0},
        "gcn",
    ),
    "cnn_digits": Row("cnn_digits", {}),
    "resnet20_digits": Row("resnet20_digits", {}),
    "alexnet_tiny": Row("alexnet_tiny", {}),
    "resnet50_224_batch8": Row("resnet50", {}),
}


def _override(config, overrides):
    """A copy of `config` with the overrides of a suite row, which may add fields."""
    from dl.tools.sweep import apply_overrides

    return apply_overrides(config, overrides, add_fields=True)


def _dl_runner(config):
    """dl's own training step for a config, fed as the training loop feeds it."""
    from dl.tools.benchmark import Runner
    from dl.train import Feeder, build, device_arrays

    exp = build(config)
    state = exp.placed_init_state()
    feeder = Feeder(
        exp,
        device_arrays(exp.dataset, exp.mesh)["train"],
        batch_size=int(config.batch_size),
        steps_per_call=int(config.get("steps_per_call", 1)),
        seed=int(config.seed),
    )

    def advance(args, out):
        feeder.step += feeder.steps_per_call
        return feeder.args(out[0])

    runner = Runner(feeder.trace, feeder.args(state), advance, feeder.steps_per_call)
    return exp, state, feeder.order, runner


def _host_batches(exp, order, count: int = 16) -> list[dict]:
    """The first `count` training batches as dicts of numpy arrays (every field)."""
    train = exp.dataset.splits["train"]
    return [{k: v[order.indices(s)[0]] for k, v in train.items()} for s in range(count)]


def _spec(kind: str, config, exp) -> dict:
    """Sizes of the reference model that computes the same step as dl's."""
    import numpy as np

    shapes = exp.dataset.element_shapes
    classes = exp.task.num_outputs()
    if kind == "mlp":
        return {
            "sizes": [int(np.prod(shapes["x"])), *config.model.hidden_sizes, classes],
        }
    if kind == "lenet":
        return {
            "image_shape": tuple(shapes["x"]) if len(shapes["x"]) == 3 else (*shapes["x"], 1),
            "classes": classes,
        }
    if kind == "lstm":
        return {
            "features": int(shapes["x"][-1]),
            "hidden": int(config.model.hidden_size),
            "classes": classes,
        }
    if kind == "gcn":
        return {
            "features": int(shapes["x"][-1]),
            "hidden": int(config.model.hidden_sizes[0]),
            "classes": classes,
        }
    raise ValueError(kind)


def _plain_runner(kind, spec, config, batches, metrics: bool):
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks import plain_jax
    from dl.tools.benchmark import Runner

    tx = optax.adam(float(config.optimizer.learning_rate))
    params = plain_jax.init(kind, jax.random.PRNGKey(0), spec)
    step_fn = plain_jax.make_step(kind, tx, metrics)
    fields = ("x", "y", "senders", "receivers", "label_mask")
    # Batches sliced on the device beforehand: the reference pays nothing to get them.
    data = [{k: jnp.asarray(b[k]) for k in fields if k in b} for b in batches]
    pos = {"i": 0}

    def advance(args, out):
        pos["i"] = (pos["i"] + 1) % len(data)
        return (out[0], out[1], data[pos["i"]])

    return Runner(step_fn.trace, (params, tx.init(params), data[0]), advance)


def _torch_runner(kind, spec, config, batches, compiled: bool):
    from benchmarks import torch_models
    from dl.tools.benchmark import Runner

    step = torch_models.make_step(
        kind, spec, float(config.optimizer.learning_rate), compiled, batches[0]
    )
    data = [torch_models.to_batch(kind, b) for b in batches]
    pos = {"i": 0}

    def advance(args, out):
        pos["i"] = (pos["i"] + 1) % len(data)
        return data[pos["i"]]

    return Runner(None, data[0], advance, call=step, sync=lambda out: None)


def _torch_available() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "PyTorch is not installed (pip install -e '.[bench]')"
    return None


def _cached_compile_seconds(config) -> tuple[float, float] | None:
    """Compile times of dl's step with the persistent cache cold, then warm.

    Compiles once into a fresh cache directory (cold: XLA compiles and the
    cache stores the executable), drops JAX's in-memory caches, and times the
    compile again (warm: the executable is read from disk).
    """
    import time

    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    saved = {k: getattr(jax.config, k) for k in names}
    times = []
    with tempfile.TemporaryDirectory() as cache:
        try:
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
            for _ in range(2):
                jax.clear_caches()
                cc.reset_cache()
                runner = _dl_runner(config)[3]
                t0 = time.perf_counter()
                runner.trace(*runner.args).lower().compile()
                times.append(time.perf_counter() - t0)
            if not os.listdir(cache):
                return None
        finally:
            for k, v in saved.items():
                jax.config.update(k, v)
            cc.reset_cache()
    return times[0], times[1]


def bench_config(name: str, config, row: Row | None, repeats: int, block: int, peaks) -> dict:
    """Times dl's training step for a config (and the row's references); returns the row.

    `peaks` is a `Peaks`: the row's fractions of peak are taken against the
    peak for the dtype the model computes in (`fraction_of_peak`,
    `matmul_fraction_of_peak`) and, on a CPU, against the theoretical one
    (`fraction_of_theoretical_peak`, `matmul_fraction_of_theoretical_peak`).
    """
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from dl.tools.benchmark import time_steps
    from dl.train.state import param_count

    exp, state, order, dl_runner = _dl_runner(config)
    k = dl_runner.steps_per_call
    batch = int(config.batch_size)
    runners = {"dl": dl_runner}
    skipped, first_call = {}, {}
    wanted = set(FLAGS.references)
    if row is not None and row.fused and "single_steps" in wanted:
        single = _override(config, {"steps_per_call": 1})
        runners["single_steps"] = _dl_runner(single)[3]
    if row is not None and row.model:
        spec = _spec(row.model, config, exp)
        batches = _host_batches(exp, order)
        for ref, metrics in (("plain_jax", True), ("bare_jax", False)):
            if ref in wanted and (metrics or row.model == "mlp"):
                runners[ref] = _plain_runner(row.model, spec, config, batches, metrics)
        for ref, compiled in (("torch_eager", False), ("torch_compile", True)):
            if ref not in wanted:
                continue
            why = _torch_available()
            if why is None:
                try:
                    runner = _torch_runner(row.model, spec, config, batches, compiled)
                    t0 = time.perf_counter()
                    runner.sync(runner.call(*runner.args))  # fails here if it cannot run
                    first_call[ref] = time.perf_counter() - t0  # torch.compile compiles here
                    runners[ref] = runner
                except Exception as e:  # noqa: BLE001 -- reported in the row instead
                    why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            if why:
                skipped[ref] = why
    timings = time_steps(runners, repeats=repeats, steps_per_block=block)
    timing = timings["dl"]
    device = jax.devices()[0]
    out = {
        "name": name,
        "model": config.model.name,
        "remat": str(config.model.get("remat", "off")),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "parameters": param_count(state.params),
        "batch_size": batch,
        "steps_per_call": k,
        **timing.row(batch),
    }
    dtype = jnp.dtype(exp.model.dtype).name  # as build_model resolved it
    out["dtype"] = dtype
    peak, theoretical, fields = peaks(dtype)
    out.update(fields)
    # The jaxpr's count is the whole step's, over every device. A CPU's peak is
    # its host's, shared by the host's devices; an accelerator's is one device's.
    on_cpu = jax.devices()[0].platform == "cpu"
    devices = jax.process_count() if on_cpu else jax.device_count()
    for suffix, value in (("peak", peak), ("theoretical_peak", theoretical)):
        if value is None:
            continue
        if timing.flops:
            # XLA's count is per device (after partitioning over the mesh), as is the peak.
            out[f"fraction_of_{suffix}"] = round(timing.flops / timing.median / value, 3)
        if timing.matmul_flops:
            out[f"matmul_fraction_of_{suffix}"] = round(
                timing.matmul_flops / timing.median / (value * devices), 3
            )
    for ref, other in timings.items():
        if ref == "dl":
            continue
        out[f"{ref}_step_ms_median"] = round(1e3 * other.median, 4)
        if ref in first_call:
            out[f"{ref}_first_call_seconds"] = round(first_call[ref], 3)
        ratios = [a / b for a, b in zip(timing.step_seconds, other.step_seconds, strict=True)]
        if ref == "single_steps":
            out["fused_speedup"] = round(float(np.median([1 / r for r in ratios])), 3)
        else:
            out[f"dl_over_{ref}"] = round(float(np.median(ratios)), 3)
    for ref, why in skipped.items():
        out[f"{ref}_skipped"] = why
    if FLAGS.profile_dir:
        from dl.tools.profile import profile_steps

        fresh = _dl_runner(config)[3]  # the timed runner's arguments were donated
        out["profile"] = profile_steps(fresh, os.path.join(FLAGS.profile_dir, name))
    if FLAGS.warm_compile:
        cached = _cached_compile_seconds(config)
        if cached is not None:
            out["cold_cache_compile_seconds"] = round(cached[0], 4)
            out["warm_cache_compile_seconds"] = round(cached[1], 4)
    return out


class Peaks:
    """Peak FLOP/s of one device for a compute dtype, and where the figures come from.

    An accelerator's peak is its published dense peak for the dtype. On a CPU
    (or a device or dtype with no published figure) it is the best of the
    2048x2048 matmuls of XLA, numpy's BLAS and PyTorch (where installed),
    measured in this process once per dtype (`dl.tools.peaks.matmul_peaks`;
    numpy's in float32 for bfloat16 and float16), so a slow XLA product does
    not read as a good fraction. Beside it a CPU gets its theoretical FMA
    peak (`dl.tools.peaks.theoretical_cpu_peak`). Both are the whole
    host's, which every host device shares.
    """

    def __init__(self):
        self._cache = {}

    def __call__(self, dtype: str = "float32") -> tuple[float, float | None, dict]:
        """(best peak, theoretical peak or None, the row's peak fields), in FLOP/s."""
        if dtype not in self._cache:
            self._cache[dtype] = self._measure(dtype)
        return self._cache[dtype]

    @staticmethod
    def _measure(dtype: str) -> tuple[float, float | None, dict]:
        import jax

        from dl.tools.peaks import matmul_peaks, published_peak_flops, theoretical_cpu_peak

        device = jax.devices()[0]
        on_cpu = device.platform == "cpu"
        published = published_peak_flops(device.device_kind, dtype)
        if not on_cpu and published:
            fields = {"peak_gflops": round(published / 1e9, 1), "peak_source": "published"}
            return published, None, {**fields, "peak_dtype": dtype}
        measured = matmul_peaks(dtype=dtype, host=on_cpu)

        def flops(v):
            return None if v is None else round(v / 1e6) * 1e6

        fields = {
            "peak_gflops": round(measured.best / 1e9, 1),
            "peak_source": measured.source,
            "peak_dtype": dtype,
            "peak_xla_flops": flops(measured.xla),
        }
        if not on_cpu:
            return measured.best, None, fields
        fields.update(
            peak_numpy_flops=flops(measured.numpy),
            peak_numpy_dtype=measured.numpy_dtype,
            peak_torch_flops=flops(measured.torch),
        )
        if measured.torch_skipped:
            fields["peak_torch_skipped"] = measured.torch_skipped
        cpu = theoretical_cpu_peak()
        if cpu is None:
            return measured.best, None, {**fields, "theoretical_peak_flops": None}
        theoretical = cpu.peak_flops_for(dtype)
        fields.update(
            theoretical_peak_flops=flops(theoretical),
            cpu_model=cpu.model,
            cpu_cores=cpu.cores,
            cpu_clock_ghz=cpu.clock_ghz,
            cpu_clock_source=cpu.clock_source,
            fp32_flops_per_cycle=cpu.fp32_flops_per_cycle,
        )
        note = cpu.low_precision_note(dtype)
        if note:
            fields["theoretical_peak_note"] = note
        return measured.best, theoretical, fields


def main(argv):
    common.reject_positional(argv)
    if FLAGS.table:
        if FLAGS.suite or FLAGS.config or FLAGS.lstm_layer:
            common.fail("--table prints tables of earlier runs; it takes no --suite or --config")
        from dl.tools.bench_table import tables

        try:
            print(tables(FLAGS.table), end="")
        except (OSError, ValueError) as e:
            common.fail(f"--table: {e}")
        return
    common.setup_jax()
    import importlib

    import jax

    # compile_seconds is a compile from scratch: no persistent cache here
    # (the cold/warm cache figures use a fresh directory of their own).
    jax.config.update("jax_compilation_cache_dir", None)

    # An empty or misspelt list would silently time dl alone.
    bad = [r for r in FLAGS.references if r not in REFERENCES and r != "none"]
    if bad or not FLAGS.references:
        common.fail(
            f"--references got {bad or 'an empty list'}; give a comma-separated list of "
            f"{', '.join(REFERENCES)}, or 'none' to time dl alone"
        )
    rows = []
    if FLAGS.suite or FLAGS.lstm_layer:
        names = (
            list(SUITE) if FLAGS.suite == "all" else FLAGS.suite.split(",") if FLAGS.suite else []
        )
        unknown = [n for n in names if n not in SUITE]
        if unknown:
            common.fail(f"unknown suite rows {unknown}; known: {', '.join(SUITE)}")
        jobs = []
        for n in names:
            row = SUITE[n]
            cfg = importlib.import_module(f"experiments.configs.{row.config}").get_config()
            jobs.append((n, _override(cfg, row.overrides), row))
    else:
        config = common.load_config_flag("config")
        fused = int(config.get("steps_per_call", 1)) > 1
        jobs = [(config.get("name") or "config", config, Row("", {}, fused=fused))]
    peaks = Peaks()
    print(json.dumps(peaks("float32")[2]), flush=True)
    for name, cfg, row in jobs:
        result = common.guard(
            lambda cfg=cfg, name=name, row=row: bench_config(
                name, cfg, row, FLAGS.repeats, FLAGS.steps_per_block, peaks
            )
        )
        rows.append(result)
        print(json.dumps(result), flush=True)
    if FLAGS.lstm_layer:
        from dl.tools.recurrent_bench import lstm_layer_rows

        for result in lstm_layer_rows(repeats=FLAGS.repeats):
            rows.append(result)
            print(json.dumps(result), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "a") as f:
            for result in rows:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
