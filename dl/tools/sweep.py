"""Sweeps: one config trained over a grid of overrides, one run after another.

    axes = [parse_axis(config, "optimizer.learning_rate=0.001,0.01,0.1")]
    points = plan(config, axes)          # every field and value checked, nothing run yet
    results = run_sweep(points, workdir)  # WORKDIR/<field=value,...>/ per grid point

A sweep spec is `FIELD=V1,V2,...` (parsed by `dl.tools.sweep_spec`).
Several specs make the grid of every combination. Every value is parsed to
the type of the field it replaces, and every grid point's experiment is
built (names looked up, shapes checked) before the first run starts, so a
typo fails at once.

Each grid point trains with `dl.train.train` in its own sub-directory and
leaves `sweep_point.json` there; running the sweep again reuses a point whose
config is unchanged and that finished (or diverged), and resumes the others
from their checkpoints. A run that stops on non-finite values (a learning
rate that is too high) is recorded as diverged and the sweep goes on.

`write_results` writes sweep.json and sweep.md (final train, validation and
test metrics of every point, the validation-minus-train loss gap, the best
point) and `plot_sweep` the overlaid curves sweep_loss.png (training loss)
and sweep_validation.png (validation loss and metric).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time

import ml_collections
from matplotlib.figure import Figure

from dl.data import TrainOrder
from dl.errors import ConfigError, NonFiniteError
from dl.reporting import RunCounter, as_number, read_events, series
from dl.tools.sweep_spec import Axis, apply_overrides, format_value, parse_axis
from dl.train import CheckpointError, build, train
from dl.train.resume import config_to_dict

POINT_FILE = "sweep_point.json"


@dataclasses.dataclass
class Point:
    """One grid point: its overrides, config and sub-directory name.

    Attributes:
      directions: metric -> "max" or "min" of the point's task, as built (a
        task's metrics, and so their directions, can depend on its data).
    """

    overrides: dict
    config: ml_collections.ConfigDict
    name: str
    directions: dict = dataclasses.field(default_factory=dict)


def point_name(overrides: dict) -> str:
    """The sub-directory name of a grid point: `field=value,field=value`."""
    return ",".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def plan(config, axes: list[Axis], check: bool = True) -> list[Point]:
    """The grid of every combination of the axes' values, each point checked.

    Args:
      config: the base config (with its --config.X=Y overrides applied).
      axes: the swept fields.
      check: build every point's experiment (dataset, task, model, optimizer,
        shapes) so that a bad combination fails before anything trains.

    Returns:
      The points, in grid order (the last axis varies fastest).

    Raises:
      ConfigError: no axes, a field swept twice, or a point that cannot be built.
    """
    if not axes:
        raise ConfigError("give at least one --sweep=FIELD=V1,V2,...")
    fields = [a.field for a in axes]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ConfigError(f"sweep field(s) given more than once: {', '.join(twice)}")
    points = []
    for values in itertools.product(*(a.values for a in axes)):
        overrides = dict(zip(fields, values, strict=True))
        points.append(Point(overrides, apply_overrides(config, overrides), point_name(overrides)))
    if check:
        for p in points:
            p.directions = dict(check_point(p).metric_directions)
    return points


def check_point(point: Point):
    """Builds a point's experiment without training; ConfigError naming the point if it fails.

    Returns:
      The point's Task.
    """
    try:
        exp = build(point.config)
        TrainOrder(exp.dataset.size("train"), int(point.config.batch_size), 0)
    except ConfigError as e:
        raise ConfigError(f"sweep point {point.name}: {e}") from e
    return exp.task


def _finished(sub: str, config) -> dict | None:
    """The recorded result of a sub-run with the same config that ended, else None."""
    path = os.path.join(sub, POINT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("config") != config_to_dict(config):
        return None
    return record.get("result")


def run_point(point: Point, workdir: str, runs: RunCounter | None = None) -> dict:
    """Trains one grid point in WORKDIR/<name>/ (or reuses its finished result).

    The training's log goes to WORKDIR/<name>/train.log.

    Args:
      point: the grid point.
      workdir: the sweep's directory.
      runs: the counter of the sweep's runs, whose current run this is: the
        training's status lines (steps done, ETA) also go to its log.

    Returns:
      {"name", "overrides", "workdir", "status" ("done", "diverged" or "error"),
      "step", "train", "validation", "test", "seconds", "message", "reused"}.
    """
    sub = os.path.join(workdir, point.name)
    previous = _finished(sub, point.config)
    if previous is not None:
        return {**previous, "reused": True}
    os.makedirs(sub, exist_ok=True)
    result = {
        "name": point.name,
        "overrides": point.overrides,
        "workdir": os.path.abspath(sub),
        "status": "done",
        "reused": False,
    }
    start = time.perf_counter()
    with open(os.path.join(sub, "train.log"), "a") as log:
        try:
            summary = train(point.config, sub, stream=runs.stream(log) if runs else log)
            for key in ("step", "train", "validation", "test", "best", "converged"):
                if key in summary:
                    result[key] = summary[key]
        except NonFiniteError as e:
            result.update(status="diverged", message=str(e).split(";")[0])
            result["step"] = _last_step(sub)
        except (ConfigError, CheckpointError) as e:
            result.update(status="error", message=str(e))
    result["seconds"] = round(time.perf_counter() - start, 2)
    if result["status"] != "error":
        with open(os.path.join(sub, POINT_FILE), "w") as f:
            json.dump({"config": config_to_dict(point.config), "result": result}, f, indent=2)
    return result


def _last_step(sub: str) -> int | None:
    try:
        events = read_events(os.path.join(sub, "metrics.jsonl"))
    except ConfigError:
        return None
    return max((int(e["step"]) for e in events), default=None)


def run_sweep(points: list[Point], workdir: str, log=print) -> list[dict]:
    """Runs the grid points one after another.

    Args:
      points: from `plan`.
      workdir: the sweep's directory; each point trains in a sub-directory.
      log: called with each progress line: "[i/n] name: ..." when a point
        starts, as it trains (steps done, steps per second, ETA) and when it ends.

    Returns:
      The result of every point (see `run_point`).
    """
    runs = RunCounter(len(points), log)
    results = []
    for point in points:
        runs.start(point.name, f"training in {os.path.join(workdir, point.name)}")
        result = run_point(point, workdir, runs)
        runs.finish(_one_line(result))
        results.append(result)
    return results


def _one_line(result: dict) -> str:
    if result["status"] != "done":
        return f"{result['status']}: {result.get('message', '')}"
    val = result.get("validation", {})
    metrics = " ".join(f"validation {k}={v:.4g}" for k, v in val.items())
    return f"done at step {result.get('step')}{' (reused)' if result['reused'] else ''}; {metrics}"


def best_point(results: list[dict], metric: str, direction: str) -> dict | None:
    """The finished point with the best validation `metric` (min or max)."""
    scored = []
    for r in results:
        value = as_number(r.get("validation", {}).get(metric))
        if r["status"] == "done" and value is not None and math.isfinite(value):
            scored.append((value if direction == "min" else -value, r["name"], r))
    return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None


def selection_metric(config, directions: dict) -> tuple[str, str]:
    """(metric, direction) that picks the best point: best_metric, else the loss.

    Args:
      config: the sweep's base config.
      directions: metric -> "max" or "min" of the task as built for a point
        (`Point.directions`), not of its class: a task may add metrics per
        dataset (the detection task's mAP and per-class APs).
    """
    metric = config.get("best_metric", "") or ""
    if metric in directions:
        return metric, directions[metric]
    return "loss", "min"


def _metric_order(results: list[dict]) -> list[str]:
    names = []
    for r in results:
        for split in ("train", "validation", "test"):
            for k in r.get(split, {}):
                if k not in names:
                    names.append(k)
    return sorted(names, key=lambda k: (k != "loss", k))


def _cell(value) -> str:
    number = as_number(value)
    if number is None:
        return "" if value is None else str(value)
    return f"{number:.4g}"


def results_table(results: list[dict], fields: list[str], best: str | None) -> str:
    """The Markdown table of a sweep's results."""
    metrics = _metric_order(results)
    header = [*fields, "status", "step"]
    for m in metrics:
        header += [f"train {m}", f"validation {m}", f"test {m}"]
    header.append("gap (val - train loss)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        status = r["status"] + (" (best)" if r["name"] == best else "")
        row = [format_value(r["overrides"][f]) for f in fields] + [status, _cell(r.get("step"))]
        for m in metrics:
            row += [_cell(r.get(s, {}).get(m)) for s in ("train", "validation", "test")]
        train_loss = as_number(r.get("train", {}).get("loss"))
        val_loss = as_number(r.get("validation", {}).get("loss"))
        gap = val_loss - train_loss if train_loss is not None and val_loss is not None else None
        row.append(_cell(gap))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    results: list[dict], axes: list[Axis], workdir: str, config, metric: str, direction: str
) -> dict:
    """Writes sweep.json and sweep.md into `workdir`.

    Returns:
      The sweep.json content.
    """
    best = best_point(results, metric, direction)
    fields = [a.field for a in axes]
    out = {
        "name": config.get("name", ""),
        "axes": [{"field": a.field, "values": a.values} for a in axes],
        "selection": {"metric": f"validation {metric}", "direction": direction},
        "best": best["name"] if best else None,
        "points": results,
    }
    with open(os.path.join(workdir, "sweep.json"), "w") as f:
        json.dump(out, f, indent=2)
    diverged = [r["name"] for r in results if r["status"] == "diverged"]
    text = [
        f"# Sweep of {config.get('name', '') or 'experiment'} over {', '.join(fields)}",
        "",
        results_table(results, fields, out["best"]),
        f"Best point by validation {metric} ({direction}): {out['best'] or 'none finished'}.",
        "Metrics are those of the final step; `gap` is validation loss minus training loss "
        "(large: overfitting; both losses high: underfitting).",
    ]
    if diverged:
        text.append(f"Diverged (non-finite loss): {', '.join(diverged)}.")
    text += ["", "Curves: sweep_loss.png (training loss), sweep_validation.png (validation).", ""]
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write("\n".join(text))
    return out


def _labels(results: list[dict]) -> list[str]:
    """Short legend labels: the last part of each field name."""
    shorts = [
        ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in r["overrides"].items())
        for r in results
    ]
    return shorts if len(set(shorts)) == len(shorts) else [r["name"] for r in results]


