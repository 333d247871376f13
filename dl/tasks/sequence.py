"""Token sequences (seq2seq, char-LM) and time-series forecasting against a naive baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl.data.sequences import check_ids
from dl.data.vocabulary import PAD, Vocabulary
from dl.errors import ConfigError
from dl.models.seq2seq_decode import greedy_decode
from dl.tasks.base import Task, ones
from dl.tasks.supervised import Regression


class Sequence(Task):
    """Next-token prediction over padded token sequences.

    The model gives logits [batch, T, vocab] for targets y [batch, T]; positions where
    y == PAD are masked out. The loss is the cross-entropy per target token (each example
    contributes its summed token losses and its token count, so the mean is over tokens).
    Metrics: token_accuracy (correct tokens / tokens) and exact_match (examples whose
    every target token is right). With teacher forcing, exact_match scores each token
    given the true prefix; free-running (greedy) exact match of a seq2seq model is
    `dl.tools.recurrent.decode_split`.

    Seq2seq sets (with a "tgt_in" field) give the model (x, tgt_in); char-LM sets give x.
    """

    name = "sequence"
    metric_directions = {"loss": "min", "token_accuracy": "max", "exact_match": "max"}

    def __init__(self, dataset):
        super().__init__(dataset)
        if dataset.kind != "sequence":
            raise ConfigError(
                f"task 'sequence' needs a token dataset (addition, dates, text:PATH), but "
                f"dataset {dataset.name!r} is a {dataset.kind} set"
            )
        info = dataset.info
        self.seq2seq = "tgt_in" in dataset.splits["train"]
        vocab = info.get("tgt_vocab") if self.seq2seq else info.get("vocab")
        if vocab is None:
            raise ConfigError(
                f"dataset {dataset.name!r} stores no vocabulary (info['tgt_vocab'] for "
                "seq2seq sets, info['vocab'] for char-LM sets)"
            )
        self.vocab_size = len(vocab)
        src_size = len(info["src_vocab"]) if self.seq2seq else self.vocab_size
        for split, fields in dataset.splits.items():
            for field, ids in fields.items():
                size = src_size if field == "x" else self.vocab_size
                check_ids(ids, size, f"dataset {dataset.name!r} split {split!r} field {field!r}")

    def num_outputs(self) -> int:
        return self.vocab_size

    def inputs(self, batch) -> tuple:
        if "tgt_in" in batch:
            return batch["x"], batch["tgt_in"]
        return (batch["x"],)

    def check_outputs(self, output_shape: tuple[int, ...]) -> str | None:
        length = self.dataset.splits["train"]["y"].shape[1]
        expected = (length, self.vocab_size)
        if tuple(output_shape) == expected:
            return None
        field = "tgt_vocab_size" if self.seq2seq else "vocab_size"
        hint = ""
        if len(output_shape) == 2 and output_shape[0] == length:
            hint = f"; set model.{field}={self.vocab_size}"
        return (
            f"the model gives outputs of shape {tuple(output_shape)} per example, but task "
            f"'sequence' on dataset {self.dataset.name!r} needs logits {expected} "
            f"([target length, vocabulary size]){hint}"
        )

    def check_model(self, model) -> str | None:
        """Returns a message if the model's vocabulary sizes differ from the data's.

        `check_outputs` sees the output vocabulary only; a source vocabulary that is too
        small would embed out-of-range ids as NaN, so the sizes are compared here.
        """
        info = self.dataset.info
        if self.seq2seq:
            wanted = {"src_vocab_size": len(info["src_vocab"]), "tgt_vocab_size": self.vocab_size}
        else:
            wanted = {"vocab_size": self.vocab_size}
        for field, size in wanted.items():
            got = getattr(model, field, None)
            if got is not None and got != size:
                return (
                    f"model.{field}={got}, but dataset {self.dataset.name!r} has {size} "
                    f"{'source ' if field == 'src_vocab_size' else ''}token ids; set "
                    f"model.{field}={size}"
                )
        return None

    def _mask(self, batch):
        return (batch["y"] != PAD).astype(jnp.float32)  # [batch, T]

    def loss(self, outputs, batch):
        logits = outputs.astype(jnp.float32)  # [batch, T, vocab]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])  # [batch, T]
        mask = self._mask(batch)
        return jnp.sum(ce * mask, axis=-1), jnp.sum(mask, axis=-1)

    def metrics(self, outputs, batch):
        mask = self._mask(batch)
        correct = (jnp.argmax(outputs, -1) == batch["y"]).astype(jnp.float32) * mask
        whole = jnp.all((correct > 0) | (mask == 0), axis=-1).astype(jnp.float32)  # [batch]
        return {
            "loss": self.loss(outputs, batch),
            "token_accuracy": (jnp.sum(correct, axis=-1), jnp.sum(mask, axis=-1)),
            "exact_match": (whole, ones(batch)),
        }

    def predict(self, outputs):
        return jnp.argmax(outputs, axis=-1)

    def infer(self, model, variables, batch) -> dict:
        """Seq2seq: greedy free-running decoding of the sources x [batch, S], as
        `experiments.decode` decodes (tokens [batch, T]: the target, EOS, then PAD).
        Char-LM: the next token after each prompt x [batch, L] (padded at the end
        with PAD): probabilities [batch, vocab] and next_token [batch]."""
        if not self.seq2seq:
            return super().infer(model, variables, batch)
        length = self.dataset.splits["train"]["y"].shape[1]
        return {"tokens": greedy_decode(model, variables, batch["x"], max_len=length)}

    def prediction(self, outputs, batch) -> dict:
        """Char-LM: the distribution of the token after each prompt's last token."""
        last = jnp.maximum(jnp.sum(batch["x"] != PAD, axis=1) - 1, 0)  # [batch]
        logits = jnp.take_along_axis(outputs, last[:, None, None], axis=1)[:, 0]  # [batch, vocab]
        return {
            "probabilities": jax.nn.softmax(logits.astype(jnp.float32), axis=-1),
            "next_token": jnp.argmax(logits, axis=-1).astype(jnp.int32),
        }

    def describe(self, predictions: dict) -> dict:
        """Adds the decoded text: `sequences` (seq2seq targets) or `next` (char-LM symbols)."""
        info = self.dataset.info
        if "tokens" in predictions:
            texts = Vocabulary(info["tgt_vocab"]).decode_batch(predictions["tokens"])
            return {**predictions, "sequences": np.asarray(texts)}
        itos = np.asarray(info["vocab"])
        return {**predictions, "next": itos[np.asarray(predictions["next_token"])]}


