r"""Evaluates a checkpoint of a training run.

    python -m experiments.evaluate --workdir=runs/mlp_digits \
        [--checkpoint=latest|best|STEP] [--split=test|validation|train] \
        [--weights=params|ema] \
        [--dataset.name=images:DIR --dataset.FIELD=VALUE ...]

Rebuilds the experiment from the config stored in the workdir, restores the
checkpoint (read-only: nothing in the workdir's checkpoints changes, and it
can run while training writes to the same workdir), prints one JSON line of
metrics and writes it to WORKDIR/eval_<split>.json. On a workdir that cannot be
written (read-only, full) the metrics are printed all the same, with a warning
on stderr for each file (eval_<split>.json, figures) left unwritten.

Exit status: 0 done; 2 bad flag or not a run directory; 4 no checkpoint could
be restored.
"""

from __future__ import annotations

import json

from absl import app, flags

from dl.config import base_config
from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train.")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to evaluate.")
flags.DEFINE_enum(
    "weights",
    "params",
    ["params", "ema"],
    "The run's parameters, or their moving average (runs trained with ema.decay > 0).",
)
flags.DEFINE_bool(
    "figures",
    True,
    "Write figures: confusion matrix (classification), "
    "first-layer kernels and feature maps (conv models).",
)
# --dataset.FIELD=VALUE evaluates on another dataset than the run's own, e.g. the
# weights of experiments.import_weights on an image folder.
common.define_config_dict("dataset", base_config().dataset, lock_config=True)
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    from dl.train import CheckpointError
    from dl.train.evaluation import evaluate

    fields = {
        k: FLAGS.dataset[k]
        for k in FLAGS.dataset
        if f"dataset.{k}" in FLAGS and FLAGS[f"dataset.{k}"].present
    }
    try:
        result = common.guard(
            lambda: evaluate(
                FLAGS.workdir,
                FLAGS.checkpoint,
                FLAGS.split,
                FLAGS.figures,
                dataset_fields=fields,
                weights=FLAGS.weights,
            )
        )
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
