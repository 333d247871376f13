"""Training metrics accumulated on the host between two log events."""

from __future__ import annotations

import jax
import numpy as np


class TrainWindow:
    """Sums of the training metrics of the steps since the last log event.

    Non-finite steps (skipped updates) are counted apart and left out of the
    means. In a float16 run, steps whose scaled gradients overflowed count in
    the loss and metrics but not in the gradient norm (`overflow_steps`), and
    the window reports the last loss scale.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.steps, self.loss, self.grad_norm, self.lr = 0, 0.0, 0.0, float("nan")
        self.sums: dict[str, list[float]] = {}
        self.skipped = 0
        self.overflows, self.loss_scale = 0, None

    def add(self, metrics) -> dict | None:
        """Adds host metrics of one call (K steps); returns the first non-finite step, if any.

        Args:
          metrics: the call's metrics, as numpy values (scalars, or [K] arrays).

        Returns:
          None, or {"step", "loss", "grad_norm"} of the first non-finite step.
        """
        metrics = jax.tree_util.tree_map(np.atleast_1d, metrics)
        finite = metrics["finite"]
        bad = None
        for i in range(len(finite)):
            if not finite[i]:
                self.skipped += 1
                if bad is None:
                    bad = {
                        "step": int(metrics["step"][i]),
                        "loss": float(metrics["loss"][i]),
                        "grad_norm": float(metrics["grad_norm"][i]),
                    }
                continue
            self.steps += 1
            self.loss += float(metrics["loss"][i])
            if "overflow" in metrics and metrics["overflow"][i]:
                self.overflows += 1  # no update was taken: its gradient norm is inf
            else:
                self.grad_norm += float(metrics["grad_norm"][i])
            for k, (n, d) in metrics["sums"].items():
                acc = self.sums.setdefault(k, [0.0, 0.0])
                acc[0] += float(n[i])
                acc[1] += float(d[i])
        self.lr = float(metrics["learning_rate"][-1])
        if "loss_scale" in metrics:
            self.loss_scale = float(metrics["loss_scale"][-1])
        return bad

    def state_dict(self) -> dict:
        """The sums, in JSON types ({} for an empty window); floats round-trip exactly."""
        if not (self.steps or self.skipped):
            return {}
        return {
            "steps": self.steps,
            "skipped": self.skipped,
            "loss": _json_float(self.loss),
            "grad_norm": _json_float(self.grad_norm),
            "learning_rate": _json_float(self.lr),
            "sums": {k: [_json_float(n), _json_float(d)] for k, (n, d) in self.sums.items()},
            "overflows": self.overflows,
            "loss_scale": self.loss_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores `state_dict()`; {} (or a checkpoint from before windows were saved)
        restores an empty window."""
        self.reset()
        if not state:
            return
        self.steps, self.skipped = int(state["steps"]), int(state["skipped"])
        self.loss, self.grad_norm = float(state["loss"]), float(state["grad_norm"])
        self.lr = float(state["learning_rate"])
        self.sums = {k: [float(n), float(d)] for k, (n, d) in state["sums"].items()}
        self.overflows, self.loss_scale = int(state.get("overflows", 0)), state.get("loss_scale")

    def result(self) -> dict:
        """The window's means: task metrics, loss, grad_norm, learning_rate, skipped_steps."""
        out = {k: n / d if d else float("nan") for k, (n, d) in self.sums.items()}
        if self.steps:
            out["loss"] = self.loss / self.steps
            taken = self.steps - self.overflows
            out["grad_norm"] = self.grad_norm / taken if taken else float("nan")
        out["learning_rate"] = self.lr
        if self.loss_scale is not None:
            out["loss_scale"] = self.loss_scale
        if self.overflows:
            out["overflow_steps"] = self.overflows
        if self.skipped:
            out["skipped_steps"] = self.skipped
        return out


def _json_float(x: float):
    """A float for JSON: itself if finite, else "nan", "inf" or "-inf" (float() reads them)."""
    x = float(x)
    return x if np.isfinite(x) else str(x)
