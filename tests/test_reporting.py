"""Progress display and the metrics file."""

import io
import json
import os

from dl.train.reporting import MetricWriter, Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_with_eta_on_a_terminal():
    out = Terminal()
    p = Progress(100, stream=out)
    p.update(100, {"loss": 0.5})
    p.log("a line")
    p.close()
    text = out.getvalue()
    assert "\r[" in text and "ETA" in text and "100/100" in text and "a line\n" in text


def test_progress_writes_only_log_lines_to_a_file():
    out = io.StringIO()
    p = Progress(100, stream=out)
    for step in range(1, 101):
        p.update(step, {"loss": 1.0 / step})
    p.log("step 100 done")
    p.close()
    assert out.getvalue() == "step 100 done\n"


def test_metric_writer_drops_events_after_the_resumed_step(tmp_path):
    w = MetricWriter(str(tmp_path))
    for step in (10, 20, 30):
        w.write(step, "train", {"loss": float(step), "bad": float("nan")})
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "spl')  # a line cut short by a kill
    w = MetricWriter(str(tmp_path), resume_step=20)
    w.write(30, "train", {"loss": 3.0})
    w.close()
    events = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [e["step"] for e in events] == [10, 20, 30]
    assert events[0]["bad"] == "nan"


def test_training_writes_tensorboard_events_and_learning_curves(tmp_path):
    from conftest import load_config
    from dl.tools.tensorboard import read_scalars
    from dl.train import train

    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps, c.log_every_steps, c.eval_every_steps = 40, 10, 20
    summary = train(c, str(tmp_path), stream=io.StringIO())
    scalars = read_scalars(str(tmp_path))
    events = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    logged = {e["step"]: e["loss"] for e in events if e["split"] == "train"}
    tb = dict(scalars["train/loss"])
    assert sorted(tb) == sorted(logged) == [10, 20, 30, 40]
    for step, loss in logged.items():
        assert abs(tb[step] - loss) < 1e-6
    assert "train/param_norm" in scalars and "validation/accuracy" in scalars
    assert os.path.getsize(summary["learning_curves"]) > 1000
