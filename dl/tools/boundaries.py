"""Decision boundaries of trained classifiers on 2-D data.

`draw_boundaries(workdirs, png)` restores each run (its config.json and a
checkpoint), evaluates the model on a grid over the data's range and draws
the region each class gets, shaded by the model's confidence, with the
training points on top; several runs are drawn side by side on the same axes
(e.g. MLPs with 0, 1 and 2 hidden layers on the same data).

Coordinates: the data pipeline standardizes inputs with statistics of the
training split. The figure is drawn in the data's original units: the
grid is mapped to the model's inputs by the same affine map the pipeline
applied (recovered exactly from the raw and the standardized training
split), so the points and regions are where the data really lies.
"""

from __future__ import annotations

import copy
import json
import os

import jax
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

import dl.tools.sweep as sweep
from dl.data import load_dataset
from dl.errors import ConfigError
from dl.reporting import RunCounter
from dl.train import CheckpointError, Checkpoints, build, train
from dl.train.evaluation import fit_mesh, read_run_config

GRID_CHUNK = 8192


def check_2d(dataset) -> None:
    """Raises ConfigError unless the dataset is a classification set with 2 input features."""
    shape = tuple(dataset.splits["train"]["x"].shape[1:])
    if shape != (2,):
        features = int(np.prod(shape)) if shape else 1
        raise ConfigError(
            f"decision boundaries need 2-D inputs, but dataset {dataset.name!r} has "
            f"{features} input feature(s) per example (shape {shape}); exactly 2 are needed "
            "(e.g. moons, circles, spirals, xor)"
        )
    if dataset.kind != "classification":
        raise ConfigError(
            f"decision boundaries need a classification dataset; {dataset.name!r} is "
            f"a {dataset.kind} set"
        )


def check_config(config) -> None:
    """Checks, before anything trains, that a config's data can be drawn (2-D classification)."""
    check_2d(load_dataset(config.dataset))


def input_map(config, dataset) -> tuple[dict, np.ndarray, np.ndarray]:
    """The raw (unstandardized) splits and the affine map raw -> model input.

    Returns:
      (split -> raw x [examples, 2], scale [2], offset [2]) with
      model_input = raw * scale + offset.
    """
    raw_cfg = copy.deepcopy(config.dataset)
    with raw_cfg.unlocked():
        raw_cfg.standardize = "none"
    raw = load_dataset(raw_cfg)
    xr = raw.splits["train"]["x"].astype(np.float64)
    xs = dataset.splits["train"]["x"].astype(np.float64)
    scale, offset = np.ones(2), np.zeros(2)
    for j in range(2):
        var = np.var(xr[:, j])
        if var > 0:
            scale[j] = np.mean((xr[:, j] - xr[:, j].mean()) * (xs[:, j] - xs[:, j].mean())) / var
        offset[j] = xs[:, j].mean() - scale[j] * xr[:, j].mean()
    return {s: f["x"] for s, f in raw.splits.items()}, scale, offset


def class_probabilities(experiment, state, inputs: np.ndarray) -> np.ndarray:
    """The model's class probabilities [examples, classes] for model inputs [examples, 2]."""
    task, model = experiment.task, experiment.model
    variables = {"params": state.params, **state.model_state}
    apply = jax.jit(lambda v, x: task.predict(model.apply(v, x, train=False)))
    out = []
    for i in range(0, len(inputs), GRID_CHUNK):
        p = np.asarray(jax.device_get(apply(variables, inputs[i : i + GRID_CHUNK])), np.float64)
        out.append(np.concatenate([1.0 - p, p], axis=-1) if p.shape[-1] == 1 else p)
    return np.concatenate(out)


def describe_model(config) -> str:
    """A panel title for a run's model, e.g. "2 hidden layers (8x8, tanh)"."""
    model = config.model
    hidden = model.get("hidden_sizes", None)
    if model.get("name") == "mlp" and hidden is not None:
        hidden = tuple(hidden)
        layers = len(hidden)
        sizes = "x".join(str(h) for h in hidden)
        return f"{layers} hidden layer{'s' if layers != 1 else ''}" + (
            f" ({sizes}, {model.get('activation', 'relu')})" if layers else " (linear)"
        )
    return str(model.get("name"))


