r"""Learns a known convolution kernel from input/output image pairs and checks it.

    python -m experiments.learn_kernel --workdir=runs/learn_kernel \
        [--config=experiments/configs/learn_kernel.py] [--config.FIELD=VALUE ...]

Trains the config (a bias-free convolution on `conv_pairs` data) with the one
training loop, restores the final checkpoint, and compares the learned
kernel with the kernel that made the targets. Prints one JSON line with the
largest absolute error, writes kernel.json and kernel.png (true and learned
side by side) into the workdir, and exits 1 if the error is not below
--tolerance.
"""

from __future__ import annotations

import io
import json
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "configs", "learn_kernel.py"),
    "Experiment config (dataset conv_pairs, model conv_filter).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for the run.")
flags.DEFINE_float("tolerance", 1e-3, "Largest absolute kernel error accepted.")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def learn_kernel(config, workdir: str) -> dict:
    """Trains, then compares the learned kernel with the true one.

    Returns:
      {"max_abs_error", "true_kernel", "learned_kernel", ...}.
    """
    import numpy as np

    from dl.errors import ConfigError
    from dl.reporting.figures import save_kernel_pair
    from dl.train import Checkpoints, build, train

    if config.dataset.name != "conv_pairs" or config.model.name != "conv_filter":
        raise ConfigError("learn_kernel needs dataset 'conv_pairs' and model 'conv_filter'")
    summary = train(config, workdir, stream=io.StringIO())
    exp = build(config)
    state, _, step = Checkpoints(workdir, read_only=True).restore(exp.abstract_state())
    learned = np.asarray(state.params["conv"]["kernel"])[:, :, 0, 0]  # [k, k]
    true = np.asarray(config.dataset.kernel, np.float32)
    error = float(np.max(np.abs(learned - true)))
    save_kernel_pair(true, learned, os.path.join(workdir, "kernel.png"))
    result = {
        "step": step,
        "max_abs_error": error,
        "true_kernel": true.tolist(),
        "learned_kernel": learned.round(6).tolist(),
        "test_mse": summary["test"]["mse"],
    }
    with open(os.path.join(workdir, "kernel.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def main(argv):
    common.reject_positional(argv)
    config = common.load_config_flag("config")
    common.setup_jax()
    result = common.guard(lambda: learn_kernel(config, FLAGS.workdir))
    print(json.dumps(result), flush=True)
    if result["max_abs_error"] >= FLAGS.tolerance:
        common.fail(f"kernel error {result['max_abs_error']:.3g} is not below {FLAGS.tolerance}", 1)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
