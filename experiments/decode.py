r"""Decodes a trained seq2seq run free-running and reports exact match on held-out examples.

    python -m experiments.decode --workdir=runs/seq2seq_addition \
        [--checkpoint=latest|best|STEP] [--split=test] [--beam_size=1] [--show=5]

Restores the checkpoint read-only, decodes every source of the split from BOS on with
the model's own outputs (greedy, or beam search with --beam_size > 1), and compares
each output with the target: exact_match counts targets right in every token (EOS
included), token_accuracy the target tokens right. The training metrics of the
sequence task use teacher forcing; this is the number to report. Prints one JSON line
and writes it to WORKDIR/decode_<split>.json.

Exit status: 0 done; 2 bad flag or not a seq2seq run directory; 4 no checkpoint could
be restored.
"""

from __future__ import annotations

import os

from absl import app, flags

from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train (a seq2seq run).")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to decode.")
flags.DEFINE_integer("beam_size", 1, "1: greedy decoding; more: beam search of that width.")
flags.DEFINE_integer("show", 5, "Decoded examples and errors to include in the output.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def decode(workdir: str, checkpoint: str, split: str, beam_size: int, show: int) -> dict:
    """Restores `workdir` and decodes `split`; returns the result written to decode_<split>.json."""
    from dl.errors import ConfigError
    from dl.tools.recurrent import decode_split, restore_run
    from dl.train.evaluation import write_json, write_or_warn

    if beam_size < 1:  # before the run is restored
        raise ConfigError(f"--beam_size must be >= 1 (1: greedy decoding), got {beam_size}")
    if show < 0:
        raise ConfigError(f"--show must be >= 0, got {show}")
    _, exp, state, step = restore_run(workdir, checkpoint)
    result = {
        "workdir": os.path.abspath(workdir),
        "checkpoint": checkpoint,
        "step": step,
        **decode_split(exp, state, split, beam_size=beam_size, show=show),
    }
    path = os.path.join(workdir, f"decode_{split}.json")
    write_or_warn(path, lambda: write_json(path, result))  # a read-only workdir keeps the result
    return result


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    common.read_workdir(
        lambda: decode(FLAGS.workdir, FLAGS.checkpoint, FLAGS.split, FLAGS.beam_size, FLAGS.show)
    )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