def load_run(workdir: str, checkpoint: str = "latest"):
    """Restores a run: (config, experiment, state, step, summary or {})."""
    config = fit_mesh(read_run_config(workdir))
    experiment = build(config)
    check_2d(experiment.dataset)
    restored = Checkpoints(workdir, read_only=True).restore(experiment.abstract_state(), checkpoint)
    if restored is None:
        raise CheckpointError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    state, _, step = restored
    summary = {}
    path = os.path.join(workdir, "summary.json")
    if os.path.isfile(path):
        with open(path) as f:
            summary = json.load(f)
    return config, experiment, state, step, summary


def _colors(k: int) -> np.ndarray:
    cmap = colormaps["tab10"]
    return np.asarray([to_rgb(cmap(i % 10)) for i in range(k)])


def _draw_regions(ax, xx, yy, labels, confidence, k: int, x_train, y_train) -> None:
    """One panel: class regions on the grid [res, res], shaded by confidence, points on top."""
    colors = _colors(k)
    strength = ((confidence - 1.0 / k) / (1.0 - 1.0 / k)).clip(0, 1)[..., None]
    rgb = 1.0 - (0.25 + 0.35 * strength) * (1.0 - colors[labels])
    extent = (xx.min(), xx.max(), yy.min(), yy.max())
    ax.imshow(rgb, origin="lower", extent=extent, aspect="auto")
    if k > 1 and len(np.unique(labels)) > 1:
        ax.contour(xx, yy, labels, levels=np.arange(k - 1) + 0.5, colors="k", linewidths=0.8)
    ax.scatter(
        x_train[:, 0],
        x_train[:, 1],
        c=colors[y_train],
        s=12 if len(x_train) > 50 else 40,
        edgecolors="k",
        linewidths=0.4,
    )


def _grid(raws, resolution: int):
    """The plotting grid around every split's points: (low, high, xx, yy)."""
    every = np.concatenate([x for raw, _, _ in raws for x in raw.values() if len(x)])
    lo, hi = every.min(axis=0), every.max(axis=0)
    margin = 0.1 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin, hi + margin
    gx, gy = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    return lo, hi, xx, yy


