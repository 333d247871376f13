"""Timing jit-compiled training steps: compile time, step time, FLOPs.

Measurements follow one protocol for dl's own steps and for the hand-written
references in benchmarks/, so their ratios mean something: compile ahead of
time (timed), run a few warm-up calls, then time `repeats` blocks of
`steps_per_block` calls each, blocking on the result at the end of each block,
and report the median and spread of the per-step time over blocks.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.extend import core as jex


@dataclasses.dataclass
class Timing:
    """Per-step times of one benchmarked step, in seconds."""

    compile_seconds: float
    step_seconds: list[float]
    flops: float | None
    # Matrix products and convolutions per step with loops counted in full
    # (`product_flops`), and whether that count is exact.
    matmul_flops: float | None = None
    matmul_flops_exact: bool = True
    # XLA's temporary buffers of the compiled call (memory analysis), in bytes.
    temp_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def spread(self) -> float:
        """Interquartile range of the per-step time over blocks."""
        q = np.percentile(self.step_seconds, [25, 75])
        return float(q[1] - q[0])

    def row(self, examples_per_step: int) -> dict:
        out = {
            "compile_seconds": round(self.compile_seconds, 4),
            "step_ms_median": round(1e3 * self.median, 4),
            "step_ms_iqr": round(1e3 * self.spread, 4),
            "examples_per_second": round(examples_per_step / self.median, 1),
        }
        if self.flops:
            out["flops_per_step"] = self.flops
            out["achieved_gflops"] = round(self.flops / self.median / 1e9, 2)
        if self.temp_bytes is not None:
            out["temp_memory_mb"] = round(self.temp_bytes / 2**20, 2)
        if self.matmul_flops:
            out["matmul_flops_per_step"] = self.matmul_flops
            out["matmul_gflops"] = round(self.matmul_flops / self.median / 1e9, 2)
            if not self.matmul_flops_exact:
                out["matmul_flops_lower_bound"] = True  # a while loop counted once
        return out


def temp_bytes_of(compiled) -> int | None:
    """XLA's temporary memory of a compiled computation, if the backend reports it."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- not every backend implements it
        return None
    size = getattr(analysis, "temp_size_in_bytes", None)
    return int(size) if size is not None else None


def flops_of(compiled) -> float | None:
    """FLOPs of a compiled computation from XLA's cost analysis, if it reports them."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 -- not every backend implements it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def product_flops(jaxpr) -> tuple[float, bool]:
    """FLOPs of the matrix products and convolutions in a jaxpr, loops counted in full.

    XLA's cost analysis counts the body of a loop once, so a scan over 32 time
    steps reports one step's products. This count walks the jaxpr instead: a
    `scan` body counts `length` times, a `cond` its costliest branch, and a
    product `2 * output size * contracted size` (a convolution: `2 * output
    size * kernel window * input features per group`). Elementwise work is
    left out.

    Args:
      jaxpr: a Jaxpr or ClosedJaxpr (e.g. `jax.jit(f).trace(*args).jaxpr`).

    Returns:
      (flops, exact): exact is False when the jaxpr holds a `while` loop, whose
      trip count is unknown until it runs; its body is then counted once.
    """
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total, exact = 0.0, True
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape
            total += 2.0 * np.prod(out) * np.prod([lhs[d] for d in contract])
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
            window = np.prod([rhs[d] for d in spec[2:]]) * rhs[spec[1]]
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * window
        elif name == "cond":
            counts = [product_flops(b) for b in eqn.params["branches"]]
            total += max(c[0] for c in counts)
            exact = exact and all(c[1] for c in counts)
        else:
            times = eqn.params["length"] if name == "scan" else 1
            exact = exact and name != "while"
            for sub in jex.jaxprs_in_params(eqn.params):
                flops, sub_exact = product_flops(sub)
                total += times * flops
                exact = exact and sub_exact
    return float(total), exact


@dataclasses.dataclass
class Runner:
    """One step to time: how to compile it, its first arguments, how to go on.

    Attributes:
      trace: args -> `jax.stages.Traced` (e.g. `jax.jit(f).trace`), lowered and
        compiled ahead of time, its products counted by `product_flops`; None
        for a step that is not a JAX computation (see `call`).
      args: the first call's arguments.
      advance: (args, output) -> the next call's arguments (threads the state
        through, picks the next batch).
      steps_per_call: training steps one call performs (fused steps).
      call: the step itself when `trace` is None (e.g. a PyTorch step); its
        first call counts as the compile time (torch.compile compiles there).
      sync: waits for a call's output (`jax.block_until_ready` by default; a
        PyTorch CPU step has finished when it returns).
    """

    trace: Callable | None
    args: tuple
    advance: Callable[[tuple, object], tuple]
    steps_per_call: int = 1
    call: Callable | None = None
    sync: Callable = jax.block_until_ready


def time_steps(
    runners: dict[str, Runner],
    *,
    repeats: int = 20,
    steps_per_block: int = 10,
    warmup: int = 5,
    budget_seconds: float = 60.0,
    idle_seconds: float = 0.02,
) -> dict[str, Timing]:
    """Times several steps in one process, interleaving their timed blocks.

    Blocks of the runners alternate (a, b, a, b, ...), so a slow spell of a
    shared machine hits all of them alike and their ratios stay meaningful.
    Slow steps (a ResNet-50 step on a CPU takes seconds) get shorter blocks and
    fewer repeats, down to 5 blocks of one call, to stay near budget_seconds.

    Returns:
      name -> Timing; step times are per training step.
    """
    state = {}
    per_call = 0.0
    for name, r in runners.items():
        args = r.args
        t0 = time.perf_counter()
        matmul, exact = None, True
        if r.trace is not None:
            traced = r.trace(*args)
            compiled = traced.lower().compile()
            compile_seconds = time.perf_counter() - t0
            out = compiled(*args)  # the first call allocates; time the ones after it
            r.sync(out)
            flops, temp = flops_of(compiled), temp_bytes_of(compiled)
            matmul, exact = product_flops(traced.jaxpr)
            matmul = matmul / r.steps_per_call or None
        else:
            compiled = r.call
            out = compiled(*args)
            r.sync(out)
            compile_seconds = time.perf_counter() - t0
            flops = temp = None
        args = r.advance(args, out)
        t0 = time.perf_counter()
        for _ in range(max(warmup - 1, 1)):
            out = compiled(*args)
            args = r.advance(args, out)
        r.sync(out)
        per_call += (time.perf_counter() - t0) / max(warmup - 1, 1)
        state[name] = [
            compiled,
            args,
            # XLA's cost analysis counts a loop body once, whatever its trip
            # count: a fused call's figure is already that of one step.
            Timing(compile_seconds, [], flops, matmul, exact, temp),
        ]
    if per_call * repeats * steps_per_block > budget_seconds:
        steps_per_block = max(1, int(budget_seconds / (repeats * per_call)))
        if steps_per_block == 1:
            repeats = max(5, min(repeats, int(budget_seconds / per_call)))
    for _ in range(repeats):
        for name, r in runners.items():
            compiled, args, timing = state[name]
            # An idle gap, untimed, between blocks: thread pools that spin
            # after their work (PyTorch's OpenMP threads, XLA's) go idle, so a
            # block does not pay for the one before it.
            time.sleep(idle_seconds)
            t0 = time.perf_counter()
            for _ in range(steps_per_block):
                out = compiled(*args)
                args = r.advance(args, out)
            r.sync(out)
            timing.step_seconds.append(
                (time.perf_counter() - t0) / (steps_per_block * r.steps_per_call)
            )
            state[name][1] = args
    return {name: s[2] for name, s in state.items()}
