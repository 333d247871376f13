"""Restoring a training run from its workdir and evaluating it (read-only).

Shared by the binaries that read runs (`experiments.evaluate`, `decode`,
`sample_text`, `expert_report`, ...): the config stored in the workdir
rebuilds the experiment, and a checkpoint is restored into it without
writing anything.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
from absl import logging

from dl.config import upgrade
from dl.errors import ConfigError
from dl.reporting import figures
from dl.train.checkpoint import CheckpointError, Checkpoints
from dl.train.experiment import build
from dl.train.sharding import mesh_shape
from dl.train.stream_feeder import evaluator_for


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run's workdir stores (config.json), in today's layout.

    Raises:
      ConfigError: the workdir does not exist, or its config.json is missing
        or is not a config (invalid JSON, or not a JSON object of fields).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir!r} does not exist")
    if not os.path.isfile(path):
        raise ConfigError(
            f"--workdir {workdir!r} has no config.json: it is not a directory written by "
            "experiments.train"
        )
    try:
        with open(path) as f:
            stored = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} cannot be read as JSON: {e}") from None
    missing = (
        [k for k in ("dataset", "model", "task") if k not in stored]
        if isinstance(stored, dict)
        else ["dataset", "model", "task"]
    )
    if missing:
        raise ConfigError(
            f"{path} is not a dl config: it lacks {', '.join(missing)} (a JSON object with "
            "the fields of dl/config.py is expected)"
        )
    return ml_collections.ConfigDict(upgrade(stored))


def fit_mesh(config) -> ml_collections.ConfigDict:
    """A stored run's config with a mesh that fits the devices at hand (to read the run).

    The run's own mesh (`mesh.data` x `mesh.fsdp`) where it fits the device
    count at hand (`jax.device_count()`), else the default all-data mesh: a checkpoint
    restores into any mesh (each array gets the shardings of the mesh it is
    read on), so a run trained on 8 devices evaluates on 1.
    """
    stored = config.get("mesh", None)
    try:
        mesh_shape(stored, jax.device_count())
        return config
    except ConfigError:
        pass
    logging.info(
        "the run's mesh %s does not fit the %d devices here: reading it with the all-data mesh",
        dict(stored),
        jax.device_count(),
    )
    with config.unlocked():
        config.mesh = ml_collections.ConfigDict(dict(data=0, fsdp=1))
    return config


def restore_run(
    workdir: str, checkpoint="latest", *, model=None, dataset=None, task=None, dataset_fields=None
):
    """Rebuilds a run's experiment from its config.json and restores a checkpoint.

    Args:
      workdir: a directory written by `dl.train.train`.
      checkpoint: "latest", "best" or a step number.
      model, dataset, task: objects handed to `dl.train.train` in place of
        names (needed where config.json records them without an import path).
      dataset_fields: fields replacing those of the stored dataset section.

    Returns:
      (config, experiment, state, step).

    Raises:
      ConfigError: workdir is not a run directory or checkpoint is malformed.
      CheckpointError: no checkpoint could be restored.
    """
    config = fit_mesh(read_run_config(workdir))
    check_checkpoint(checkpoint)
    if dataset_fields:
        with config.unlocked():
            config.dataset.update(dict(dataset_fields))
    exp = build(config, model=model, dataset=dataset, task=task)
    state, step = restore_checkpoint(workdir, exp, checkpoint)
    return config, exp, state, step


WEIGHTS = ("params", "ema")


def check_weights(weights: str) -> None:
    """Refuses weights that are not "params" or "ema"."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {WEIGHTS}, got {weights!r}")


def check_checkpoint(checkpoint) -> None:
    """Refuses a checkpoint that is not "latest", "best" or a step number."""
    if checkpoint not in ("latest", "best") and not str(checkpoint).isdigit():
        raise ConfigError(
            f"--checkpoint must be 'latest', 'best' or a step number, got {checkpoint!r}"
        )