def _panel(ax, run, raw_map, xx, yy, panel_title: str) -> dict:
    """Draws one run's regions and training points on `ax`; returns its panel record."""
    config, experiment, state, step, summary = run
    raw, scale, offset = raw_map
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)  # [points, 2]
    k = max(int(experiment.dataset.num_classes or 2), 2)
    probs = class_probabilities(experiment, state, (grid * scale + offset).astype(np.float32))
    labels = probs.argmax(-1).reshape(xx.shape)
    confidence = probs.max(-1).reshape(xx.shape)
    x_train, y_train = raw["train"], experiment.dataset.splits["train"]["y"]
    _draw_regions(ax, xx, yy, labels, confidence, k, x_train, y_train)
    accuracy = {
        split: summary.get(split, {}).get("accuracy") for split in ("train", "validation", "test")
    }
    subtitle = ", ".join(
        f"{s[:5] if s == 'validation' else s} acc {a:.2f}"
        for s, a in accuracy.items()
        if a is not None and s != "test"
    )
    ax.set_title(panel_title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    return {
        "title": panel_title,
        "model": describe_model(config),
        "step": int(step),
        "accuracy": accuracy,
        "region_fractions": {str(c): float(np.mean(labels == c)) for c in range(k)},
    }


def draw_boundaries(
    workdirs: list[str],
    png_path: str,
    titles: list[str] | None = None,
    resolution: int = 200,
    checkpoint: str = "latest",
    title: str = "",
) -> dict:
    """Draws the decision regions of one or more trained runs side by side.

    Args:
      workdirs: run directories (config.json and checkpoints) of 2-D classifiers.
      png_path: the figure to write; a JSON file with the same stem is written too.
      titles: panel titles (default: the model, e.g. "2 hidden layers (16x16, relu)").
      resolution: grid points per axis.
      checkpoint: "latest" or "best".
      title: figure title.

    Returns:
      {"figure", "panels": [{workdir, title, step, accuracy on the grid's
      own split points (train, validation)}], "coordinates"}.

    Raises:
      ConfigError: no runs, a run that is not a 2-D classifier.
      CheckpointError: a run without a readable checkpoint.
    """
    if not workdirs:
        raise ConfigError("give at least one run directory to draw")
    if resolution < 10:
        raise ConfigError(f"resolution must be >= 10, got {resolution}")
    runs = [load_run(w, checkpoint) for w in workdirs]
    raws = [input_map(config, experiment.dataset) for config, experiment, *_ in runs]
    lo, hi, xx, yy = _grid(raws, resolution)
    fig = Figure(figsize=(max(4.6 * len(runs), 6.5), 4.8), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    panels = []
    for i, (ax, run, raw) in enumerate(zip(axes, runs, raws, strict=True)):
        title_i = titles[i] if titles else describe_model(run[0])
        panel = _panel(ax, run, raw, xx, yy, title_i)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel("x1")
        if i == 0:
            ax.set_ylabel("x2")
        panels.append({"workdir": os.path.abspath(workdirs[i]), **panel})
    dataset = runs[0][1].dataset.name
    fig.suptitle(
        (title or f"decision regions on {dataset}")
        + "\n(original data units; training points shown, shade = confidence)",
        fontsize=11,
    )
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    result = {
        "figure": os.path.abspath(png_path),
        "dataset": dataset,
        "coordinates": "original data units; the grid is standardized like the training data "
        "before it goes into the model",
        "grid": {"low": lo.tolist(), "high": hi.tolist(), "resolution": resolution},
        "panels": panels,
    }
    with open(os.path.splitext(png_path)[0] + ".json", "w") as f:
        json.dump(result, f, indent=2)
    return result


def hidden_layer_values(config, layers: list[int], width: int | None = None) -> list[tuple]:
    """model.hidden_sizes for MLPs with the given numbers of hidden layers, all of one width.

    Args:
      config: the base config (its model must be an MLP).
      layers: numbers of hidden layers, e.g. [0, 1, 2].
      width: units per hidden layer; default the config's first hidden size, else 16.

    Returns:
      e.g. [(), (16,), (16, 16)].
    """
    if config.model.get("name") != "mlp" or "hidden_sizes" not in config.model:
        raise ConfigError(
            f"--hidden_layers needs model 'mlp' (with hidden_sizes); the config has model "
            f"{config.model.get('name')!r}; use --compare=FIELD=V1,V2,... instead"
        )
    if any(n < 0 for n in layers) or not layers:
        raise ConfigError(f"--hidden_layers must be numbers >= 0, got {layers}")
    if width is None:
        hidden = tuple(config.model.hidden_sizes)
        width = int(hidden[0]) if hidden else 16
    if width < 1:
        raise ConfigError(f"--width must be >= 1, got {width}")
    return [tuple([int(width)] * n) for n in layers]


def train_and_draw(
    config,
    workdir: str,
    axis=None,
    resolution: int = 200,
    checkpoint: str = "latest",
    log=print,
) -> dict:
    """Trains a config (or each value of one swept field) and draws the decision regions.

    Args:
      config: a config of a 2-D classification experiment.
      workdir: where to train; with `axis`, one sub-directory per value (as
        `dl.tools.sweep` lays them out, with its sweep.json/sweep.md).
      axis: a `dl.tools.sweep.Axis` to compare, e.g. model.hidden_sizes over
        (), (16,), (16, 16); None trains the config once.
      resolution: grid points per axis.
      checkpoint: "latest" or "best".
      log: called with progress lines.

    Returns:
      The result of `draw_boundaries` (figure WORKDIR/decision_boundaries.png).

    Raises:
      ConfigError: the data is not 2-D classification data (before anything
        trains), or a bad axis, or no run finished.
    """
    check_config(config)
    png = os.path.join(workdir, "decision_boundaries.png")
    if axis is None:
        runs = RunCounter(1, log)
        runs.start(config.get("name", "") or "experiment", f"training in {workdir}")
        summary = train(config, workdir, stream=runs.stream())
        runs.finish(f"done at step {summary['step']}")
        return draw_boundaries([workdir], png, resolution=resolution, checkpoint=checkpoint)
    points = sweep.plan(config, [axis])
    os.makedirs(workdir, exist_ok=True)
    results = sweep.run_sweep(points, workdir, log)
    metric, direction = sweep.selection_metric(config, points[0].directions)
    sweep.write_results(results, [axis], workdir, config, metric, direction)
    sweep.plot_sweep(results, workdir, metric, config.get("name", ""))
    done = [r for r in results if r["status"] == "done"]
    if not done:
        raise ConfigError("no run of the comparison finished; see sweep.md in " + workdir)
    titles = None
    if axis.field != "model.hidden_sizes":
        short = axis.field.rsplit(".", 1)[-1]
        titles = [f"{short}={sweep.format_value(r['overrides'][axis.field])}" for r in done]
    return draw_boundaries(
        [r["workdir"] for r in done],
        png,
        titles=titles,
        resolution=resolution,
        checkpoint=checkpoint,
        title=f"decision regions: {config.get('name', '') or config.dataset.name}",
    )
