r"""Vanishing gradients: ||d loss / d x_t|| per time step for RNN, LSTM and GRU on one task.

    python -m experiments.vanishing_gradients --workdir=runs/vanishing_gradients \
        [--config=experiments/configs/vanishing_gradients.py] [--cells=rnn,lstm,gru] \
        [--train=true] [--num_examples=256] [--config.FIELD=VALUE ...]

For each cell, the config's model.cell is set to it; the gradient of the loss with
respect to the input of every time step is measured on --num_examples test examples at
initialisation and, with --train, after training the config with the one training
loop (runs in WORKDIR/CELL). Writes WORKDIR/gradients.json (raw norms and norms
relative to the last step) and WORKDIR/gradients.png (the curves side by side), and
prints one JSON line: the relative norm at the first step for each cell.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "configs", "vanishing_gradients.py"),
    "Experiment config with a recurrent model (a `cell` field).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for the runs, gradients.json and gradients.png.")
flags.DEFINE_list("cells", ["rnn", "lstm", "gru"], "Cells to compare.")
flags.DEFINE_bool("train", True, "Train each cell before measuring (else: initialisation only).")
flags.DEFINE_integer("num_examples", 256, "Test examples the gradients are averaged over.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    config = common.load_config_flag("config")
    common.setup_jax()
    from dl.tools.recurrent import vanishing_gradients
    from dl.train import NonFiniteError

    try:
        result = common.guard(
            lambda: vanishing_gradients(
                config,
                FLAGS.workdir,
                FLAGS.cells,
                train=FLAGS.train,
                num_examples=FLAGS.num_examples,
            )
        )
    except NonFiniteError as e:
        common.fail(str(e), common.EXIT_NONFINITE)
    stage = "trained" if FLAGS.train else "initial"
    first = {c: e[f"{stage}_relative"][0] for c, e in result["cells"].items()}
    print(
        json.dumps(
            {
                "first_step_relative_norm": first,
                "stage": stage,
                "time_steps": result["time_steps"],
                "json": result["json"],
                "png": result["png"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
