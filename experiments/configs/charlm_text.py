r"""A character-level LSTM language model of a text file (default: the shipped sample).

    python -m experiments.train --config=experiments/configs/charlm_text.py \
        --workdir=runs/charlm_text [--config.dataset.name=text:/path/to/file.txt]
    python -m experiments.sample_text --workdir=runs/charlm_text --prompt="The light " \
        --temperature=0.6

RESULT
"""

from dl.config import base_config
from dl.data.sequences import SAMPLE_TEXT


def get_config():
    c = base_config()
    c.name = "charlm_text"
    c.dataset = dict(
        name="text:" + SAMPLE_TEXT,
        sequence_length=64,
        stride=0,
        max_chars=2_000_000,
        vocabulary="ascii",
        validation_fraction=0.1,
        test_fraction=0.1,
        split_seed=0,
        standardize="none",
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
    c.task = "sequence"
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
    return c