def restore_checkpoint(workdir: str, exp, checkpoint="latest"):
    """Restores a checkpoint of `workdir` into an experiment's state (read-only).

    Returns:
      (state, step).

    Raises:
      CheckpointError: no checkpoint could be restored.
    """
    restored = Checkpoints(workdir, read_only=True).restore(exp.abstract_state(), checkpoint)
    if restored is None:
        where = "best" if checkpoint == "best" else "checkpoints"
        raise CheckpointError(f"no checkpoint in {os.path.join(workdir, where)}")
    state, _, step = restored
    return state, step


def evaluate(
    workdir: str,
    checkpoint: str = "latest",
    split: str = "test",
    figures: bool = True,
    *,
    dataset_fields: dict | None = None,
    weights: str = "params",
) -> dict:
    """Restores a checkpoint of `workdir` and evaluates it on `split`.

    Args:
      workdir: the run's directory.
      checkpoint: "latest", "best" or a step number.
      split: "train", "validation" or "test".
      figures: also write figures (confusion matrix, conv kernels and maps).
      dataset_fields: fields that replace those of the run's dataset section
        (e.g. {"name": "images:/data/val", "image_size": 224}): evaluates the
        run's model on other data.
      weights: "params", or "ema" for the moving average of the parameters.

    Returns:
      The metrics, with the checkpoint's step. A file that cannot be written
      (a read-only or full workdir) is left out with a logged warning naming
      it and the OS error; the metrics are returned all the same.

    Raises:
      ConfigError: also when the split has no examples.
    """
    check_weights(weights)
    config, exp, state, step = restore_run(workdir, checkpoint, dataset_fields=dataset_fields)
    if weights == "ema":
        state = state.with_ema_weights()
    sizes = exp.dataset.info.get("sizes", {})
    if sizes.get(split, 1) == 0:
        raise ConfigError(
            f"the {split} split of dataset {exp.dataset.name!r} has no examples (split sizes "
            f"{sizes}); evaluate another --split, or other data (--dataset.name=...)"
        )
    evaluator = evaluator_for(exp, int(config.get("eval_batch_size", 256)))
    metrics = evaluator(state, split)
    result = {
        "workdir": os.path.abspath(workdir),
        "checkpoint": checkpoint,
        "step": step,
        "split": split,
        "weights": weights,
        "dataset": exp.dataset.name,
        **metrics,
    }
    if figures:
        result["figures"] = _figures(exp, evaluator, state, split, workdir)
    path = os.path.join(workdir, f"eval_{split}.json")
    write_or_warn(path, lambda: write_json(path, result))
    return result


def write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def write_or_warn(what: str, write, default=None):
    """write(), or `default` with a warning naming `what` and the OS error if it fails.

    The metrics of an evaluation are its result; a workdir that cannot be
    written (read-only, full) loses the files, not the metrics.
    """
    try:
        return write()
    except OSError as e:
        logging.warning("could not write %s: %s", what, e)
        return default


def _figures(exp, evaluator, state, split: str, workdir: str) -> list[str]:
    """The task's figures of the split, and the first conv layer's kernels and feature maps.

    Returns:
      The files written (those that could not be are warned about).
    """
    outputs, predictions = evaluator.predict(state, split)
    # A streamed split is not in memory: its fields but x, and x's first example.
    data = getattr(evaluator, "fields", None) or exp.dataset.splits[split]
    written = write_or_warn(
        f"the {split} figures in {workdir}",
        lambda: exp.task.figures(outputs, predictions, data, split, workdir),
        [],
    )
    if data["x"].ndim == 4:  # images: the model's first conv layer, if it has one
        variables = {"params": state.params, **state.model_state}
        conv = os.path.join(workdir, "conv")
        written += write_or_warn(
            f"the conv figures {conv}_*.png",
            lambda: figures.save_conv_figures(exp.model, variables, data["x"][0], conv),
            [],
        )
    return written
