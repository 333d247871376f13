r"""Benchmarks the jit-compiled training step of experiments.

    python -m experiments.benchmark --config=experiments/configs/mlp_digits.py
    python -m experiments.benchmark --suite=all [--output=bench.jsonl]

For each experiment prints one JSON row: device kind and count, parameter
count, batch size, compile time of the first step, median and interquartile
range of the step time, examples per second, FLOPs per step from XLA's cost
analysis, achieved FLOP/s and its fraction of the device's peak (on CPU, the
float32 matmul throughput measured in the same run). Suite rows that have a
hand-written plain JAX + optax reference (benchmarks/plain_jax.py) time it
in the same process, in interleaved blocks, and add the median of the
per-block ratios dl / reference: `plain_jax` computes what dl's step logs
(loss, accuracy, gradient norm), `bare_jax` the loss alone.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("suite", "", "Comma-separated suite rows, or 'all': " + "rows listed in SUITE.")
flags.DEFINE_integer("repeats", 20, "Timed blocks per row.")
flags.DEFINE_integer("steps_per_block", 10, "Step calls per timed block.")
flags.DEFINE_string("output", "", "Append the rows to this JSONL file.")
flags.DEFINE_bool(
    "lstm_layer",
    False,
    "Also time an LSTM layer (batch 64, hidden 128) at "
    "lengths 32 and 256: compile time and median step time.",
)

FLAGS = flags.FLAGS

# Suite rows: name -> (config module, overrides, plain-JAX reference kind or None).
# The digits row drops dropout so that dl and the reference compute the same step.
SUITE = {
    "mlp_digits": ("mlp_digits", {"model.dropout_rate": 0.0, "schedule.name": "constant"}, "mlp"),
    "mlp_784_512_512_10": ("mlp_synthetic", {}, "mlp"),
    "cnn_digits": ("cnn_digits", {}, None),
    "resnet20_digits": ("resnet20_digits", {}, None),
    "alexnet_tiny": ("alexnet_tiny", {}, None),
    "resnet50_224_batch8": ("resnet50", {}, None),
}


def _override(config, overrides):
    with config.unlocked():
        for key, value in overrides.items():
            section, _, field = key.rpartition(".")
            target = config
            for part in filter(None, section.split(".")):
                target = target[part]
            target[field] = value
    return config


def bench_config(
    name: str, config, reference: str | None, repeats: int, block: int, peak: float
) -> dict:
    """Times dl's training step for a config (and its plain reference); returns the row."""
    import jax
    import numpy as np

    from dl.data import TrainOrder
    from dl.tools.benchmark import Runner, time_steps
    from dl.train import build
    from dl.train.loop import _param_count, device_arrays
    from dl.train.sharding import put_replicated

    exp = build(config)
    state = exp.placed_init_state()
    arrays = device_arrays(exp.dataset, exp.mesh)
    k = int(config.get("steps_per_call", 1))
    batch = int(config.batch_size)
    order = TrainOrder(exp.dataset.size("train"), batch, int(config.seed))
    # As in the training loop: the device reads its batches from a window of
    # epoch permutations, sent again only when the steps leave it.
    window = {"step": 0, "first": None}

    def args_at(state, step):
        moved = order.window(step, k, window["first"])
        if moved is not None:
            window["first"] = moved[0]
            window["perms"], window["first_dev"] = put_replicated(
                (moved[1], np.int32(moved[0])), exp.mesh
            )
        return state, arrays["train"], window["perms"], window["first_dev"]

    def advance(args, out):
        window["step"] += k
        return args_at(out[0], window["step"])

    runners = {
        "dl": Runner(
            lambda *a: exp.steps.train_many.lower(*a, steps=k, batch_size=batch),
            args_at(state, 0),
            advance,
            k,
        )
    }
    if reference == "mlp":
        runners["plain_jax"] = _plain_mlp_runner(exp, config, arrays, order, metrics=True)
        runners["bare_jax"] = _plain_mlp_runner(exp, config, arrays, order, metrics=False)
    timings = time_steps(runners, repeats=repeats, steps_per_block=block)
    timing = timings["dl"]
    device = jax.devices()[0]
    row = {
        "name": name,
        "model": config.model.name,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "parameters": _param_count(state.params),
        "batch_size": batch,
        "steps_per_call": k,
        **timing.row(batch),
    }
    if timing.flops and peak:
        row["peak_gflops"] = round(peak / 1e9, 1)
        row["fraction_of_peak"] = round(timing.flops / timing.median / peak, 3)
    for ref in ("plain_jax", "bare_jax"):
        if ref in timings:
            other = timings[ref]
            row[f"{ref}_step_ms_median"] = round(1e3 * other.median, 4)
            ratios = [a / b for a, b in zip(timing.step_seconds, other.step_seconds, strict=True)]
            row[f"dl_over_{ref}"] = round(float(np.median(ratios)), 3)
    return row


def _plain_mlp_runner(exp, config, arrays, order, metrics: bool):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from benchmarks.plain_jax import init_mlp, make_step
    from dl.tools.benchmark import Runner

    x_all, y_all = arrays["train"]["x"], arrays["train"]["y"]
    sizes = [int(np.prod(x_all.shape[1:])), *config.model.hidden_sizes, exp.task.num_outputs()]
    tx = optax.adam(float(config.optimizer.learning_rate))
    params = init_mlp(jax.random.PRNGKey(0), sizes)
    step_fn = make_step(tx, metrics)
    # Batches sliced on the device beforehand: the reference pays nothing to get them.
    data = [
        (
            jnp.take(x_all, jnp.asarray(order.indices(s)[0]), axis=0),
            jnp.take(y_all, jnp.asarray(order.indices(s)[0]), axis=0),
        )
        for s in range(16)
    ]
    pos = {"i": 0}

    def advance(args, out):
        pos["i"] = (pos["i"] + 1) % len(data)
        return (out[0], out[1], *data[pos["i"]])

    return Runner(step_fn.lower, (params, tx.init(params), *data[0]), advance)


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    import importlib

    from dl.tools.benchmark import matmul_peak_flops

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
            module, overrides, ref = SUITE[n]
            cfg = importlib.import_module(f"experiments.configs.{module}").get_config()
            jobs.append((n, _override(cfg, overrides), ref))
    else:
        config = common.load_config_flag("config")
        jobs = [(config.get("name") or "config", config, None)]
    peak = matmul_peak_flops()
    print(json.dumps({"measured_matmul_peak_gflops": round(peak / 1e9, 1)}), flush=True)
    for name, cfg, ref in jobs:
        row = common.guard(
            lambda cfg=cfg, name=name, ref=ref: bench_config(
                name, cfg, ref, FLAGS.repeats, FLAGS.steps_per_block, peak
            )
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    if FLAGS.lstm_layer:
        from dl.tools.recurrent_bench import lstm_layer_rows

        for row in lstm_layer_rows(repeats=FLAGS.repeats):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
