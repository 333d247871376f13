r"""Trains an experiment.

    python -m experiments.train --config=experiments/configs/mlp_digits.py \
        --workdir=runs/mlp_digits [--config.FIELD=VALUE ...]

Writes checkpoints, config.json and metrics.jsonl into --workdir and prints a
final summary line (JSON). Running the same command again on the same workdir
resumes from the latest checkpoint.

Exit status: 0 done; 2 bad flag, config or input, or a workdir that another
train is writing (it holds WORKDIR/.lock); 3 non-finite values stopped
training; 4 no checkpoint could be restored; 74 a file of the workdir could not
be written (disk full, I/O error: what was saved before is intact); 75
preempted by SIGTERM after writing a checkpoint of the current step (re-run to
resume).
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summaries.")
flags.mark_flags_as_required(["config", "workdir"])

FLAGS = flags.FLAGS


def main(argv):
    common.exit_on_sigterm()  # the loop takes SIGTERM over while it trains
    common.reject_positional(argv)
    config = common.load_config_flag("config")
    common.setup_jax()
    from dl.errors import InputWorkerError
    from dl.train import CheckpointError, NonFiniteError, Preempted, WriteError, train

    try:
        summary = common.guard(lambda: train(config, FLAGS.workdir))
    except NonFiniteError as e:
        common.fail(str(e), common.EXIT_NONFINITE)
    except CheckpointError as e:
        common.fail(str(e), common.EXIT_NO_CHECKPOINT)
    except Preempted as e:
        common.fail(str(e), common.EXIT_PREEMPTED)
    except WriteError as e:
        common.fail(str(e), common.EXIT_IO)
    except InputWorkerError as e:
        common.fail(str(e), common.EXIT_INPUT_WORKER)
    except OSError as e:  # a workdir file other than a checkpoint or metrics.jsonl
        common.fail(f"cannot write {e.filename or FLAGS.workdir}: {e.strerror}", common.EXIT_IO)
    from dl.train.sharding import is_lead

    if is_lead():
        print("summary " + json.dumps(summary), flush=True)
        if summary.get("message"):
            print(summary["message"], flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
