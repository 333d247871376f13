r"""A character-level LSTM language model of a text file (default: the shipped sample).

    python -m experiments.train --config=experiments/configs/charlm_text.py \
        --workdir=runs/charlm_text [--config.dataset.name=text:/path/to/file.txt]
    python -m experiments.sample_text --workdir=runs/charlm_text --prompt="The light " \
        --temperature=0.6

One LSTM layer of 256 units over 32-dimensional character embeddings, dropout 0.3, on
non-overlapping 64-character windows of dl/data/text/sample.txt (19 KB of original
prose; 235 training windows). Seed 0, 800 steps (85 s on 2 shared CPU cores): test
cross-entropy 1.66 nats per character (2.39 bits), validation 1.72; the training loss
keeps falling (1.37) while validation stops improving, as expected on so little text.
Sampled at temperature 0.5 from "The light " (best checkpoint):

  The light out wat she town and the litht is in a chall of the lant morn the light
  out. She waster of the light it all and and the pater, and the lamp. The wind it as
  the light is burns the light comethen in the stor harbour ...

Mostly real words and phrases of the text, not grammatical sentences; a larger file
(--config.dataset.name=text:PATH) gives better samples.
"""

from dl.config import base_config
from dl.data.text_windows import SAMPLE_TEXT


def get_config():
    c = base_config()
    c.name = "charlm_text"
    # The base config's split and standardization fields stay; these are added or changed.
    c.dataset.update(
        dict(
            name="text:" + SAMPLE_TEXT,
            sequence_length=64,
            stride=0,
            max_chars=2_000_000,
            vocabulary="ascii",
            validation_fraction=0.1,
            test_fraction=0.1,
            standardize="none",
        )
    )
    c.model = dict(
        name="charlm",
        vocab_size=101,  # <pad> <bos> <eos> <unk>, tab, newline and printable ASCII
        embed_dim=32,
        cell="lstm",
        hidden_size=256,
        num_layers=1,
        dropout_rate=0.3,
    )
    c.task.name = "sequence"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "cosine"
    c.grad_clip_norm = 1.0
    c.batch_size = 32
    c.num_train_steps = 800
    c.log_every_steps = 100
    c.eval_every_steps = 100
    c.checkpoint_every_steps = 400
    c.best_metric = "loss"
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
