"""Starting from another run's weights (`init_from`) and training only some of them (`freeze`).

    config.init_from.workdir = "runs/pretrained"   # any workdir, e.g. one of imported weights
    config.init_from.checkpoint = "best"           # "latest", "best" or a step
    config.init_from.exclude = ("head/.*",)        # left at their fresh initialization
    config.freeze = ("stem_.*", "stage1_.*")       # not trained (their updates are zero)

Patterns are regular expressions matched in full against a leaf's path inside
its collection, `/`-joined: `head/kernel`, `stage4_block2/bn2/scale`, and for
batch statistics `stem_bn/mean` (so `stem_bn/.*` names a layer's parameters
and its statistics together).
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np
from absl import logging

from dl.errors import ConfigError
from dl.train.checkpoint import Checkpoints


def leaf_paths(tree) -> dict[str, object]:
    """`/`-joined path -> leaf of a nested-dict pytree."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        out["/".join(parts)] = leaf
    return out


def _compile(patterns, field: str) -> list[re.Pattern]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ConfigError(f"{field}: {p!r} is not a regular expression: {e}") from None
    return out


def _in_collection(path: str, part: str) -> str:
    """A leaf's path inside its collection: model_state's paths start with the collection."""
    return path.split("/", 1)[-1] if part == "model_state" else path


def _matching(paths, patterns: list[re.Pattern], part: str = "params") -> set[str]:
    return {p for p in paths if any(rx.fullmatch(_in_collection(p, part)) for rx in patterns)}


def _check_used(patterns: list[re.Pattern], paths, field: str) -> None:
    unused = [rx.pattern for rx in patterns if not any(rx.fullmatch(p) for p in paths)]
    if unused:
        shown = ", ".join(sorted(paths)[:12]) + (" ..." if len(paths) > 12 else "")
        raise ConfigError(f"{field} pattern(s) {unused} match no parameter; paths: {shown}")


def freeze_labels(params, patterns) -> object:
    """A pytree like `params` of "frozen" / "trainable" labels (optax.multi_transform's).

    Raises:
      ConfigError: a pattern that is not a regular expression or matches nothing.
    """
    compiled = _compile(patterns, "freeze")
    paths = leaf_paths(params)
    _check_used(compiled, paths, "freeze")
    frozen = _matching(paths, compiled)
    labels = ["frozen" if p in frozen else "trainable" for p in paths]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), labels)


def initial_weights(cfg, state):
    """The parameters and model state of the run `cfg.workdir` names, fitted into `state`'s.

    Args:
      cfg: the config's `init_from` section: workdir, checkpoint, exclude.
      state: a fresh TrainState (its leaves give the shapes, and the values of
        excluded leaves).

    Returns:
      (params, model_state) as host arrays.

    Raises:
      ConfigError: no such workdir or checkpoint, or leaves whose shape differs
        or that the source lacks and that are not excluded (all of them
        listed; nothing is loaded).
    """
    workdir, which = str(cfg.get("workdir", "")), str(cfg.get("checkpoint", "latest") or "latest")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ConfigError(f"init_from.workdir {workdir!r} holds no checkpoints/")
    restored = Checkpoints(workdir, read_only=True).restore(None, which)
    if restored is None:
        raise ConfigError(f"init_from.workdir {workdir!r} has no checkpoint {which!r}")
    source, _, step = restored
    exclude = _compile(tuple(cfg.get("exclude", ()) or ()), "init_from.exclude")
    out, problems = {}, []
    every = set(leaf_paths(state.params)) | {
        _in_collection(p, "model_state") for p in leaf_paths(state.model_state)
    }
    _check_used(exclude, every, "init_from.exclude")
    for part in ("params", "model_state"):
        fresh = leaf_paths(getattr(state, part))
        given = leaf_paths(source.get(part, {}))
        skip = _matching(fresh, exclude, part)
        values = []
        for path, leaf in fresh.items():
            if path in skip:
                values.append(np.asarray(jax.device_get(leaf)))
            elif path not in given:
                problems.append(f"{part}/{path}: absent in {workdir}")
            elif np.shape(given[path]) != np.shape(leaf):
                problems.append(f"{part}/{path}: {np.shape(given[path])} -> {np.shape(leaf)}")
            else:
                values.append(np.asarray(given[path], dtype=np.asarray(leaf).dtype))
        out[part] = values
        extra = sorted(set(given) - set(fresh))
        if extra:
            logging.warning("init_from: %d leaves of %s are not used: %s", len(extra), part, extra)
    if problems:
        raise ConfigError(
            f"init_from {workdir!r} (step {step}) does not fit this model; nothing was loaded. "
            "Leaves to exclude (init_from.exclude) or to match:\n  " + "\n  ".join(problems)
        )
    structure = {p: jax.tree_util.tree_structure(getattr(state, p)) for p in out}
    params, model_state = (jax.tree_util.tree_unflatten(structure[p], out[p]) for p in structure)
    return params, model_state
