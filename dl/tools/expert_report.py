"""Which expert of a mixture handles which group of examples."""

from __future__ import annotations

import os

import jax
import numpy as np

from dl.errors import ConfigError
from dl.models.modular import MixtureOfExperts, expert_specialisation, gate_probabilities
from dl.train.evaluation import restore_run

CHUNK = 4096  # examples per forward pass


def _group_names(exp, group_by: str, count: int) -> list[str]:
    info = exp.dataset.info
    names = info.get("problems") if group_by == "problem_id" else None
    if group_by == "y":
        names = info.get("classes")
    if names and len(names) >= count:
        return [str(n) for n in names[:count]]
    return [str(i) for i in range(count)]


def _gates(exp, state, fields: dict) -> tuple[np.ndarray, np.ndarray]:
    """Gate probabilities [examples, experts] and whether each example is classified right.

    Correctness is NaN where the task predicts no class labels.
    """
    variables = {"params": state.params, **state.model_state}
    inputs = exp.task.inputs(fields)
    gate, correct = [], []
    apply = jax.jit(lambda v, *a: exp.model.apply(v, *a, train=False))
    for start in range(0, len(fields["y"]), CHUNK):
        chunk = tuple(a[start : start + CHUNK] for a in inputs)
        gate.append(np.asarray(gate_probabilities(exp.model, variables, *chunk)))
        outputs = apply(variables, *chunk)
        labels = np.asarray(exp.task.labels(outputs)) if hasattr(exp.task, "labels") else None
        y = fields["y"][start : start + CHUNK]
        correct.append(labels == y if labels is not None else np.full(len(y), np.nan))
    return np.concatenate(gate), np.concatenate(correct).astype(np.float64)


def expert_report(
    workdir: str, checkpoint: str = "latest", split: str = "test", group_by: str = "problem_id"
) -> dict:
    """Mean gate probability of each expert per group of examples.

    Args:
      workdir: a run directory of a mixture-of-experts experiment (model 'moe').
      checkpoint: "latest", "best" or a step number.
      split: "train", "validation" or "test".
      group_by: integer field [examples] of the split that names each
        example's group (e.g. "problem_id" or "y").

    Returns:
      The report: `table` [groups, experts] of mean gate probabilities (rows
      sum to 1), `top_counts` [groups, experts] (how many examples of each
      group have each expert as their largest gate probability), and per
      group its name, examples, accuracy and top expert.
    """
    _, exp, state, step = restore_run(workdir, checkpoint)
    if not isinstance(exp.model, MixtureOfExperts):
        raise ConfigError(
            f"the model of {workdir!r} is {type(exp.model).__name__}; the expert report "
            "needs a mixture of experts (model 'moe')"
        )
    fields = exp.dataset.splits[split]
    if group_by not in fields:
        raise ConfigError(
            f"--group_by={group_by!r} is not a field of the {split} split; its fields: "
            f"{', '.join(sorted(fields))}"
        )
    groups = np.asarray(fields[group_by])
    if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer) or groups.min() < 0:
        raise ConfigError(
            f"--group_by={group_by!r} must be a field of non-negative integers [examples], "
            f"got {groups.dtype} {groups.shape}"
        )
    gate, correct = _gates(exp, state, fields)
    num_groups, num_experts = int(groups.max()) + 1, gate.shape[1]
    table = expert_specialisation(gate, groups, num_groups)  # [groups, experts]
    top_counts = np.zeros((num_groups, num_experts), np.int64)
    np.add.at(top_counts, (groups, np.argmax(gate, axis=1)), 1)
    names = _group_names(exp, group_by, num_groups)
    rows = []
    for g in range(num_groups):
        members = groups == g
        rows.append(
            {
                "group": g,
                "name": names[g],
                "examples": int(members.sum()),
                "accuracy": float(correct[members].mean()) if members.any() else None,
                "gate": [round(float(p), 4) for p in table[g]],
                "top_expert": int(np.argmax(table[g])),
                "top_share": round(float(table[g].max()), 4),
            }
        )
    tops = [r["top_expert"] for r in rows if r["examples"]]
    return {
        "workdir": os.path.abspath(workdir),
        "checkpoint": checkpoint,
        "step": step,
        "split": split,
        "group_by": group_by,
        "experts": num_experts,
        "groups": rows,
        "table": table.round(4).tolist(),
        "top_counts": top_counts.tolist(),
        "distinct_top_experts": len(set(tops)) == len(tops),
    }


def format_table(report: dict) -> str:
    """The report as a text table, one row per group."""
    experts = [f"expert_{e}" for e in range(report["experts"])]
    width = max([len(r["name"]) for r in report["groups"]] + [len(report["group_by"])])
    head = f"{report['group_by']:<{width}}  examples  accuracy  " + "  ".join(experts) + "  top"
    lines = [head]
    for r in report["groups"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        cells = "  ".join(f"{p:>{len(e)}.3f}" for p, e in zip(r["gate"], experts, strict=True))
        lines.append(
            f"{r['name']:<{width}}  {r['examples']:>8}  {acc:>8}  {cells}  expert_{r['top_expert']}"
        )
    return "\n".join(lines)
