r"""Samples text from a trained character language model.

    python -m experiments.sample_text --workdir=runs/charlm_text \
        [--prompt="The "] [--length=400] [--temperature=0.8] [--seed=0] \
        [--checkpoint=latest|best|STEP]

Restores the checkpoint read-only, runs the prompt through the model and draws
--length characters one at a time from the softmax at --temperature (0 takes the most
likely character). Prints the prompt and its continuation.

Exit status: 0 done; 2 bad flag, not a charlm run directory or a prompt character
outside the vocabulary; 4 no checkpoint could be restored.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train (a charlm run).")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("prompt", "The ", "Text to continue.")
flags.DEFINE_integer("length", 400, "Characters to generate.")
flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 is greedy.")
flags.DEFINE_integer("seed", 0, "Seed of the sampling.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    from dl.tools.recurrent import restore_run, sample_text
    from dl.train import CheckpointError

    def run():
        _, exp, state, _ = restore_run(FLAGS.workdir, FLAGS.checkpoint)
        return sample_text(exp, state, FLAGS.prompt, FLAGS.length, FLAGS.temperature, FLAGS.seed)

    try:
        text = common.guard(run)
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    print(FLAGS.prompt + text, flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
