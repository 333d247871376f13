r"""Predicts with a trained run on new raw inputs, prepared as training prepared its data.

    python -m experiments.predict --workdir=runs/mlp_digits [--checkpoint=latest|best|STEP] \
        --input=new.npz --output=predictions.csv

--input is one of:
  FILE.npz   array `x` of raw examples [n, ...] (before resizing and standardization),
             plus the other fields the model takes (graphs: senders, receivers, n_node,
             n_edge; token models: x as token ids); other arrays are ignored;
  FILE.csv   the feature columns the run was trained on (csv:PATH), by name, in any
             order; other columns (the label) are ignored;
  FILE.txt   one source (seq2seq) or prompt (char-LM) per line;
  FOLDER     images (PNG/JPEG/BMP/GIF), flat or in one sub-folder per class, read and
             resized as the run's images:PATH were; the output adds each `file`.
--output is FILE.npz (one array per prediction field) or FILE.csv (one row per example).
The fields are those of dl.load(workdir).predict: probabilities and labels, values in
the data's units, boxes/scores/classes/valid after NMS, decoded sequences, ...

Prints one JSON line (the step, the number of examples, the fields written).

Exit status: 0 done; 2 a bad flag, input or output (the message says what); 4 no
checkpoint could be restored.
"""

from __future__ import annotations

import os

from absl import app, flags

from experiments import common

flags.DEFINE_string("workdir", None, "A directory written by experiments.train.")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("input", None, "Raw inputs: .npz, .csv, .txt or a folder of images.")
flags.DEFINE_string("output", None, "Where to write the predictions: .npz or .csv.")
flags.mark_flags_as_required(["workdir", "input", "output"])

FLAGS = flags.FLAGS


def predict(workdir: str, checkpoint: str, input_path: str, output: str) -> dict:
    """Loads the run, predicts on the inputs and writes them; returns what the binary prints."""
    import dl
    from dl.data.prediction_files import check_output, read_inputs, write_predictions

    check_output(output)
    predictor = dl.load(workdir, checkpoint)
    inputs = read_inputs(input_path, predictor.preprocessing)
    files = inputs.pop("file", None)
    predictions = predictor.predict(inputs)
    if files is not None:
        predictions = {"file": files, **predictions}
    write_predictions(output, predictions)
    return {
        "workdir": os.path.abspath(workdir),
        "checkpoint": checkpoint,
        "step": predictor.step,
        "input": input_path,
        "output": output,
        "examples": int(len(next(iter(predictions.values())))),
        "fields": list(predictions),
    }


def main(argv):
    common.reject_positional(argv)
    common.setup_jax()
    common.read_workdir(lambda: predict(FLAGS.workdir, FLAGS.checkpoint, FLAGS.input, FLAGS.output))


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
