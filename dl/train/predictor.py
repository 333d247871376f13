"""`dl.load`: a trained run as a predictor of new raw inputs, and its export with jax.export.

`load(workdir)` rebuilds the model from the config a workdir stores and the
task from its saved preprocessing (WORKDIR/preprocessing.npz, written with
the run's first checkpoint), restores the parameters and the model state of a
checkpoint, and prepares raw inputs as training prepared its data (resized
where the loader resized, standardized with the training statistics). The
dataset is not loaded, except for runs written before the preprocessing was
saved: those recompute it from the stored config, with a warning.

    predictor = dl.load("runs/mlp_digits", "best")
    predictor.predict(raw_x)    # {"probabilities": [n, 10], "labels": [n]}
    predictor.apply(raw_x)      # the model's raw outputs [n, 10]
    exported, description = export(predictor)   # preprocessing + model + task
"""

from __future__ import annotations

import os
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from dl.data import Dataset, load_dataset
from dl.data.arrays import check_finite
from dl.data.preprocessing import FILE, Preprocessing
from dl.errors import ConfigError
from dl.models import fast_paths
from dl.train.evaluation import (
    check_checkpoint,
    check_weights,
    fit_mesh,
    read_run_config,
    restore_checkpoint,
)
from dl.train.experiment import Experiment, assemble
from dl.train.sharding import to_host

# Facts of the preprocessing that the export's description repeats (to read its outputs).
FACTS = ("classes", "class_names", "tgt_vocab", "vocab", "feature_columns")


def load(
    workdir: str, checkpoint="latest", *, weights="params", model=None, dataset=None, task=None
) -> Predictor:
    """A trained run, ready to predict on new raw inputs.

    Args:
      workdir: a directory written by `dl.train.train`.
      checkpoint: "latest", "best" or a step number.
      weights: "params", or "ema" for the moving average of the parameters
        (runs trained with ema.decay > 0).
      model, dataset, task: objects handed to `dl.train.train` in place of
        names, needed again where config.json records them by a marker. The
        dataset is needed only for runs without preprocessing.npz.

    Returns:
      The Predictor.

    Raises:
      ConfigError: not a run directory, a malformed checkpoint, or a marker
        whose object was not handed in.
      CheckpointError: no checkpoint could be restored.

    >>> import io, tempfile
    >>> from dl.config import base_config
    >>> from dl.data import raw_splits
    >>> from dl.train import train
    >>> config = base_config()
    >>> config.model.hidden_sizes, config.num_train_steps = (32,), 100
    >>> config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 100
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train(config, workdir, stream=io.StringIO())
    >>> predictor = load(workdir)
    >>> raw = raw_splits(config.dataset)["test"]["x"]  # [359, 8, 8, 1], pixel values 0..16
    >>> out = predictor.predict(raw[:5])
    >>> predictor.step, out["probabilities"].shape, out["labels"].shape
    (100, (5, 10), (5,))
    """
    config = fit_mesh(read_run_config(workdir))
    check_checkpoint(checkpoint)
    check_weights(weights)
    prep, data = _preprocessing(workdir, config, dataset)
    exp = assemble(config, data, model=model, task=task)
    state, step = restore_checkpoint(workdir, exp, checkpoint)
    if weights == "ema":
        state = state.with_ema_weights()
    return Predictor(config, exp, state, step, prep)


def _preprocessing(workdir: str, config, dataset) -> tuple[Preprocessing, Dataset]:
    """The run's preprocessing and a dataset to build its task on (a stand-in if it can)."""
    path = os.path.join(workdir, FILE)
    if os.path.isfile(path):
        prep = Preprocessing.load(path)
        return prep, stand_in(prep, config.dataset.name)
    logging.warning(
        "%s has no %s (written before runs saved it); recomputing it from the stored config's "
        "dataset %r",
        workdir,
        FILE,
        config.dataset.name,
    )
    data = load_dataset(config.dataset, dataset)
    return data.preprocessing, data


