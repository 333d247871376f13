r"""Imports pretrained weights from a local file into a new workdir (nothing is downloaded).

    python -m experiments.import_weights --format=torchvision --arch=resnet50 \
        --file=resnet50.safetensors --output=runs/resnet50_torchvision

Reads torchvision's state dict of ResNet-18/34/50/101/152 or AlexNet from a
`.safetensors` file (needs the safetensors package: `pip install -e
".[weights]"`) or a `.pth` file (needs PyTorch), and writes a workdir that
`init_from.workdir`, `experiments.evaluate` and `dl.load` read: config.json,
a step-0 checkpoint, preprocessing.npz (torchvision's input normalization)
and import.json. Every key of the file must fill one of dl's variables, and
every variable must be filled with a matching shape; otherwise the error
lists the keys, and nothing is written. An --output that already holds the
import of the same file is left as it is. Prints one JSON line.

Exit status: 0 done; 2 a bad flag, a file that is not the architecture's
state dict, or an --output that is in use.
"""

from __future__ import annotations

import json

from absl import app, flags

from experiments import common

flags.DEFINE_string("format", "torchvision", "Naming convention of the file: torchvision.")
flags.DEFINE_string(
    "arch", None, "Architecture: resnet18, resnet34, resnet50, resnet101, resnet152 or alexnet."
)
flags.DEFINE_string("file", None, "The weights: a .safetensors or .pth state dict.")
flags.DEFINE_string("output", None, "The workdir to write (new or empty).")
flags.mark_flags_as_required(["arch", "file", "output"])

FLAGS = flags.FLAGS


def main(argv):
    common.reject_positional(argv)
    from dl.tools.torchvision_names import check_names

    common.guard(lambda: check_names(FLAGS.format, FLAGS.arch))  # before JAX starts
    common.setup_jax()
    from dl.tools.import_weights import import_weights

    result = common.guard(
        lambda: import_weights(FLAGS.format, FLAGS.arch, FLAGS.file, FLAGS.output)
    )
    if not result["written"]:
        print(
            f"{result['workdir']} already holds the import of {FLAGS.file} as {FLAGS.arch} "
            f"(sha256 {result['sha256'][:12]}...); nothing was written",
            flush=True,
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
