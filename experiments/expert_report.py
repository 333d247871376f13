r"""Reports which expert of a trained mixture of experts handles which inputs.

    python -m experiments.expert_report --workdir=runs/moe_subproblems \
        [--checkpoint=latest|best|STEP] [--split=test] [--group_by=problem_id] [--output=PATH]

Rebuilds the experiment from the config stored in the workdir, restores the
checkpoint (read-only), computes the gate probabilities of every example of
the split and averages them per group: per sub-problem (`problem_id`, the
default, for the `subproblems` dataset) or per class (`--group_by=y`). Prints
a table (one row per group: examples, accuracy, mean gate probability of
each expert, the top expert) and writes it as JSON to --output (default
WORKDIR/expert_report_<split>.json).

Exit status: 0 done; 2 bad flag, not a run directory, not a mixture of
experts or no such field; 4 no checkpoint could be restored.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train.")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to report on.")
flags.DEFINE_string(
    "group_by", "problem_id", "Integer field of the split that groups examples (e.g. y)."
)
flags.DEFINE_string("output", "", "JSON file to write; default WORKDIR/expert_report_<split>.json.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    from dl.tools.expert_report import expert_report, format_table
    from dl.train import CheckpointError

    try:
        report = common.guard(
            lambda: expert_report(FLAGS.workdir, FLAGS.checkpoint, FLAGS.split, FLAGS.group_by)
        )
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    output = FLAGS.output or os.path.join(FLAGS.workdir, f"expert_report_{FLAGS.split}.json")
    with open(output + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(output + ".tmp", output)
    print(format_table(report), flush=True)
    print(f"written to {output}", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
