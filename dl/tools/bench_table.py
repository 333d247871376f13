"""Markdown tables of benchmark rows from several runs, the way BUILD_NOTES.md keeps them.

Timings on a shared machine vary by about 10% between processes, so the notes
quote each ratio once per run (process) and each time as the median over
runs. `python -m experiments.benchmark --table=run1.jsonl,run2.jsonl,...`
prints both tables from the files `--output` wrote; a file may hold one run or
several appended ones (a row name seen again starts the next run of it).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable

REFERENCE_COLUMNS = (
    ("plain_jax", "plain JAX"),
    ("torch_eager", "PyTorch eager"),
    ("torch_compile", "torch.compile"),
)


def load_rows(paths: Iterable[str]) -> dict[str, list[dict]]:
    """Benchmark rows by name, one entry per run, in the order the files give them.

    Raises:
      ValueError: a line that is not a JSON object, naming the file and line.
    """
    by_name: dict[str, list[dict]] = {}
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number} is not a JSON row: {e}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number} is not a JSON object")
                if "name" in row and "step_ms_median" in row:
                    by_name.setdefault(row["name"], []).append(row)
    return by_name


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f} M"


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _each(runs: list[dict], key: str) -> str:
    values = [f"{r[key]:.3f}" for r in runs if r.get(key) is not None]
    return ", ".join(values) if values else "-"


def ratio_table(by_name: dict[str, list[dict]]) -> str:
    """dl against the references: step times (median over runs) and each run's ratio."""
    header = ["row", "params", "dl step ms"]
    for _, label in REFERENCE_COLUMNS:
        header += [f"{label} ms", f"dl / {label} (each run)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in by_name.items():
        if not any(f"dl_over_{ref}" in r for r in runs for ref, _ in REFERENCE_COLUMNS):
            continue
        cells = [name, f"{runs[0].get('parameters', 0):,}", _ms(_median(runs, "step_ms_median"))]
        for ref, _ in REFERENCE_COLUMNS:
            cells += [_ms(_median(runs, f"{ref}_step_ms_median")), _each(runs, f"dl_over_{ref}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def row_table(by_name: dict[str, list[dict]]) -> str:
    """dl's own figures per row, each the median over runs."""
    header = [
        "row", "params", "batch", "steps/call", "step ms", "IQR ms", "examples/s",
        "FLOPs/step (XLA)", "GFLOP/s", "of peak", "of theoretical", "product FLOPs/step",
        "product GFLOP/s", "of peak", "of theoretical", "compile s", "cold cache s",
        "warm cache s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in by_name.items():
        first = runs[0]
        cells = [
            name,
            f"{first.get('parameters', 0):,}",
            str(first.get("batch_size", "-")),
            str(first.get("steps_per_call", 1)),
            _ms(_median(runs, "step_ms_median")),
            _ms(_median(runs, "step_ms_iqr")),
            _fixed(_median(runs, "examples_per_second"), 0),
            _count(_median(runs, "flops_per_step")),
            _fixed(_median(runs, "achieved_gflops"), 1),
            _percent(_median(runs, "fraction_of_peak")),
            _percent(_median(runs, "fraction_of_theoretical_peak")),
            _count(_median(runs, "matmul_flops_per_step")),
            _fixed(_median(runs, "matmul_gflops"), 1),
            _percent(_median(runs, "matmul_fraction_of_peak")),
            _percent(_median(runs, "matmul_fraction_of_theoretical_peak")),
            _fixed(_median(runs, "compile_seconds"), 2),
            _fixed(_median(runs, "cold_cache_compile_seconds"), 2),
            _fixed(_median(runs, "warm_cache_compile_seconds"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gflops(flops: float | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:,.1f}"


def peak_lines(by_name: dict[str, list[dict]]) -> str:
    """The peaks each run measured, once per run and compute dtype.

    "of peak" in the row table is against the best measured matmul (on a
    GPU, the published peak), "of theoretical" against the processor's FMA
    peak, cores x clock x FLOPs per cycle.
    """
    lines = []
    for i in range(max((len(r) for r in by_name.values()), default=0)):
        seen = set()
        for runs in by_name.values():
            row = runs[i] if i < len(runs) else {}
            dtype = row.get("peak_dtype")
            if "peak_gflops" not in row or dtype in seen:
                continue
            seen.add(dtype)
            source = row.get("peak_source", "-")
            text = f"- run {i + 1}, {dtype}: {row['peak_gflops']:,.1f} GFLOP/s ({source})"
            if "peak_xla_flops" in row:
                text += f"; XLA {_gflops(row['peak_xla_flops'])}"
            if "peak_numpy_flops" in row:
                numpy_dtype = row.get("peak_numpy_dtype") or "-"
                text += f", numpy {_gflops(row['peak_numpy_flops'])} ({numpy_dtype})"
                text += f", PyTorch {_gflops(row.get('peak_torch_flops'))}"
            if row.get("theoretical_peak_flops"):
                text += (
                    f"; theoretical {_gflops(row['theoretical_peak_flops'])} GFLOP/s = "
                    f"{row['cpu_cores']} cores x {row['cpu_clock_ghz']:.2f} GHz "
                    f"({row['cpu_clock_source']}) x {row['fp32_flops_per_cycle']} FLOPs/cycle, "
                    f"{row['cpu_model']}"
                )
            if row.get("theoretical_peak_note"):
                text += f" ({row['theoretical_peak_note']})"
            lines.append(text)
    return "\n".join(lines)


def fused_lines(by_name: dict[str, list[dict]]) -> str:
    """Each fused row's speed-up over single steps, once per run."""
    return "\n".join(
        f"- `{name}`: {_each(runs, 'fused_speedup')}x"
        for name, runs in by_name.items()
        if any("fused_speedup" in r for r in runs)
    )


def tables(paths: Iterable[str]) -> str:
    """The ratio table, the per-row table, the peaks and the fused speed-ups, as markdown."""
    paths = list(paths)
    by_name = load_rows(paths)
    if not by_name:
        raise ValueError("no benchmark rows in " + ", ".join(paths))
    runs = max(len(r) for r in by_name.values())
    parts = [
        f"{runs} run(s); times are medians over runs, ratios are listed once per run.",
        ratio_table(by_name),
        row_table(by_name),
    ]
    peaks = peak_lines(by_name)
    if peaks:
        parts.append(
            "Peaks (of peak: the best measured matmul or the published figure; "
            "of theoretical: cores x clock x FLOPs per cycle):\n\n" + peaks
        )
    fused = fused_lines(by_name)
    if fused:
        parts.append("Fused speed-up over single steps:\n\n" + fused)
    return "\n\n".join(parts) + "\n"
