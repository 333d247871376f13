r"""Learning-rate range test: finds a learning rate for an experiment.

    python -m experiments.lr_find --config=experiments/configs/mlp_digits.py \
        --workdir=runs/mlp_digits [--min_lr=1e-7] [--max_lr=10] [--num_steps=200] \
        [--smoothing=0.9] [--divergence_factor=4] [--rule=min_over_10|steepest] \
        [--config.FIELD=VALUE ...]

Trains a copy of the model with the config's optimizer while raising the
learning rate exponentially from --min_lr to --max_lr over --num_steps steps,
smooths the loss and stops once it diverges (see dl/tools/lr_finder.py for
the rules). Starts from the workdir's latest checkpoint if there is one,
else from a fresh initialization; the checkpoints and the state are left
bit for bit as they were (lr_find.json records the state's SHA-256 before
and after). Without --config the workdir's config.json is used.

Writes WORKDIR/lr_find.json (rates, raw and smoothed losses, suggestion) and
WORKDIR/lr_find.png (loss against learning rate), and prints one JSON line
with the suggested rate.

Exit status: 0 done; 2 bad flag, config or input; 4 a checkpoint exists but
cannot be restored.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (default: WORKDIR/config.json).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run directory: start point (if it has checkpoints), output.")
flags.DEFINE_float("min_lr", 1e-7, "First learning rate of the ramp.")
flags.DEFINE_float("max_lr", 10.0, "Last learning rate of the ramp.")
flags.DEFINE_integer("num_steps", 200, "Steps of the ramp (fewer if the loss diverges).")
flags.DEFINE_float("smoothing", 0.9, "EMA factor beta of the loss smoothing (0: none).")
flags.DEFINE_float(
    "divergence_factor", 4.0, "Stop once the smoothed loss exceeds this times its minimum."
)
flags.DEFINE_enum(
    "rule",
    "min_over_10",
    ["min_over_10", "steepest"],
    "Suggestion: the rate at the loss minimum / 10, or at the steepest descent.",
)
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def _config():
    if FLAGS["config"].present:
        return common.load_config_flag("config")
    from dl.errors import ConfigError
    from dl.train.evaluation import read_run_config

    path = os.path.join(FLAGS.workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(
            f"no --config given and {path!r} does not exist; pass --config=CONFIG_FILE"
        )
    return read_run_config(FLAGS.workdir)  # refuses a config.json that is not a config


def main(argv):
    common.reject_positional(argv)
    config = common.guard(_config)
    common.setup_jax()
    from dl.tools.lr_finder import lr_find
    from dl.train import CheckpointError
    from dl.train.evaluation import fit_mesh

    if not FLAGS["config"].present:  # the run's own mesh where it fits the devices here
        config = fit_mesh(config)

    try:
        result = common.guard(
            lambda: lr_find(
                config,
                FLAGS.workdir,
                min_lr=FLAGS.min_lr,
                max_lr=FLAGS.max_lr,
                num_steps=FLAGS.num_steps,
                beta=FLAGS.smoothing,
                divergence_factor=FLAGS.divergence_factor,
                rule=FLAGS.rule,
            )
        )
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    keys = ("suggestion", "rule", "suggestions", "min_loss_learning_rate", "stopped", "start")
    keys += ("warnings",)
    line = {k: result[k] for k in keys}
    line["state_unchanged"] = result["state_unchanged"]
    line["files"] = [os.path.join(FLAGS.workdir, f) for f in ("lr_find.json", "lr_find.png")]
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
