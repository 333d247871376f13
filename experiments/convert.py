r"""Writes a dataset as ArrayRecord shards that dataset.pipeline='stream' reads.

    python -m experiments.convert --input=images:DIR --output=DIR_OUT --shards=8 \
        [--image_size=64 --channels=3]
    python -m experiments.train --config=... --config.dataset.name=array_record:DIR_OUT \
        --config.dataset.pipeline=stream --config.dataset.workers=2

--input is any dataset dl reads: a built-in name (digits, iris, ...), npz:PATH,
csv:PATH, images:DIR (read one image at a time, never all at once),
parquet:PATH. The splits are dl's own split of the input (the same flags as
the dataset config: --validation_fraction, --test_fraction, --split_seed), made
once here, so a streamed run trains, validates and tests on the same examples
as a run of the input in memory; for inputs read whole, the standardization
statistics of the training split are stored too, computed as in memory.
--repeat=N writes the training split N times over (large files for benchmarks).

Prints one JSON line: the output, its splits and their sizes, bytes written.
Exit status: 0 done; 2 a bad flag or input (the message says what).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from experiments import common

flags.DEFINE_string("input", None, "The dataset to convert: a dataset.name dl reads.")
flags.DEFINE_string("output", None, "The directory to write (created; must be empty).")
flags.DEFINE_integer("shards", 4, "ArrayRecord files per split (fewer for small splits).")
flags.DEFINE_float("validation_fraction", 0.15, "As dataset.validation_fraction.")
flags.DEFINE_float("test_fraction", 0.2, "As dataset.test_fraction.")
flags.DEFINE_integer("split_seed", 0, "As dataset.split_seed.")
flags.DEFINE_integer("image_size", None, "As dataset.image_size (images, digits).")
flags.DEFINE_integer("channels", None, "As dataset.channels (images).")
flags.DEFINE_string("label_column", None, "As dataset.label_column (csv, parquet).")
flags.DEFINE_string("kind", None, "As dataset.kind (npz, csv).")
flags.DEFINE_integer("repeat", 1, "Write the training split this many times over.")
flags.DEFINE_enum(
    "compression", "default", ["default", "uncompressed"], "ArrayRecord's compression, or none."
)
flags.mark_flags_as_required(["input", "output"])

FLAGS = flags.FLAGS


def dataset_config():
    """The dataset config the flags describe, as a run's `dataset` field."""
    from dl.config import base_config

    cfg = base_config().dataset
    cfg.name = FLAGS.input
    for name in ("validation_fraction", "test_fraction", "split_seed"):
        setattr(cfg, name, getattr(FLAGS, name))
    for name in ("image_size", "channels", "label_column", "kind"):
        if getattr(FLAGS, name) is not None:
            setattr(cfg, name, getattr(FLAGS, name))
    return cfg


def main(argv) -> None:
    common.reject_positional(argv)
    common.setup_jax()
    from dl.data.convert import convert

    if FLAGS.shards < 1 or FLAGS.repeat < 1:
        common.fail(f"--shards and --repeat must be >= 1, got {FLAGS.shards}, {FLAGS.repeat}")
    if os.path.exists(FLAGS.output) and (
        not os.path.isdir(FLAGS.output) or os.listdir(FLAGS.output)
    ):
        common.fail(f"--output {FLAGS.output!r} exists and is not an empty directory")
    result = common.guard(
        lambda: convert(
            dataset_config(), FLAGS.output, FLAGS.shards, FLAGS.repeat, FLAGS.compression
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