def stand_in(prep: Preprocessing, name: str) -> Dataset:
    """A Dataset that builds the run's task and model without the data, from its preprocessing.

    Its training split holds one example of zeros per field, with the shapes
    and dtypes of the run's training data; its info holds the facts the
    tasks read (classes, vocabularies, the scale of regression targets).

    Raises:
      ConfigError: the preprocessing records no field shapes.
    """
    fields = prep.info.get("fields")
    if not fields or "kind" not in prep.info:
        raise ConfigError(
            f"the preprocessing of dataset {name!r} records no field shapes or kind; delete "
            f"{FILE} from the workdir to recompute it from the dataset"
        )
    train = {k: np.zeros((1, *v["shape"]), v["dtype"]) for k, v in fields.items()}
    info = dict(prep.info)
    if prep.y_mean is not None:
        info["target_scale"] = {"mean": prep.y_mean.tolist(), "std": prep.y_std.tolist()}
    name = prep.info.get("dataset", name)
    return Dataset(name, {"train": train}, info["kind"], info.get("num_classes"), info, prep)


class Predictor:
    """A restored run that predicts on new raw inputs.

    Inputs are batched in chunks of the config's `eval_batch_size`; each
    call is jit-compiled once per chunk shape. An input `x` is an array of
    raw examples [n, ...] (before resizing and standardization), a list of
    strings for token models (seq2seq sources, char-LM prompts), or a dict
    of fields (graphs: x, senders, receivers, n_node, n_edge).

    Attributes:
      config: the run's config.
      params: the restored parameters.
      model_state: the restored mutable collections (batch_stats), or {}.
      model: the flax module.
      task: the task (its `infer` and `describe` make the predictions).
      preprocessing: what training fitted (dl.data.Preprocessing).
      step: the checkpoint's step.
    """

    def __init__(self, config, exp: Experiment, state, step: int, prep: Preprocessing):
        self.config, self.model, self.task = config, exp.model, exp.task
        self.params, self.model_state = state.params, state.model_state
        self.preprocessing, self.step = prep, step
        self.batch_size = int(config.get("eval_batch_size", 256))
        task, model = self.task, self.model
        self._apply = jax.jit(lambda v, b: model.apply(v, *task.inputs(b), train=False))
        self._infer = jax.jit(lambda v, b: task.infer(model, v, b))

    @property
    def variables(self) -> dict:
        """The model's variables: params and its mutable collections."""
        return {"params": self.params, **self.model_state}

    def prepare(self, x, fields: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The model's input fields for raw inputs `x` (see the class docstring)."""
        inputs = dict(x) if isinstance(x, dict) else {"x": x}
        for name, values in inputs.items():
            check_finite(np.asarray(values), f"input {name!r}")
        return self.preprocessing.prepare(inputs, fields or self.task.input_fields)

    def apply(self, x) -> np.ndarray:
        """The model's raw outputs [n, ...] for raw inputs (logits, the YOLO head, ...).

        A dict may give more fields than `predict` reads, e.g. a seq2seq
        model's decoder inputs `tgt_in` (teacher forcing).
        """
        given = tuple(x) if isinstance(x, dict) else ()
        recorded = self.preprocessing.info.get("fields", {})
        fields = (*self.task.input_fields, *(f for f in given if f in recorded))
        return self._chunked(self._apply, self.prepare(x, tuple(dict.fromkeys(fields))))

    def predict(self, x) -> dict[str, np.ndarray]:
        """The task's predictions for raw inputs, field -> numpy array [n, ...].

        classification and binary classification: probabilities, labels
        (and classes, the class names, where the data names them);
        regression and forecast: values in the data's units; detection:
        boxes (normalized x_min, y_min, x_max, y_max), scores, classes and
        valid after NMS; seq2seq: tokens and sequences (greedy decoding);
        char-LM: probabilities and next_token of the token after each
        prompt, and next (its symbol); graph and node classification:
        probabilities and labels per graph or per node (-1 in padding slots).
        """
        return self.task.describe(self._chunked(self._infer, self.prepare(x)))

    def _chunked(self, fn, batch: dict):
        n = len(next(iter(batch.values())))
        outs = []
        for start in range(0, n, self.batch_size):
            chunk = {k: v[start : start + self.batch_size] for k, v in batch.items()}
            outs.append(to_host(fn(self.variables, chunk)))
        return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *outs)


def export_inputs(predictor: Predictor) -> dict[str, jax.ShapeDtypeStruct]:
    """The raw inputs of the exported function: field -> spec with a symbolic batch size.

    Numeric `x` is raw (a loader's jax resize and the standardization happen
    inside); token models take token ids; other fields are as in training.
    """
    prep = predictor.preprocessing
    (batch,) = jax.export.symbolic_shape("batch")
    specs = {}
    for name in predictor.task.input_fields:
        shape, dtype = prep.field_shape(name)
        if name == "x" and not prep.tokens:
            shape, dtype = prep.raw_shape() or tuple(prep.input_shape), "float32"
        specs[name] = jax.ShapeDtypeStruct((batch, *shape), np.dtype(dtype))
    return specs


