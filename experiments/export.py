r"""Exports a trained run's predictions as one function serialized with jax.export.

    python -m experiments.export --workdir=runs/mlp_digits --output=model.jax \
        [--checkpoint=latest|best|STEP] [--platforms=cpu,cuda]

The function holds the preprocessing (a loader's resize and the standardization
of numeric inputs), the model in inference mode with the checkpoint's parameters,
and the task's numeric predictions: probabilities and labels; values in the data's
units; boxes, scores, classes and valid after NMS; for seq2seq, token ids in and
greedily decoded token ids out. Its batch size is symbolic; it is lowered for every
platform of --platforms (dl's CPU fast paths off). Beside it, OUTPUT with the suffix
.json describes the inputs and outputs. Loading it needs only jax and numpy (and
flatbuffers): see README.md, "Predict and export".

Prints one JSON line (the files written and the description).

Exit status: 0 done; 2 a bad flag or not a run directory; 4 no checkpoint could be
restored.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train.")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("output", None, "The serialized function, e.g. model.jax.")
flags.DEFINE_list("platforms", ["cpu", "cuda"], "Platforms to lower for (cpu, cuda, rocm, tpu).")
flags.mark_flags_as_required(["workdir", "output"])

FLAGS = flags.FLAGS

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def export(workdir: str, checkpoint: str, output: str, platforms) -> dict:
    """Exports the run to `output` and its description beside it; returns what is printed."""
    import dl
    from dl.errors import ConfigError
    from dl.train.predictor import export as export_predictor

    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ConfigError(f"--platforms must be some of {', '.join(PLATFORMS)}, got {platforms}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ConfigError(f"--output {output!r}: the folder {folder!r} does not exist")
    exported, description = export_predictor(dl.load(workdir, checkpoint), tuple(platforms))
    try:
        blob = bytes(exported.serialize())
    except ImportError as e:  # jax serializes with the flatbuffers package
        raise ConfigError(f"cannot serialize: {e}") from None
    description.update(workdir=os.path.abspath(workdir), checkpoint=checkpoint)
    meta = os.path.splitext(output)[0] + ".json"
    _write(output, blob)
    _write(meta, json.dumps(description, indent=2).encode())
    return {"output": output, "description": meta, "bytes": len(blob), **description}


def _write(path: str, data: bytes) -> None:
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    common.read_workdir(
        lambda: export(FLAGS.workdir, FLAGS.checkpoint, FLAGS.output, FLAGS.platforms)
    )


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
