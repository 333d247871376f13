"""The learning-rate range test: raise the rate exponentially until the loss diverges.

Starting from the workdir's latest checkpoint (or a fresh initialization),
a copy of the parameters is trained for up to `num_steps` steps with the
experiment's own optimizer chain (clipping, weight decay, optimizer: built
by `dl.train.make_optimizer` from the config with its schedule replaced by
an exponential ramp from `min_lr` to `max_lr`) and the framework's
`train_step` on the experiment's batches. The optimizer state of the copy
starts fresh at step 0, so the ramp's rate is exactly `lr(k) = min_lr *
(max_lr / min_lr) ** (k / (num_steps - 1))` at step k.

The loss of each step is smoothed online by an exponential moving average
with bias correction, `s_k = EMA_beta(loss)_k / (1 - beta ** (k + 1))`, and
the test stops once `s_k > divergence_factor * min(s)` or the loss is not
finite. The EMA trails the loss by about 1 / (1 - beta) steps (on the ramp,
a shift to higher rates), so the curve the suggestion is read from, and
that lr_find.json reports as `smoothed_losses`, is the same EMA run forwards
and then backwards, which has no lag.

Suggested rate (`rule`):
  - "min_over_10" (default): the rate at the minimum of the smoothed loss,
    divided by 10. At the minimum the loss is about to blow up; a tenth of
    it is still fast and on the stable side.
  - "steepest": the rate where the smoothed loss falls fastest per decade
    of rate (most negative d s / d log lr), before the minimum and after
    the first 1 / (1 - beta) steps (where the smoothing has no slope yet).
Both are reported; BUILD_NOTES.md ("Research tools") compares them with
the best rate of a sweep.

The state passed in is never given to a donating call: the range test runs
on copies, and `find_learning_rate` checks, leaf by leaf and bit for bit,
that the state is what it was before (`trees_equal`).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from dl.errors import ConfigError
from dl.reporting import Progress
from dl.train import Checkpoints, Feeder, build, device_arrays
from dl.train.sharding import to_host
from dl.train.state import restart

RULES = ("min_over_10", "steepest")
CHECK_EVERY = 10  # steps between reads of the losses from the device


def ramp_config(config, min_lr: float, max_lr: float, num_steps: int):
    """A copy of `config` whose schedule is the exponential ramp of the range test."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.optimizer.learning_rate = float(min_lr)
        c.schedule = ml_collections.ConfigDict(
            dict(
                name="exponential",
                transition_steps=int(num_steps) - 1,
                decay_rate=float(max_lr) / float(min_lr),
                staircase=False,
            )
        )
        c.num_train_steps = int(num_steps)
        c.steps_per_call = 1  # the range test reads the loss of every step
    return c


def _host_copy(tree):
    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), to_host(tree))


def place(tree, experiment):
    """Fresh device copies of a tree, placed as the experiment's training places its state."""
    return experiment.place(_host_copy(tree))


