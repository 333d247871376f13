"""Learning curves: training and validation loss and metrics against the step.

`plot_learning_curves(metrics_jsonl, png)` draws one run's metrics.jsonl:
one panel for the loss and one for each of the task's metrics, with the
training values (means over each logging window, in training mode) and the
validation values (whole split, inference mode) on the same axes. A gap that
opens between them while the training loss keeps falling is overfitting;
both high and flat is underfitting.
"""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dl.errors import ConfigError  # noqa: E402

# Keys of metrics.jsonl events that are not a loss or a task metric.
NOT_METRICS = frozenset(
    {
        "step",
        "split",
        "grad_norm",
        "learning_rate",
        "steps_per_second",
        "epoch",
        "skipped_steps",
        "param_norm",
        "host_rss_mb",
        "compilations",
    }
)
MAX_METRIC_PANELS = 3


def read_events(metrics_jsonl_path: str) -> list[dict]:
    """The events of a metrics.jsonl file; a line cut short by a kill is skipped.

    Raises:
      ConfigError: the file does not exist or cannot be read.
    """
    try:
        with open(metrics_jsonl_path) as f:
            lines = f.readlines()
    except OSError as e:
        raise ConfigError(f"cannot read metrics file {metrics_jsonl_path!r}: {e.strerror}") from e
    events = []
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def as_number(value) -> float | None:
    """A float from an event value; the strings "nan"/"inf" that metrics.jsonl uses count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity"):
        return float(value)
    return None


def series(events: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one key of one split, in file order."""
    steps, values = [], []
    for e in events:
        if e.get("split") != split:
            continue
        v = as_number(e.get(key))
        if v is not None:
            steps.append(int(e["step"]))
            values.append(v)
    return steps, values


def metric_names(events: list[dict]) -> list[str]:
    """The task metrics logged for validation (else training), loss excluded."""
    for split in ("validation", "train"):
        names: list[str] = []
        for e in events:
            if e.get("split") == split:
                for k, v in e.items():
                    if k not in NOT_METRICS and k != "loss" and k not in names:
                        if as_number(v) is not None:
                            names.append(k)
        if names:
            return names
    return []


def _log_scale_fits(values: list[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 50


def plot_learning_curves(metrics_jsonl_path: str, png_path: str, title: str = "") -> str | None:
    """Draws the training and validation curves of one run into a PNG.

    Args:
      metrics_jsonl_path: a run's metrics.jsonl (events with step, split and values).
      png_path: the figure to write.
      title: figure title; by default the name of the run's directory.

    Returns:
      png_path, or None if the file holds no training or validation loss
      (nothing is written then).

    Raises:
      ConfigError: the metrics file cannot be read.
    """
    events = read_events(metrics_jsonl_path)
    curves = {s: series(events, s, "loss") for s in ("train", "validation")}
    if not any(steps for steps, _ in curves.values()):
        return None
    metrics = metric_names(events)[:MAX_METRIC_PANELS]
    panels = ["loss", *metrics]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        drawn = []
        for split, style in (("train", "-"), ("validation", "o-")):
            steps, values = series(events, split, key)
            if steps:
                ax.plot(steps, values, style, markersize=3, label=split)
                drawn += values
        if _log_scale_fits(drawn):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    diverged = [e for e in events if e.get("split") == "nonfinite"]
    if diverged:
        for ax in axes[0]:
            ax.axvline(int(diverged[0]["step"]), color="red", linestyle=":", label="non-finite")
    run = os.path.basename(os.path.dirname(os.path.abspath(metrics_jsonl_path)))
    fig.suptitle(title or f"learning curves: {run}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
