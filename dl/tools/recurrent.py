"""Tools for trained recurrent models: free-running decoding, text sampling, gradient probes.

Everything here works on a run that `dl.train.train` wrote (or on a freshly initialised
experiment): `restore_run` rebuilds the experiment from a workdir's config.json and
restores a checkpoint read-only.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from dl.data.vocabulary import PAD, SPECIAL_TOKENS, Vocabulary
from dl.errors import ConfigError
from dl.models.recurrent import CharLM
from dl.models.sampling import sample
from dl.models.seq2seq_decode import beam_search, greedy_decode
from dl.reporting import RunCounter, format_metrics
from dl.tasks.sequence import Sequence
from dl.train import Checkpoints, build
from dl.train import train as train_run
from dl.train.evaluation import restore_run  # noqa: F401 -- part of this module's API

CELL_NAMES = ("rnn", "lstm", "gru")


def variables_of(state) -> dict:
    """The model variables of a train state."""
    return {"params": state.params, **state.model_state}


def check_seq2seq_vocabularies(model, dataset) -> None:
    """Checks a Seq2Seq model's vocabulary sizes against a seq2seq dataset's vocabularies.

    Raises:
      ConfigError: naming the field to set.
    """
    if "src_vocab" not in dataset.info or not hasattr(model, "src_vocab_size"):
        raise ConfigError(
            f"free-running decoding needs a seq2seq model and dataset; got model "
            f"{type(model).__name__} on dataset {dataset.name!r}"
        )
    problem = Sequence(dataset).check_model(model)
    if problem:
        raise ConfigError(problem)


def _batches(x: np.ndarray, batch_size: int):
    """Fixed-size batches of x (the last padded with copies of row 0) and the valid rows."""
    for start in range(0, len(x), batch_size):
        part = x[start : start + batch_size]
        valid = len(part)
        if valid < batch_size:
            part = np.concatenate([part, np.repeat(x[:1], batch_size - valid, axis=0)])
        yield part, valid


def decode_split(
    exp,
    state,
    split: str = "test",
    *,
    beam_size: int = 1,
    batch_size: int = 500,
    show: int = 5,
) -> dict:
    """Decodes a split of a seq2seq dataset free-running and scores it against the targets.

    Each source is decoded from BOS on with the model's own previous outputs (greedy for
    beam_size 1, else beam search), for as many steps as the targets have.

    Args:
      exp: the experiment (seq2seq model and dataset).
      state: its train state.
      split: "train", "validation" or "test".
      beam_size: 1 for greedy decoding.
      batch_size: sources decoded per call.
      show: how many decoded examples and errors to return.

    Returns:
      {"split", "examples", "exact_match" (whole target right, EOS included),
      "token_accuracy" (target tokens right), "decoding", "samples", "errors"}.
    """
    check_seq2seq_vocabularies(exp.model, exp.dataset)
    if split not in exp.dataset.splits or exp.dataset.size(split) == 0:
        raise ConfigError(f"dataset {exp.dataset.name!r} has no examples in split {split!r}")
    if beam_size < 1:
        raise ConfigError(f"beam_size must be >= 1, got {beam_size}")
    data = exp.dataset.splits[split]
    src, y = data["x"], data["y"]  # [N, S], [N, T]
    max_len = y.shape[1]
    if beam_size == 1:
        decode = jax.jit(functools.partial(greedy_decode, exp.model), static_argnames="max_len")
    else:
        decode = jax.jit(
            functools.partial(beam_search, exp.model, beam_size=beam_size),
            static_argnames="max_len",
        )
    variables = variables_of(state)
    outputs = []
    for part, valid in _batches(src, min(batch_size, len(src))):
        tokens = decode(variables, jnp.asarray(part), max_len=max_len)
        if beam_size > 1:
            tokens = tokens[0]
        outputs.append(np.asarray(tokens)[:valid])
    predicted = np.concatenate(outputs)  # [N, T]
    mask = y != PAD
    exact = np.all(predicted == y, axis=1)
    src_vocab = Vocabulary(exp.dataset.info["src_vocab"])
    tgt_vocab = Vocabulary(exp.dataset.info["tgt_vocab"])

    def example(i: int) -> dict:
        return {
            "source": src_vocab.decode(src[i]),
            "target": tgt_vocab.decode(y[i]),
            "predicted": tgt_vocab.decode(predicted[i]),
        }

    wrong = np.flatnonzero(~exact)
    return {
        "split": split,
        "examples": int(len(y)),
        "exact_match": float(np.mean(exact)),
        "token_accuracy": float(np.sum((predicted == y) & mask) / np.sum(mask)),
        "decoding": "greedy" if beam_size == 1 else f"beam search, beam {beam_size}",
        "samples": [example(i) for i in range(min(show, len(y)))],
        "errors": [example(int(i)) for i in wrong[:show]],
    }


def sample_text(
    exp,
    state,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """Continues a prompt with a trained character language model.

    Args:
      exp: the experiment (CharLM model, text dataset).
      state: its train state.
      prompt: the text to continue; every character must be in the model's vocabulary.
      length: characters to generate.
      temperature: softmax temperature; 0 picks the most likely character.
      seed: seed of the sampling.

    Returns:
      The generated characters (without the prompt).
    """
    if not isinstance(exp.model, CharLM) or "vocab" not in exp.dataset.info:
        raise ConfigError(
            f"sampling text needs a charlm run on a text dataset; got model "
            f"{type(exp.model).__name__} on dataset {exp.dataset.name!r}"
        )
    if not prompt:
        raise ConfigError("the prompt is empty; give at least one character")
    if length < 1:
        raise ConfigError(f"length must be >= 1, got {length}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    vocab = Vocabulary(exp.dataset.info["vocab"])
    unknown = sorted({c for c in prompt if c not in vocab.stoi or c in SPECIAL_TOKENS})
    if unknown:
        raise ConfigError(
            f"prompt characters {''.join(unknown)!r} are not in the model's vocabulary of "
            f"{vocab.size - len(SPECIAL_TOKENS)} symbols"
        )
    ids = jnp.asarray(vocab.encode(prompt))[None]  # [1, prompt]
    draw = jax.jit(functools.partial(sample, exp.model), static_argnames=("length", "temperature"))
    tokens = draw(
        variables_of(state),
        jax.random.PRNGKey(seed),
        ids,
        length=length,
        temperature=float(temperature),
    )
    reserved = len(SPECIAL_TOKENS)
    return "".join(vocab.itos[int(i)] for i in np.asarray(tokens)[0] if int(i) >= reserved)


def input_gradient_norms(
    module: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    loss_fn: Callable[[Any], jax.Array] | None = None,
    **apply_kwargs: Any,
) -> jax.Array:
    """Measures ``||d loss / d x_t||`` for every time step ``t`` (vanishing-gradient probe).

    Args:
        module: Any module whose input has time on axis 1 (``[batch, time, ...]``), e.g. a
            ``RecurrentClassifier`` (images count rows as time) or a ``RecurrentLayer``.
        variables: The module's variables.
        x: Float input ``[batch, time, ...]``.
        loss_fn: Maps the module's output to a scalar. Default: the sum of the output (for a
            ``[batch, time, D]`` output, or the output part of a ``(carry, outputs)`` tuple, the
            sum at the final time step).
        **apply_kwargs: Extra keyword arguments for ``module.apply`` (e.g. ``lengths``).

    Returns:
        ``[time]`` L2 norms of the gradient slice ``d loss / d x[:, t]`` (over batch and
        features).
    """

    def default_loss(out: Any) -> jax.Array:
        if isinstance(out, tuple):
            out = out[-1]
        if out.ndim == 3:
            out = out[:, -1]
        return jnp.sum(out)

    loss = loss_fn or default_loss
    grads = jax.grad(lambda inp: loss(module.apply(variables, inp, **apply_kwargs)))(
        jnp.asarray(x, jnp.float32)
    )  # same shape as x
    axes = tuple(i for i in range(grads.ndim) if i != 1)
    return jnp.sqrt(jnp.sum(jnp.square(grads), axis=axes))  # [time]


def input_gradient_profile(exp, state, split: str = "test", num_examples: int = 256):
    """||d loss / d x_t|| at every time step t, for the task's loss on examples of a split.

    Args:
      exp: an experiment whose model reads x with time on axis 1 (a recurrent classifier
        or regressor; images count rows as time).
      state: its train state.
      split: where the examples come from.
      num_examples: how many (the first ones of the split).

    Returns:
      float64 [time]: the L2 norm of the gradient of the mean loss with respect to the
      inputs of each step, over examples and features.
    """
    data = exp.dataset.splits[split]
    n = min(num_examples, len(data["y"]))
    if n == 0:
        raise ConfigError(f"dataset {exp.dataset.name!r} has no examples in split {split!r}")
    batch = {k: jnp.asarray(v[:n]) for k, v in data.items()}

    def loss_fn(outputs):
        num, den = exp.task.loss(outputs, batch)
        return jnp.sum(num) / jnp.sum(den)

    norms = input_gradient_norms(
        exp.model, variables_of(state), batch["x"], loss_fn=loss_fn, train=False
    )
    return np.asarray(norms, np.float64)


def vanishing_gradients(
    config,
    workdir: str,
    cells=CELL_NAMES,
    *,
    train: bool = True,
    split: str = "test",
    num_examples: int = 256,
    log=print,
) -> dict:
    """Measures ||d loss / d x_t|| per time step for several cells on the same task.

    For each cell the config's model.cell is replaced; the gradient profile is measured
    at initialisation and, with `train`, after training the config with `dl.train.train`
    in workdir/CELL (its log in workdir/CELL/train.log). Writes workdir/gradients.json
    and workdir/gradients.png.

    Args:
      config: an experiment config whose model has a `cell` field.
      workdir: where the runs, the JSON and the figure go.
      cells: cell names to compare.
      train: also train each cell and measure the trained model.
      split: split whose examples are probed.
      num_examples: examples per probe.
      log: called with progress lines, "[i/n] cell: ..." as each cell starts,
        trains (steps done, steps per second, ETA) and ends.

    Returns:
      {"cells": {cell: {"initial": [...], "trained": [...], "initial_relative": [...],
      "trained_relative": [...], "test": metrics}}, "time_steps", "json", "png"};
      "relative" curves are divided by the norm at the last step.
    """
    unknown = [c for c in cells if c not in CELL_NAMES]
    if unknown or not cells:
        raise ConfigError(f"cells must be a non-empty list of {CELL_NAMES}, got {list(cells)}")
    if "cell" not in config.model:
        raise ConfigError(f"model {config.model.name!r} has no field 'cell'; use rnn_classifier")
    os.makedirs(workdir, exist_ok=True)
    result: dict = {"cells": {}, "split": split, "num_examples": num_examples}
    runs = RunCounter(len(cells), log)
    for cell in cells:
        cfg = config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.model.cell = cell
            cfg.name = f"{config.get('name', 'experiment')}_{cell}"
        runs.start(cell, "gradients at initialisation")
        exp = build(cfg)
        initial = input_gradient_profile(exp, exp.init_state(), split, num_examples)
        entry = {"initial": initial.tolist(), "initial_relative": (initial / initial[-1]).tolist()}
        if train:
            run_dir = os.path.join(workdir, cell)
            runs.log(f"training {int(cfg.num_train_steps)} steps in {run_dir}")
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, "train.log"), "a") as train_log:
                summary = train_run(cfg, run_dir, stream=runs.stream(train_log))
            state, _, step = Checkpoints(run_dir, read_only=True).restore(exp.abstract_state())
            trained = input_gradient_profile(exp, state, split, num_examples)
            entry.update(
                trained=trained.tolist(),
                trained_relative=(trained / trained[-1]).tolist(),
                step=step,
                test=summary["test"],
            )
            runs.finish(f"trained to step {step}; test {format_metrics(summary['test'])}")
        else:
            runs.finish("measured")
        result["cells"][cell] = entry
    result["time_steps"] = len(next(iter(result["cells"].values()))["initial"])
    result["json"] = os.path.join(workdir, "gradients.json")
    result["png"] = os.path.join(workdir, "gradients.png")
    save_gradient_figure(result, result["png"])
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=2)
    return result


def save_gradient_figure(result: dict, path: str) -> None:
    """Plots the relative gradient norm per time step of each cell, one panel per stage."""
    stages = [s for s in ("initial", "trained") if all(s in e for e in result["cells"].values())]
    fig = Figure(figsize=(5.5 * len(stages), 4), layout="constrained")
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, stage in zip(axes, stages, strict=True):
        for cell, entry in result["cells"].items():
            curve = np.asarray(entry[f"{stage}_relative"])
            ax.semilogy(np.arange(1, len(curve) + 1), curve, marker=".", label=cell.upper())
        ax.set_xlabel("time step t")
        ax.set_ylabel("||dL/dx_t|| / ||dL/dx_T||")
        ax.set_title("at initialisation" if stage == "initial" else "after training")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Gradient of the loss with respect to the input at each step")
    fig.savefig(path, dpi=100)
