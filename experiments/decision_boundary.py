r"""Draws the decision regions of classifiers trained on 2-D data.

    # MLPs with 0, 1 and 2 hidden layers on the same data, side by side:
    python -m experiments.decision_boundary \
        --config=experiments/configs/boundaries_spirals.py --workdir=runs/boundaries \
        --hidden_layers=0,1,2 [--width=32]

    # any one config field compared instead:
    python -m experiments.decision_boundary --config=... --workdir=... \
        --compare=model.activation=tanh,relu

    # runs that are already trained:
    python -m experiments.decision_boundary --runs=runs/a,runs/b --workdir=runs/figures

    # one config, trained once:
    python -m experiments.decision_boundary --config=... --workdir=...

With --config, the runs are trained first (one sub-directory per compared
value, laid out and resumed as experiments.sweep does, with sweep.md). The
data must be 2-D classification data; anything else exits with status 2
before training. Writes WORKDIR/decision_boundaries.png (regions shaded by
the model's confidence, training points on top, in the data's original
units) and decision_boundaries.json, and prints one JSON line.

Exit status: 0 done; 2 bad flag, config or data; 4 a run without a checkpoint.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config to train.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the runs (with --config) and the figure.")
flags.DEFINE_list("runs", [], "Trained run directories to draw instead of training.")
flags.DEFINE_list("hidden_layers", [], "Compare MLPs with these numbers of hidden layers.")
flags.DEFINE_integer("width", None, "Units per hidden layer for --hidden_layers.")
flags.DEFINE_string("compare", "", "FIELD=V1,V2,...: compare the values of one config field.")
flags.DEFINE_integer("resolution", 200, "Grid points per axis.")
flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "Checkpoint of each run to draw.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def _run():
    import os

    from dl.errors import ConfigError
    from dl.tools import boundaries, sweep

    if FLAGS.runs:
        if FLAGS["config"].present or FLAGS.hidden_layers or FLAGS.compare:
            raise ConfigError(
                "--runs draws trained runs; do not combine it with --config, "
                "--hidden_layers or --compare"
            )
        png = os.path.join(FLAGS.workdir, "decision_boundaries.png")
        return boundaries.draw_boundaries(
            FLAGS.runs, png, resolution=FLAGS.resolution, checkpoint=FLAGS.checkpoint
        )
    if not FLAGS["config"].present:
        raise ConfigError("give --config (to train and draw) or --runs (trained runs to draw)")
    if FLAGS.hidden_layers and FLAGS.compare:
        raise ConfigError("give --hidden_layers or --compare, not both")
    config = common.load_config_flag("config")
    axis = None
    if FLAGS.hidden_layers:
        try:
            layers = [int(n) for n in FLAGS.hidden_layers]
        except ValueError:
            raise ConfigError(
                f"--hidden_layers must be integers such as 0,1,2; got {FLAGS.hidden_layers}"
            ) from None
        values = boundaries.hidden_layer_values(config, layers, FLAGS.width)
        axis = sweep.Axis("model.hidden_sizes", values)
    elif FLAGS.compare:
        axis = sweep.parse_axis(config, FLAGS.compare)
    return boundaries.train_and_draw(
        config, FLAGS.workdir, axis, resolution=FLAGS.resolution, checkpoint=FLAGS.checkpoint
    )


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    from dl.train import CheckpointError

    try:
        result = common.guard(_run)
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    print(
        json.dumps(
            {
                "figure": result["figure"],
                "panels": [
                    {"title": p["title"], "accuracy": p["accuracy"]} for p in result["panels"]
                ],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
