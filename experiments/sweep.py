r"""Trains one config over a grid of overrides, one run after another.

    python -m experiments.sweep --config=experiments/configs/lr_too_low_right_high.py \
        --workdir=runs/lr_sweep --sweep=optimizer.learning_rate=0.001,0.1,3.0 \
        [--sweep=FIELD=V1,V2,... ...] [--config.FIELD=VALUE ...]

Each --sweep flag names a config field and its values (commas outside
brackets separate them: `--sweep='model.hidden_sizes=(),(16,),(16,16)'`);
several flags make the grid of every combination. Every field and value is
checked, and every grid point's experiment built, before the first run: an
unknown field or a value of the wrong type exits with status 2 and nothing
trains.

Each point trains in WORKDIR/<field=value,...>/ (its train.log holds the
progress lines). Running the command again reuses finished points and
resumes unfinished ones. A point whose loss becomes non-finite is recorded as
diverged and the sweep goes on. Writes WORKDIR/sweep.json, sweep.md (final
train/validation/test metrics of each point, the generalization gap, the
best point), sweep_loss.png and sweep_validation.png (overlaid curves), and
prints the sweep.json path and the best point.

Exit status: 0 every point ran (finished or diverged); 2 bad flag, config,
sweep field or value, or a point whose run failed on its config.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the sweep; one sub-directory per grid point.")
flags.DEFINE_multi_string(
    "sweep",
    [],
    "FIELD=V1,V2,...: a config field and the values to train with; repeat for a grid.",
)
flags.mark_flags_as_required(["config", "workdir"])

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    config = common.load_config_flag("config")
    common.setup_jax()
    from dl.tools.sweep import sweep

    out = common.guard(lambda: sweep(config, FLAGS.sweep, FLAGS.workdir))
    failed = [p for p in out["points"] if p["status"] == "error"]
    print(
        json.dumps(
            {
                "sweep": os.path.join(FLAGS.workdir, "sweep.json"),
                "table": os.path.join(FLAGS.workdir, "sweep.md"),
                "best": out["best"],
                "statuses": {p["name"]: p["status"] for p in out["points"]},
            }
        ),
        flush=True,
    )
    if failed:
        common.fail(
            "runs failed: " + "; ".join(f"{p['name']}: {p.get('message', '')}" for p in failed)
        )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
