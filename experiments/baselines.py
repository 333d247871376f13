r"""Classic supervised baselines on exactly the splits of a dl experiment.

    python -m experiments.baselines --config=experiments/configs/logistic_breast_cancer.py \
        --workdir=runs/logistic_breast_cancer [--methods=knn,svm_rbf] [--config.FIELD=VALUE ...]

Loads the config's dataset as training does (same split, same
standardization), fits scikit-learn's logistic regression (linear regression
for regression data), Gaussian naive Bayes (classification only),
k-nearest neighbours, an SVM with an RBF kernel and a decision tree on the
training split, and scores them on train, validation and test. If --workdir
holds a finished dl run of the same dataset (summary.json), the network is
added as the last row. Writes WORKDIR/baselines.json and baselines.md and
prints one JSON line.

Exit status: 0 done; 2 bad flag, config or dataset.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory; a dl run there adds the network's row.")
flags.DEFINE_list("methods", [], "Subset of methods (default: all for the dataset's kind).")
flags.mark_flags_as_required(["config", "workdir"])

FLAGS = flags.FLAGS


def _run(config):
    from dl.errors import ConfigError
    from dl.tools import baselines

    if os.path.exists(FLAGS.workdir) and not os.path.isdir(FLAGS.workdir):
        raise ConfigError(f"--workdir {FLAGS.workdir!r} is a file, not a directory")
    result = baselines.run_baselines(config, FLAGS.methods or None, log=print)
    row = baselines.network_row(FLAGS.workdir)
    if row is not None:
        baselines.check_network(config, FLAGS.workdir)
        result["network"] = row
    result["files"] = baselines.write_tables(result, FLAGS.workdir)
    return result


def main(argv):
    common.reject_positional(argv)
    config = common.load_config_flag("config")
    result = common.guard(lambda: _run(config))
    metric = result["metric"]
    line = {
        "dataset": result["dataset"],
        "sizes": result["sizes"],
        f"test {metric}": {
            name: row["test"][metric] for name, row in result["methods"].items() if "test" in row
        },
        "files": result["files"],
    }
    if result.get("network") and "test" in result["network"]:
        line[f"test {metric}"]["network"] = result["network"]["test"].get(metric)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
