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
        "FLOPs/step (XLA)", "GFLOP/s", "of peak", "product FLOPs/step", "product GFLOP/s",
        "of peak", "compile s", "cold cache s", "warm cache s",
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
            _count(_median(runs, "matmul_flops_per_step")),
            _fixed(_median(runs, "matmul_gflops"), 1),
            _percent(_median(runs, "matmul_fraction_of_peak")),
            _fixed(_median(runs, "compile_seconds"), 2),
            _fixed(_median(runs, "cold_cache_compile_seconds"), 2),
            _fixed(_median(runs, "warm_cache_compile_seconds"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fused_lines(by_name: dict[str, list[dict]]) -> str:
    """Each fused row's speed-up over single steps, once per run."""
    return "\n".join(
        f"- `{name}`: {_each(runs, 'fused_speedup')}x"
        for name, runs in by_name.items()
        if any("fused_speedup" in r for r in runs)
    )


def tables(paths: Iterable[str]) -> str:
    """The ratio table, the per-row table and the fused speed-ups, as markdown."""
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
    fused = fused_lines(by_name)
    if fused:
        parts.append("Fused speed-up over single steps:\n\n" + fused)
    return "\n\n".join(parts) + "\n"