def trees_equal(a, b) -> bool:
    """True if two pytrees have the same structure and bitwise equal leaves (dtype, shape)."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = to_host(x), to_host(y)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def tree_digest(tree) -> str:
    """SHA-256 over a pytree's structure, dtypes, shapes and bytes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for x in leaves:
        x = to_host(x)
        h.update(f"{x.dtype}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def ema(losses, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average of a loss sequence (the online smoothing)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out.append(avg / (1.0 - beta ** (i + 1)))
    return np.asarray(out)


def smooth(losses, beta: float) -> np.ndarray:
    """The EMA run forwards, then backwards over the result: smoothing without lag.

    The online EMA trails the loss by about 1 / (1 - beta) steps, which on an
    exponential ramp moves its minimum to higher rates; the backward pass
    cancels that shift, so the suggestion is taken from this curve.
    """
    finite = [float(v) for v in losses if math.isfinite(float(v))]
    if not finite:
        return np.asarray([float("nan")] * len(losses))
    forward = ema(finite, beta)
    both = ema(forward[::-1], beta)[::-1]
    return np.concatenate([both, [float("nan")] * (len(losses) - len(finite))])


def suggest(rates, smoothed, edge: int = 0) -> dict:
    """Suggested rates by both rules from the rates and smoothed losses of a range test.

    Args:
      rates: the learning rate of each step.
      smoothed: the smoothed loss of each step.
      edge: steps at the start that the steepest-descent rule skips (where
        the smoothing has seen too few losses to give a slope).

    Returns:
      {"min_loss_learning_rate", "min_over_10", "steepest"}.
    """
    rates, smoothed = np.asarray(rates, np.float64), np.asarray(smoothed, np.float64)
    finite = np.isfinite(smoothed)
    if not finite.any():
        raise ConfigError("the range test produced no finite loss; lower --min_lr")
    i_min = int(np.nanargmin(np.where(finite, smoothed, np.nan)))
    out = {
        "min_loss_learning_rate": float(rates[i_min]),
        "min_over_10": float(rates[i_min] / 10.0),
    }
    first = edge if i_min - edge >= 2 else 0
    if i_min - first >= 2:
        part = slice(first, i_min + 1)
        slope = np.gradient(smoothed[part], np.log(rates[part]))
        out["steepest"] = float(rates[first + int(np.argmin(slope))])
    else:
        out["steepest"] = float(rates[i_min])
    return out


def find_learning_rate(
    experiment,
    state,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 200,
    beta: float = 0.9,
    divergence_factor: float = 4.0,
    rule: str = "min_over_10",
    stream=None,
) -> dict:
    """Runs the range test on a copy of `state` and checks that `state` is unchanged.

    Args:
      experiment: `dl.train.build(config)` of the experiment.
      state: the TrainState to start from (left exactly as it is).
      min_lr: first rate of the ramp.
      max_lr: last rate of the ramp.
      num_steps: steps of the ramp (the test may stop earlier on divergence).
      beta: smoothing of the loss (0 for none).
      divergence_factor: stop once the smoothed loss exceeds this times its minimum.
      rule: "min_over_10" or "steepest" (see the module docstring).
      stream: where progress goes (stdout by default): a bar on a terminal,
        else a line with the steps done, rate and smoothed loss at every
        tenth of the ramp, and the reason the test stopped.

    Returns:
      {"learning_rates", "losses", "smoothed_losses", "suggestion", "rule",
      "stopped", "steps_run", ...}.

    Raises:
      ConfigError: bad arguments.
      RuntimeError: the state changed (never expected; the check is the proof).
    """
    _check_args(min_lr, max_lr, num_steps, beta, divergence_factor, rule)
    before = _host_copy(state)
    feeder, work = _ramp_feeder(experiment, state, min_lr, max_lr, num_steps)
    watch = _Watch(beta, divergence_factor)
    stopped = _ramp(feeder, work, num_steps, watch, Progress(num_steps, stream=stream))
    done = stopped is not None
    stopped = stopped or f"reached max_lr after {num_steps} steps"
    rates, losses = watch.rates, watch.losses

    smoothed = smooth(losses, beta)
    rates_found = suggest(rates, smoothed, edge=int(round(1.0 / (1.0 - beta))))
    if not trees_equal(before, state):
        raise RuntimeError("the range test changed the state it was given")
    warnings = []
    if not done and rates_found["min_loss_learning_rate"] >= rates[-1] * 0.999:
        warnings.append(
            "the loss was still falling at --max_lr, so the minimum is not known; "
            "raise --max_lr for a meaningful suggestion"
        )
    return {
        "warnings": warnings,
        "min_lr": float(min_lr),
        "max_lr": float(max_lr),
        "num_steps": int(num_steps),
        "steps_run": len(losses),
        "beta": float(beta),
        "divergence_factor": float(divergence_factor),
        "stopped": stopped,
        "rule": rule,
        "suggestion": rates_found[rule],
        **{k: v for k, v in rates_found.items() if k not in RULES},
        "suggestions": {r: rates_found[r] for r in RULES},
        "learning_rates": rates,
        "losses": [loss if math.isfinite(loss) else str(loss) for loss in losses],
        "smoothed_losses": [s if math.isfinite(s) else str(s) for s in smoothed.tolist()],
    }


class _Watch:
    """The losses of the range test so far, smoothed online, and the test's stop rule."""

    def __init__(self, beta: float, divergence_factor: float):
        self.beta, self.factor = beta, divergence_factor
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.avg, self.smoothed, self.best = 0.0, math.nan, math.inf

    def add(self, lr: float, loss: float) -> str | None:
        """Adds one step's rate and loss; returns why the test stops, if it does."""
        k = len(self.losses)
        self.rates.append(lr)
        self.losses.append(loss)
        if not math.isfinite(loss):
            return f"loss not finite at step {k} (learning rate {lr:.3g})"
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss
        self.smoothed = self.avg / (1.0 - self.beta ** (k + 1))
        self.best = min(self.best, self.smoothed)
        if k > 0 and self.smoothed > self.factor * self.best:
            return (
                f"diverged at step {k} (learning rate {lr:.3g}): smoothed loss "
                f"{self.smoothed:.4g} > {self.factor:g} x minimum {self.best:.4g}"
            )
        return None


def _ramp_feeder(experiment, state, min_lr: float, max_lr: float, num_steps: int):
    """The range test's compiled step and a fresh device copy of `state` to train.

    Returns:
      (Feeder of the ramp experiment, the copy at step 0 with a fresh optimizer state).
    """
    config = experiment.config
    ramp = build(ramp_config(config, min_lr, max_lr, num_steps))
    work = place(restart(state, ramp.steps.tx), experiment)
    feeder = Feeder(
        ramp,
        device_arrays(ramp.dataset, ramp.mesh)["train"],
        batch_size=int(config.batch_size),
        steps_per_call=1,
        seed=int(config.seed),
    )
    feeder.compile(work)
    return feeder, work


def _ramp(feeder, work, num_steps: int, watch, progress) -> str | None:
    """Trains `work` up the ramp until the last step or until `watch` sees divergence.

    Returns:
      Why the test stopped early, or None if it ran every step.
    """
    every = max(CHECK_EVERY, num_steps // 10)
    next_line, pending, stopped = every, [], None
    for step in range(num_steps):
        work, metrics = feeder(work)
        pending.append((metrics["learning_rate"], metrics["loss"]))
        progress.update(step + 1)
        if len(pending) < CHECK_EVERY and step < num_steps - 1:
            continue
        for lr, loss in jax.device_get(pending):
            stopped = watch.add(float(lr), float(loss))
            if stopped:
                break
        pending.clear()
        if stopped:
            break
        if len(watch.losses) >= next_line:
            progress.update(step + 1, {"lr": watch.rates[-1], "smoothed_loss": watch.smoothed})
            next_line += every
    progress.log(f"range test: {stopped or f'reached max_lr after {num_steps} steps'}")
    progress.close()
    return stopped


_CHECKED = ("min_lr", "max_lr", "num_steps", "beta", "divergence_factor", "rule")


def _check_args(min_lr, max_lr, num_steps, beta, divergence_factor, rule) -> None:
    if not (min_lr > 0 and math.isfinite(min_lr)):
        raise ConfigError(f"--min_lr must be a finite number > 0, got {min_lr}")
    if not (max_lr > min_lr and math.isfinite(max_lr)):
        raise ConfigError(
            f"--max_lr must be a finite number larger than --min_lr ({min_lr}), got {max_lr}"
        )
    if num_steps < 10:
        raise ConfigError(f"--num_steps must be at least 10, got {num_steps}")
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"--smoothing must be in [0, 1), got {beta}")
    if not divergence_factor > 1.0:
        raise ConfigError(f"--divergence_factor must be > 1, got {divergence_factor}")
    if rule not in RULES:
        raise ConfigError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")


def start_state(experiment, workdir: str):
    """The workdir's latest checkpoint if it has one, else a fresh initialization.

    Returns:
      (state, description of where it came from).
    """
    if workdir and os.path.isdir(os.path.join(workdir, "checkpoints")):
        restored = Checkpoints(workdir, read_only=True).restore(experiment.abstract_state())
        if restored is not None:
            state, _, step = restored
            return state, f"checkpoint step {step} of {os.path.abspath(workdir)}"
    seed = int(experiment.config.seed)
    return experiment.placed_init_state(), f"fresh initialization (seed {seed})"


def plot_range_test(result: dict, path: str, title: str = "") -> None:
    """Loss against learning rate (log scale), raw and smoothed, with the suggestion."""
    rates = np.asarray(result["learning_rates"], np.float64)
    raw = np.asarray([float(v) for v in result["losses"]], np.float64)
    smoothed = np.asarray([float(v) for v in result["smoothed_losses"]], np.float64)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(rates, raw, color="0.75", linewidth=1, label="loss per step")
    ax.plot(rates, smoothed, color="C0", linewidth=2, label="smoothed loss")
    ax.axvline(
        result["suggestion"],
        color="C2",
        linestyle="--",
        label=f"suggested {result['suggestion']:.3g} ({result['rule']})",
    )
    other = [r for r in RULES if r != result["rule"]][0]
    ax.axvline(
        result["suggestions"][other],
        color="C1",
        linestyle=":",
        label=f"{other} {result['suggestions'][other]:.3g}",
    )
    i_min = int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.nan)))
    ax.plot(rates[i_min], smoothed[i_min], "o", color="C3", label=f"minimum at {rates[i_min]:.3g}")
    finite = np.concatenate([raw[np.isfinite(raw)], smoothed[np.isfinite(smoothed)]])
    if finite.size:
        top = max(smoothed[0], np.median(finite)) * 1.5 if np.isfinite(smoothed[0]) else None
        bottom = finite.min()
        if top is not None and top > bottom:
            pad = 0.05 * (top - bottom)
            ax.set_ylim(bottom - pad, top)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def lr_find(config, workdir: str, **kwargs) -> dict:
    """Runs the range test for `config`, starting from `workdir`'s latest checkpoint if any.

    Writes WORKDIR/lr_find.json and WORKDIR/lr_find.png; checkpoints and
    other files in the workdir are not touched.

    Args:
      config: the experiment config.
      workdir: where to start from and write to (created if missing).
      **kwargs: options of `find_learning_rate`.

    Returns:
      The lr_find.json content.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir!r} is a file, not a directory")
    # The options as find_learning_rate will take them, checked before anything is built.
    options = inspect.signature(find_learning_rate).bind_partial(None, None, **kwargs)
    options.apply_defaults()
    _check_args(**{k: v for k, v in options.arguments.items() if k in _CHECKED})
    experiment = build(config)
    state, start = start_state(experiment, workdir)
    digest_before = tree_digest(state)
    result = find_learning_rate(experiment, state, **kwargs)
    digest_after = tree_digest(state)
    result = {
        "name": config.get("name", ""),
        "start": start,
        "state_sha256_before": digest_before,
        "state_sha256_after": digest_after,
        "state_unchanged": digest_before == digest_after,
        **result,
    }
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "lr_find.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot_range_test(
        result,
        os.path.join(workdir, "lr_find.png"),
        f"range test: {config.get('name', '') or 'experiment'} ({config.optimizer.name})",
    )
    return result