def export(predictor: Predictor, platforms=("cpu", "cuda")) -> tuple[jax.export.Exported, dict]:
    """The predictor's numeric predictions as one function serialized with `jax.export`.

    The function takes the raw input fields (`export_inputs`, positionally,
    batch size symbolic) and returns `Task.infer`'s fields: the
    preprocessing (a loader's resize, the standardization), the model in
    inference mode and the task's predictions (probabilities and labels,
    values in data units, boxes after NMS, decoded token ids). It is traced
    with dl's CPU fast paths off, so that one lowering serves every platform.

    Args:
      predictor: a loaded run.
      platforms: the platforms to lower for.

    Returns:
      (the Exported, a JSON description of its inputs and outputs).
    """
    prep, task, model = predictor.preprocessing, predictor.task, predictor.model
    variables = jax.tree_util.tree_map(np.asarray, to_host(predictor.variables))
    specs = export_inputs(predictor)

    def predict(*arrays):
        batch = dict(zip(specs, arrays, strict=True))
        if not prep.tokens:
            batch["x"] = _prepare_traced(prep, batch["x"])
        return task.infer(model, variables, batch)

    with fast_paths.disabled():
        try:
            exported = jax.export.export(jax.jit(predict), platforms=tuple(platforms))(
                *specs.values()
            )
        except (TypeError, jax.errors.InconclusiveDimensionOperation) as e:
            raise ConfigError(_symbolic_batch_error(model, e)) from None
    outputs = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
    description = {
        "format": "jax.export (StableHLO), jax " + jax.__version__,
        "platforms": list(exported.platforms),
        "task": task.name,
        "step": predictor.step,
        "inputs": [_spec(name, s.shape, s.dtype) for name, s in specs.items()],
        "outputs": [_spec(name, a.shape, a.dtype) for name, a in sorted(outputs.items())],
        "preprocessing": _included(prep),
        "facts": {k: prep.info[k] for k in FACTS if k in prep.info},
    }
    return exported, description


def _symbolic_batch_error(model, e: BaseException) -> str:
    """One line for a model that cannot be traced with a symbolic batch size.

    Code that needs the batch size as a Python int (`len(x)`, `int(x.shape[0])`)
    fails under `jax.export`'s symbolic shapes with a TypeError; the message
    names the line of the model's code where it happened.
    """
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if os.sep + "jax" + os.sep not in f.filename and os.sep + "flax" + os.sep not in f.filename
    ]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return (
        f"model {type(model).__name__} cannot be exported with a symbolic batch size: "
        f"{type(e).__name__}: {first}{where}; code that needs the batch size as a Python int "
        "(len(x), int(x.shape[0])) must take it from the shape instead, e.g. "
        "x.reshape(x.shape[0], -1)"
    )


def _prepare_traced(prep: Preprocessing, x):
    """`Preprocessing.prepare` of numeric inputs inside the exported function (jnp)."""
    x = x.astype(jnp.float32)
    raw = prep.raw_shape()
    if raw is not None:  # the loader's resize (dl.data.builtin.resize_images)
        size = int(prep.info["resize"]["size"])
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), method="bilinear")
    if prep.x_mean is not None:
        x = (x - prep.x_mean) / prep.x_std
    return x


def _included(prep: Preprocessing) -> str:
    if prep.tokens:
        return "none: token ids in (sources encoded as training encoded them), token ids out"
    steps = []
    if prep.raw_shape():
        steps.append(f"resize {prep.raw_shape()} -> {tuple(prep.input_shape)} (bilinear)")
    if prep.x_mean is not None:
        steps.append(f"standardize ({prep.info.get('standardize')}) with the training statistics")
    return ", then ".join(steps) or "none: inputs as the model takes them"


def _spec(name: str, shape, dtype) -> dict:
    dims = [d if isinstance(d, int) else str(d) for d in shape]  # "batch" is symbolic
    return {"name": name, "shape": dims, "dtype": str(dtype)}


__all__ = ["Predictor", "export", "export_inputs", "load", "stand_in"]
