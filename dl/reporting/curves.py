"""Learning curves: training and validation loss and metrics against the step.

`plot_learning_curves(metrics_jsonl, png)` draws one run's metrics.jsonl:
one panel for the loss and one for each of up to three of the task's
metrics, with the training values (means over each logging window, in
training mode) and the validation values (whole split, inference mode) on
the same axes. A gap that opens between them while the training loss keeps
falling is overfitting; both high and flat is underfitting.
"""

from __future__ import annotations

import math
import os

from dl.reporting.metrics_file import RUN_FIELDS, as_number, read_events, series

MAX_METRIC_PANELS = 3


def metric_names(events: list[dict]) -> list[str]:
    """The task metrics logged for validation (else training), loss excluded, in logged order."""
    for split in ("validation", "train"):
        names: list[str] = []
        for e in events:
            if e.get("split") == split:
                for k, v in e.items():
                    if k not in RUN_FIELDS and k != "loss" and k not in names:
                        if as_number(v) is not None:
                            names.append(k)
        if names:
            return names
    return []


def panel_metrics(events: list[dict], best_metric: str = "") -> list[str]:
    """The metrics that get a panel besides the loss, at most `MAX_METRIC_PANELS`.

    `best_metric` comes first when it was logged; the parts of a composite
    loss (names ending in "_loss") come after the other metrics, since the
    loss panel already shows their sum.

    Example:
      >>> events = [{"step": 1, "split": "validation", "loss": 1.0, "coord_loss": 0.5,
      ...            "class_loss": 0.5, "iou": 0.3, "map50": 0.1}]
      >>> panel_metrics(events, "map50")
      ['map50', 'iou', 'coord_loss']
    """
    names = sorted(metric_names(events), key=lambda k: k.endswith("_loss"))
    if best_metric in names:
        names.remove(best_metric)
        names.insert(0, best_metric)
    return names[:MAX_METRIC_PANELS]


def _log_scale_fits(values: list[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 50


def plot_learning_curves(
    metrics_jsonl_path: str, png_path: str, title: str = "", best_metric: str = ""
) -> str | None:
    """Draws the training and validation curves of one run into a PNG.

    Args:
      metrics_jsonl_path: a run's metrics.jsonl (events with step, split and values).
      png_path: the figure to write.
      title: figure title; by default the name of the run's directory.
      best_metric: a metric that always gets a panel, the first after the
        loss (the run's `config.best_metric`, e.g. "map50" for detection);
        "" to draw the first metrics logged.

    Returns:
      png_path, or None if the file holds no training or validation loss
      (nothing is written then).

    Raises:
      ConfigError: the metrics file cannot be read.
    """
    from matplotlib.figure import Figure  # slow to import: loaded when a figure is drawn

    events = read_events(metrics_jsonl_path)
    curves = {s: series(events, s, "loss") for s in ("train", "validation")}
    if not any(steps for steps, _ in curves.values()):
        return None
    panels = ["loss", *panel_metrics(events, best_metric)]
    diverged = [int(e["step"]) for e in events if e.get("split") == "nonfinite"]
    fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
    for ax, key in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        drawn = []
        for split, style, color in (("train", "-", "C0"), ("validation", "o-", "C1")):
            steps, values = series(events, split, key)
            if steps:
                ax.plot(steps, values, style, color=color, markersize=3, label=split)
                drawn += values
        if diverged:
            ax.axvline(diverged[0], color="red", linestyle=":", label="non-finite")
        if _log_scale_fits(drawn):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    run = os.path.basename(os.path.dirname(os.path.abspath(metrics_jsonl_path)))
    fig.suptitle(title or f"learning curves: {run}")
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    return png_path