def _draw(ax, results, labels, split: str, key: str) -> list[float]:
    drawn = []
    for r, label in zip(results, labels, strict=True):
        try:
            events = read_events(os.path.join(r["workdir"], "metrics.jsonl"))
        except ConfigError:
            continue
        steps, values = series(events, split, key)
        if not steps:
            continue
        suffix = " (diverged)" if r["status"] == "diverged" else ""
        (line,) = ax.plot(steps, values, "-" if split == "train" else "o-", markersize=3)
        line.set_label(label + suffix)
        if r["status"] == "diverged":
            ax.plot(steps[-1], values[-1], "x", color=line.get_color(), markersize=9)
        drawn += [v for v in values if math.isfinite(v)]
    return drawn


def _finish_axis(ax, drawn: list[float], ylabel: str) -> None:
    if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _validation_metrics(results: list[dict], metric: str) -> list[str]:
    """The task metrics to draw besides the loss: the selection metric first, at most two."""
    names = [] if metric == "loss" else [metric]
    for r in results:
        for k in r.get("validation", {}):
            if k != "loss" and k not in names:
                names.append(k)
    return names[:2]


def plot_sweep(results: list[dict], workdir: str, metric: str, title: str = "") -> list[str]:
    """Writes sweep_loss.png (training loss of every point) and sweep_validation.png.

    Returns:
      The files written.
    """
    labels = _labels(results)
    title = title or os.path.basename(os.path.abspath(workdir))
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    _finish_axis(ax, _draw(ax, results, labels, "train", "loss"), "training loss")
    ax.set_title(f"training loss: {title}")
    loss_png = os.path.join(workdir, "sweep_loss.png")
    fig.savefig(loss_png, dpi=100)

    keys = ["loss", *_validation_metrics(results, metric)]
    fig = Figure(figsize=(6.5 * len(keys), 4.5), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        _finish_axis(ax, _draw(ax, results, labels, "validation", key), f"validation {key}")
    fig.suptitle(f"validation: {title}")
    val_png = os.path.join(workdir, "sweep_validation.png")
    fig.savefig(val_png, dpi=100)
    return [loss_png, val_png]


def sweep(config, specs: list[str], workdir: str, log=print) -> dict:
    """Parses, checks and runs a sweep, then writes its tables and figures.

    Args:
      config: the base config.
      specs: `FIELD=V1,V2,...` strings (one per swept field).
      workdir: the sweep's directory.
      log: called with progress lines.

    Returns:
      The sweep.json content.

    Raises:
      ConfigError: a bad spec, field, value or grid point, before anything trains.
    """
    axes = [parse_axis(config, s) for s in specs]
    points = plan(config, axes)
    metric, direction = selection_metric(config, points[0].directions)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir!r} is a file, not a directory")
    os.makedirs(workdir, exist_ok=True)
    log(f"sweep of {len(points)} runs over {', '.join(a.field for a in axes)} in {workdir}")
    results = run_sweep(points, workdir, log)
    out = write_results(results, axes, workdir, config, metric, direction)
    out["figures"] = plot_sweep(results, workdir, metric, config.get("name", ""))
    return out