class Forecast(Regression):
    """Regression that also scores the naive forecast "repeat the last input value".

    Needs a dataset with an unstandardized "last" field [examples] (the `sine` source).
    Metrics in the data's units: mse and mae of the model, naive_mse and naive_mae of the
    naive forecast for every target step, and (over a whole split) mse_ratio =
    mse / naive_mse, below 1 when the model beats the naive forecast.
    """

    name = "forecast"
    metric_directions = {
        "loss": "min",
        "mse": "min",
        "mae": "min",
        "naive_mse": "min",
        "naive_mae": "min",
        "mse_ratio": "min",
    }
    has_host_metrics = True

    def __init__(self, dataset):
        super().__init__(dataset)
        if "last" not in dataset.splits["train"]:
            raise ConfigError(
                f"task 'forecast' needs a dataset with the last input value per example "
                f"(field 'last', e.g. dataset 'sine'); dataset {dataset.name!r} has fields "
                f"{sorted(dataset.splits['train'])}; use task 'regression'"
            )
        scale = dataset.info.get("target_scale", {"mean": 0.0, "std": 1.0})
        self._mean = jnp.asarray(scale["mean"], jnp.float32)

    def _naive_errors(self, batch):
        y = batch["y"].astype(jnp.float32).reshape(batch["y"].shape[0], -1)  # [batch, H]
        y = y * self._std + self._mean
        return batch["last"].astype(jnp.float32).reshape(-1, 1) - y  # [batch, H]

    def metrics(self, outputs, batch):
        out = super().metrics(outputs, batch)
        naive = self._naive_errors(batch)
        out["naive_mse"] = (jnp.mean(naive**2, axis=-1), ones(batch))
        out["naive_mae"] = (jnp.mean(jnp.abs(naive), axis=-1), ones(batch))
        return out

    def predictions(self, outputs, batch) -> dict:
        err = self._errors(outputs, batch) * self._std  # [batch, H]
        return {
            "squared_error": jnp.mean(err**2, axis=-1),
            "naive_squared_error": jnp.mean(self._naive_errors(batch) ** 2, -1),
        }

    def host_metrics(self, predictions: dict, split: dict) -> dict[str, float]:
        naive = float(np.mean(predictions["naive_squared_error"]))
        ratio = float(np.mean(predictions["squared_error"])) / naive if naive > 0 else np.nan
        return {"mse_ratio": ratio}
