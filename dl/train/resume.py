"""Which config changes a run may be resumed with, and the check that refuses the others."""

from __future__ import annotations

import json

from dl.config import base_config, upgrade
from dl.errors import ConfigError

# Fields that may differ between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {
        "num_train_steps",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "eval_batch_size",
        # A run with checkpoints resumes from its own and ignores init_from.
        "init_from.workdir",
        "init_from.checkpoint",
        "init_from.exclude",
        # Recomputing blocks in the backward pass changes memory, not the variables.
        "model.remat",
        # The devices a run is spread over: a checkpoint restores into any mesh.
        "mesh.data",
        "mesh.fsdp",
    }
)


def config_to_dict(config) -> dict:
    """A ConfigDict as plain JSON types (what config.json and checkpoints store)."""
    return json.loads(config.to_json())


def config_differences(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Fields whose values differ between two config dicts, as 'field: a -> b'.

    >>> config_differences({"seed": 0, "model": {"name": "mlp"}}, {"seed": 1, "model": {}})
    ["model.name: 'mlp' -> '<absent>'", 'seed: 0 -> 1']
    """
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif _normalise(a) != _normalise(b):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _normalise(value):
    return json.loads(json.dumps(value))


def with_defaults(stored: dict, defaults: dict) -> dict:
    """`stored` with the fields it lacks (at any depth) taken from `defaults`.

    A field added to dl's base config after a checkpoint was written had its
    default's behaviour then, so it compares equal to the default.

    >>> with_defaults({"dataset": {"name": "iris"}}, {"seed": 0, "dataset": {"kind": None}})
    {'dataset': {'name': 'iris', 'kind': None}, 'seed': 0}
    """
    out = dict(stored)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
        elif isinstance(default, dict) and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], default)
    return out


def check_resumable(ckpts, config_dict: dict, workdir: str) -> None:
    """Refuses to resume a workdir whose newest readable checkpoint has another config.

    Args:
      ckpts: the workdir's `Checkpoints`.
      config_dict: the current config (`config_to_dict`).
      workdir: named in the message.

    Raises:
      ConfigError: listing every differing field that is not in RESUMABLE_CHANGES.
    """
    defaults = config_to_dict(base_config())
    for step in reversed(ckpts.steps()):
        try:
            stored = upgrade(ckpts.read_meta(step).get("config", {}))
        except Exception:  # noqa: BLE001 -- an unreadable step is reported by restore
            continue
        stored = with_defaults(stored, defaults)
        diffs = [
            d
            for d in config_differences(stored, config_dict)
            if d.split(":")[0] not in RESUMABLE_CHANGES
        ]
        if diffs:
            raise ConfigError(
                f"the config differs from the one checkpoint step {step} in {workdir} was "
                "written with:\n  " + "\n  ".join(diffs) + "\nuse a new --workdir to start "
                "afresh, or resume with the stored config (config.json)"
            )
        return
