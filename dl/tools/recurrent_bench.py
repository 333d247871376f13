"""Benchmark rows for one LSTM layer: compile time and step time against sequence length.

The layer runs its cell with a lifted `lax.scan`, so the compiled program has one copy
of the cell whatever the length: compile time should stay flat as the length grows,
while the step time grows with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl.models.recurrent_layers import RecurrentLayer
from dl.tools.benchmark import Runner, time_steps


def lstm_layer_runner(
    length: int, batch: int = 64, hidden: int = 128, features: int = 128, seed: int = 0
) -> Runner:
    """A training step of one LSTM layer: forward, backward and an Adam update.

    The loss is the mean squared error of the layer's outputs [batch, length, hidden]
    against fixed random targets.

    Args:
      length: time steps per sequence.
      batch: sequences per step.
      hidden: hidden size of the cell.
      features: input features per step.
      seed: seed of the inputs, targets and parameters.

    Returns:
      A Runner for `dl.tools.benchmark.time_steps`.
    """
    layer = RecurrentLayer(cell="lstm", hidden_size=hidden)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, length, features)), jnp.float32)
    target = jnp.asarray(rng.standard_normal((batch, length, hidden)), jnp.float32)
    params = layer.init(jax.random.PRNGKey(seed), x)["params"]
    tx = optax.adam(1e-3)

    def step(params, opt_state, x, target):
        def loss_fn(p):
            _, outputs = layer.apply({"params": p}, x)  # [batch, length, hidden]
            return jnp.mean((outputs - target) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return Runner(
        jax.jit(step, donate_argnums=(0, 1)).trace,
        (params, tx.init(params), x, target),
        lambda args, out: (out[0], out[1], *args[2:]),
    )


def lstm_layer_rows(
    lengths=(32, 256),
    batch: int = 64,
    hidden: int = 128,
    features: int = 128,
    repeats: int = 20,
    steps_per_block: int = 5,
) -> list[dict]:
    """Times the LSTM layer's training step at each length, in interleaved blocks.

    XLA's cost analysis counts the body of a scan once, not once per step, so its FLOP
    count is left out; `matmul_flops_per_step` counts the step's products with the scan
    counted in full (`dl.tools.benchmark.product_flops`), `matmul_gflops` their rate.

    Returns:
      One row per length: name, batch, length, hidden, features, device kind, compile
      seconds, median and interquartile range of the step time, sequences per second,
      FLOPs of the products per step and the GFLOP/s achieved.
    """
    runners = {f"lstm_layer_len{n}": lstm_layer_runner(n, batch, hidden, features) for n in lengths}
    timings = time_steps(runners, repeats=repeats, steps_per_block=steps_per_block)
    device = jax.devices()[0].device_kind
    rows = []
    for n, name in zip(lengths, runners, strict=True):
        timing = timings[name]
        timing.flops = None
        rows.append(
            {
                "name": name,
                "batch_size": batch,
                "length": n,
                "hidden_size": hidden,
                "features": features,
                "device_kind": device,
                **timing.row(batch),
            }
        )
    return rows
