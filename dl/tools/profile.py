"""Where a compiled step spends its time: a profiler trace and its costliest XLA ops.

`profile_steps` runs a benchmark `Runner` under `jax.profiler` and writes the
trace (open it in TensorBoard's profile plugin or in Perfetto), then reads
the trace back and ranks the step's XLA operations by self time: the time
an op's events take minus the time of the ops nested inside them (a while
loop's body ops inside the loop). Events are those the XLA runtime tags with
the step's module (`hlo_module`) and an op (`hlo_op`); ops that run
concurrently on several threads can add up to more than the wall time.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import time
from collections import defaultdict

import jax


def op_self_times(trace: dict, module: str) -> dict[str, dict]:
    """Self time (microseconds) and event count of each XLA op of `module`.

    Args:
      trace: a trace in the Chrome trace-event format (`traceEvents`).
      module: the HLO module name, e.g. 'jit_train_many'.
    """
    by_thread = defaultdict(list)
    for e in trace.get("traceEvents", []):
        args = e.get("args") or {}
        if e.get("ph") != "X" or args.get("hlo_module") != module:
            continue
        if e.get("name") != args.get("hlo_op"):
            continue
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals: dict[str, dict] = defaultdict(lambda: {"self_us": 0.0, "count": 0})
    for events in by_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[tuple[float, dict]] = []  # (end time, totals entry) of open events
        for e in events:
            start, dur = float(e["ts"]), float(e["dur"])
            while stack and stack[-1][0] <= start:
                stack.pop()
            entry = totals[e["name"]]
            entry["self_us"] += dur
            entry["count"] += 1
            if stack:
                stack[-1][1]["self_us"] -= dur  # nested: not the parent's own time
            stack.append((start + dur, entry))
    return dict(totals)


def _newest_trace(logdir: str) -> str:
    files = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
    if not files:
        raise FileNotFoundError(f"the profiler wrote no *.trace.json.gz under {logdir}")
    return max(files, key=os.path.getmtime)


def profile_steps(runner, logdir: str, calls: int = 10, top: int = 10) -> dict:
    """Profiles `calls` calls of a Runner's compiled step and ranks its XLA ops.

    Args:
      runner: a `dl.tools.benchmark.Runner` with a `trace` (a JAX step) and
        fresh arguments (a step that donates its arguments consumes them).
      logdir: where the profiler writes; one subdirectory per session.
      calls: profiled calls, after three unprofiled ones.
      top: how many ops to return.

    Returns:
      trace: the trace file; step_ms: wall time per training step while
      profiled; top_ops: the `top` ops by self time, each with its name,
      self_ms_per_step, events_per_step and share (of the step's wall time).
    """
    traced = runner.trace(*runner.args)
    compiled = traced.lower().compile()
    module = compiled.as_text().split(",", 1)[0].split()[-1]  # "HloModule NAME, ..."
    args = runner.args
    for _ in range(3):
        out = compiled(*args)
        args = runner.advance(args, out)
    runner.sync(out)
    jax.profiler.start_trace(logdir)
    try:
        t0 = time.perf_counter()
        for _ in range(calls):
            out = compiled(*args)
            args = runner.advance(args, out)
        runner.sync(out)
        wall = time.perf_counter() - t0
    finally:
        jax.profiler.stop_trace()
    path = _newest_trace(logdir)
    with gzip.open(path) as f:
        trace = json.load(f)
    steps = calls * runner.steps_per_call
    ops = sorted(op_self_times(trace, module).items(), key=lambda kv: -kv[1]["self_us"])
    return {
        "trace": path,
        "step_ms": round(1e3 * wall / steps, 4),
        "top_ops": [
            {
                "name": name,
                "self_ms_per_step": round(v["self_us"] / 1e3 / steps, 4),
                "events_per_step": round(v["count"] / steps, 2),
                "share": round(v["self_us"] / 1e6 / wall, 3),
            }
            for name, v in ops[:top]
        ],
    }
