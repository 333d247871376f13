"""dl.reporting: progress display, the metrics file, TensorBoard events, process figures."""

import io
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from conftest import ROOT, read_tensorboard
from dl.reporting import (
    RUN_FIELDS,
    MetricWriter,
    Progress,
    RunCounter,
    TensorBoardWriter,
    format_metrics,
    host_rss_mb,
    read_events,
)

STATUS = re.compile(r"^step \d+/\d+ \(\d+%\): [\d.]+ steps/s, ETA (\d\d:)+\d\d, elapsed ")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_with_eta_on_a_terminal():
    out = Terminal()
    p = Progress(100, stream=out)
    for step in range(1, 101):
        p.update(step)
    p.update(100, {"loss": 0.5})
    p.log("a line")
    p.close()
    text = out.getvalue()
    assert p.tty and "\r" in text and "100/100" in text and "a line\n" in text
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, [\d.]+step/s, loss=0.5\]", text), text


def test_progress_draws_its_bar_on_a_terminal_that_reports_no_size():
    master, replica = os.openpty()  # never sized: 0 columns, 0 lines
    try:
        with os.fdopen(replica, "w") as terminal:
            assert tuple(os.get_terminal_size(replica)) == (0, 0)
            p = Progress(10, stream=terminal)
            p.update(10, {"loss": 0.5})
            p.close()
        chunks = []
        while True:  # a pty hands the text over in parts; EIO once all is read
            try:
                chunks.append(os.read(master, 65536))
            except OSError:
                break
        text = b"".join(chunks).decode()
    finally:
        os.close(master)
    assert "10/10" in text and "loss=0.5" in text, repr(text)


def test_progress_in_a_file_writes_no_bar_only_lines_with_rate_and_eta():
    out = io.StringIO()
    p = Progress(200, first_step=100, stream=out, every_seconds=3600)
    for step in range(101, 201):
        p.update(step, {"loss": 1.0 / step} if step % 25 == 0 else None)
    p.log("step 200 done")
    p.close()
    text = out.getvalue()
    assert not p.tty and "\r" not in text and "#" not in text and "|" not in text
    lines = text.splitlines()
    assert lines[-1] == "step 200 done" and len(lines) == 5  # 4 log points, no flood
    for line, step in zip(lines[:4], (125, 150, 175, 200), strict=True):
        assert STATUS.match(line), line
        assert line.startswith(f"step {step}/200 ({step / 2:.0f}%)")
        assert line.endswith(f"; loss={1.0 / step:.4g}")
    assert "ETA 00:00" in lines[3]


def test_progress_in_a_file_writes_a_status_line_after_a_quiet_while():
    out = io.StringIO()
    p = Progress(10, stream=out, every_seconds=1.0)
    p.update(1)
    assert out.getvalue() == ""
    time.sleep(1.1)
    p.update(2)
    p.update(3)
    (line,) = out.getvalue().splitlines()
    assert STATUS.match(line) and line.startswith("step 2/10 (20%)")


def test_format_metrics_rounds_floats_only():
    values = {"loss": 0.123456, "epoch": 3, "lr": np.float32(1e-5), "mse": float("nan")}
    assert format_metrics(values) == "loss=0.1235 epoch=3 lr=1e-05 mse=nan"


def test_run_counter_numbers_runs_and_forwards_their_status_lines(tmp_path):
    lines = []
    runs = RunCounter(2, lines.append, every_seconds=0)
    for name in ("rnn", "lstm"):
        runs.start(name, "training")
        with open(tmp_path / f"{name}.log", "w") as log:
            p = Progress(40, stream=runs.stream(log))
            for step in range(1, 41):
                p.update(step, {"loss": 0.5} if step % 20 == 0 else None)
            p.log("validation accuracy=0.9")
            p.close()
        runs.finish("done")
    assert [line.split(": ")[0] for line in lines] == ["[1/2] rnn"] * 4 + ["[2/2] lstm"] * 4
    assert lines[0] == "[1/2] rnn: training" and lines[4] == "[2/2] lstm: training"
    assert STATUS.match(lines[1].split(": ", 1)[1]) and lines[2].startswith("[1/2] rnn: step 40/40")
    assert re.fullmatch(r"\[2/2\] lstm: done \([\d.]+ s\)", lines[-1])
    assert not any("validation" in line for line in lines)  # the log lines stay in the file
    logged = (tmp_path / "rnn.log").read_text().splitlines()
    assert len(logged) == 3 and logged[-1] == "validation accuracy=0.9"


def test_run_stream_limits_status_lines_on_the_console():
    lines = []
    runs = RunCounter(1, lines.append, every_seconds=3600)
    runs.start("a")
    p = Progress(100, stream=runs.stream())
    for step in range(10, 101, 10):
        p.update(step, {"loss": 1.0})
    assert len(lines) == 2 and lines[1].startswith("[1/1] a: step 10/100")


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
    assert events[0]["bad"] == "nan" and events[2]["loss"] == 3.0
    assert read_events(str(tmp_path / "metrics.jsonl")) == events


def test_tensorboard_reads_back_scalars_and_images_of_a_fresh_and_a_resumed_run(tmp_path, caplog):
    logdir = str(tmp_path / "tb")
    logged = {}
    with TensorBoardWriter(logdir) as writer:
        for step in (10, 20, 30, 40):
            train = {"loss": 1.0 / step, "accuracy": step / 50, "learning_rate": 0.01}
            train.update(grad_norm=step * 0.5, param_norm=3.0 + step, epoch="x")
            writer.scalars(step, "train", train)
            for k, v in train.items():
                if k != "epoch":
                    logged.setdefault(f"train/{k}", []).append((step, v))
        writer.scalars(40, "validation", {"loss": 0.25, "accuracy": "nan"})
        pixels = np.zeros((5, 7, 3), np.uint8)
        pixels[:, :, 0] = 255
        writer.image(40, "plots/red", pixels)
    assert not caplog.records  # a NaN is a value like another, not a warning
    scalars, images = read_tensorboard(logdir)
    assert set(scalars) == set(logged) | {"validation/loss", "validation/accuracy"}
    for tag, values in logged.items():
        assert [s for s, _ in scalars[tag]] == [s for s, _ in values]
        np.testing.assert_allclose([v for _, v in scalars[tag]], [v for _, v in values], rtol=1e-6)
    assert scalars["validation/loss"] == [(40, 0.25)]
    assert np.isnan(scalars["validation/accuracy"][0][1])

    from PIL import Image

    ((step, png),) = images["plots/red"]
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert step == 40 and image.shape == (5, 7, 3) and np.all(image[..., 0] == 255)

    # Resumed from its checkpoint at step 20: what the first run logged after 20 is gone.
    with TensorBoardWriter(logdir, resume_step=20) as writer:
        writer.scalars(30, "train", {"loss": 5.0})
        writer.scalars(40, "train", {"loss": 6.0})
    scalars, images = read_tensorboard(logdir)
    assert [s for s, _ in scalars["train/loss"]] == [10, 20, 30, 40]
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [0.1, 0.05, 5, 6], rtol=1e-6)
    assert [s for s, _ in scalars["train/accuracy"]] == [10, 20]
    assert "validation/loss" not in scalars and "plots/red" not in images

    # A fresh run in the same directory hides everything before it.
    with TensorBoardWriter(logdir) as writer:
        writer.scalars(5, "train", {"loss": 9.0})
    assert read_tensorboard(logdir)[0] == {"train/loss": [(5, 9.0)]}


def test_two_tensorboard_writers_opened_in_the_same_second_keep_both_files(tmp_path):
    logdir = str(tmp_path)
    time.sleep(1.0 - time.time() % 1.0)  # the start of a second: both open within it
    second = int(time.time())
    first = TensorBoardWriter(logdir)
    resumed = TensorBoardWriter(logdir, resume_step=20)
    assert int(time.time()) == second
    first.scalars(10, "train", {"loss": 1.0})
    first.scalars(20, "train", {"loss": 2.0})
    first.close()
    resumed.scalars(30, "train", {"loss": 3.0})
    resumed.close()
    files = [f for f in os.listdir(logdir) if "tfevents" in f]
    assert len(files) == 2 and {f.split(".")[3] for f in files} == {str(second)}
    assert read_tensorboard(logdir)[0]["train/loss"] == [(10, 1.0), (20, 2.0), (30, 3.0)]


def test_training_writes_tensorboard_events_and_learning_curves(tmp_path):
    from conftest import load_config
    from dl.train import train

    c = load_config("mlp_xor")
    c.target_metric = ""
    c.num_train_steps, c.log_every_steps, c.eval_every_steps = 40, 10, 20
    summary = train(c, str(tmp_path), stream=io.StringIO())
    scalars, images = read_tensorboard(str(tmp_path))
    events = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    logged = {e["step"]: e["loss"] for e in events if e["split"] == "train"}
    tb = dict(scalars["train/loss"])
    assert sorted(tb) == sorted(logged) == [10, 20, 30, 40]
    for step, loss in logged.items():
        assert abs(tb[step] - loss) < 1e-6
    assert "train/param_norm" in scalars and "validation/accuracy" in scalars
    assert os.path.getsize(summary["learning_curves"]) > 1000
    with open(summary["learning_curves"], "rb") as f:
        assert images["learning_curves"] == [(40, f.read())]
    train_keys = {k for e in events if e["split"] == "train" for k in e}
    assert train_keys - RUN_FIELDS == {"loss", "accuracy"}  # the loop writes RUN_FIELDS besides


def test_host_rss_mb_is_psutils_resident_set_and_follows_allocation():
    assert host_rss_mb() == pytest.approx(psutil.Process().memory_info().rss / 2**20, abs=2.0)
    # In a fresh process: a test worker's allocator may hand back pages it still holds.
    script = (
        "import numpy as np; from dl.reporting.system import host_rss_mb; before = host_rss_mb()\n"
        "block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, every page written\n"
        "print(host_rss_mb() - before)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) > 56


def test_importing_dl_leaves_the_matplotlib_backend_alone(tmp_path):
    """No module of dl selects a backend or imports pyplot, on import or when drawing."""
    script = """
import importlib, pkgutil, sys
import numpy as np
import dl
for module in pkgutil.walk_packages(dl.__path__, "dl."):
    importlib.import_module(module.name)
from dl.reporting import curves, figures
figures.save_confusion(np.eye(3, dtype=int), sys.argv[1] + "/cm", ["a", "b", "c"], "t")
figures.save_kernels(np.ones((3, 3, 1, 4)), sys.argv[1] + "/k.png")
with open(sys.argv[1] + "/metrics.jsonl", "w") as f:
    f.write('{"step": 1, "split": "train", "loss": 1.0}\\n')
curves.plot_learning_curves(sys.argv[1] + "/metrics.jsonl", sys.argv[1] + "/c.png")
import matplotlib
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    env = {**os.environ, "MPLBACKEND": "svg", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svg", "False"]
    for name in ("cm.png", "k.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_learning_curves_of_a_metrics_file(tmp_path):
    from dl.errors import ConfigError
    from dl.reporting import export_metrics
    from dl.reporting.curves import plot_learning_curves

    events = [{"step": s, "split": "train", "loss": 1.0 / s, "accuracy": 0.5} for s in (1, 2, 3)]
    events += [{"step": 3, "split": "validation", "loss": "nan", "accuracy": 0.4}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n{cut sho")
    png = tmp_path / "out" / "learning_curves.png"
    assert plot_learning_curves(str(path), str(png)) == str(png)
    assert png.read_bytes()[:4] == b"\x89PNG"

    assert export_metrics(str(path), str(tmp_path / "tb"), {"curves": str(png)}) == 4
    scalars, images = read_tensorboard(str(tmp_path / "tb"))
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [1.0, 0.5, 1 / 3], rtol=1e-6)
    assert np.isnan(scalars["validation/loss"][0][1])
    assert images["curves"] == [(3, png.read_bytes())]

    path.write_text("")
    assert plot_learning_curves(str(path), str(tmp_path / "none.png")) is None
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(ConfigError, match="cannot read metrics file"):
        plot_learning_curves(str(tmp_path / "missing.jsonl"), str(png))


RUN = {"grad_norm": 1.0, "learning_rate": 0.1, "steps_per_second": 9.0, "epoch": 1}
PANELS = {  # task: (train metrics, validation-only metrics, best_metric, expected panels)
    "classification": (["accuracy"], [], "accuracy", ["accuracy"]),
    "regression": (["mse", "mae"], [], "mse", ["mse", "mae"]),
    "sequence": (["token_accuracy", "exact_match"], [], "exact_match", None),
    "forecast": (["mse", "mae", "naive_mse", "naive_mae"], ["mse_ratio"], "", None),
    "detection": (
        ["coord_loss", "confidence_loss", "class_loss", "iou", "class_accuracy"],
        ["map50", "ap50_circle", "ap50_square"],
        "map50",
        ["map50", "iou", "class_accuracy"],
    ),
}


@pytest.mark.parametrize("task", sorted(PANELS))
def test_learning_curve_panels_start_with_the_best_metric(tmp_path, task):
    from PIL import Image

    from dl.reporting.curves import MAX_METRIC_PANELS, panel_metrics, plot_learning_curves

    train, validation_only, best, expected = PANELS[task]
    events = []
    for step in (10, 20, 30):
        metrics = {m: 1.0 / step for m in train}
        events.append({"step": step, "split": "train", "loss": 2.0 / step, **metrics, **RUN})
        extra = {m: 0.5 for m in validation_only}
        events.append({"step": step, "split": "validation", "loss": 3.0 / step, **metrics, **extra})
    panels = panel_metrics(events, best)
    if expected is not None:
        assert panels == expected
    if best:
        assert panels[0] == best
    assert len(panels) == min(MAX_METRIC_PANELS, len(train) + len(validation_only))
    assert not set(panels) & (RUN_FIELDS | {"loss"})
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events))
    png = plot_learning_curves(str(path), str(tmp_path / "curves.png"), best_metric=best)
    width, height = Image.open(png).size
    assert width == round(460 * (1 + len(panels))) and height == 360  # 4.6 x 3.6 in per panel


def test_confusion_matrix_figure_fits_its_classes(tmp_path):
    from PIL import Image

    from dl.reporting.figures import save_confusion

    save_confusion(np.array([[50, 3], [7, 40]]), str(tmp_path / "two"), None, "test confusion")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    counts = np.arange(81).reshape(9, 9)
    counts[0] = 0  # no example of the first class: its recall is undefined
    save_confusion(counts, str(tmp_path / "nine"), names, "validation confusion matrix")
    two = Image.open(tmp_path / "two.png").size
    nine = Image.open(tmp_path / "nine.png").size
    assert two[0] >= 450 and two[1] >= 380  # room for the title, the labels, the colour bar
    assert nine[0] > two[0] + 200 and nine[1] > two[1] + 200
    with open(tmp_path / "nine.json") as f:
        stored = json.load(f)
    assert stored["classes"] == names and stored["counts"] == counts.tolist()
    assert stored["recall"][0] is None and stored["recall"][8] == pytest.approx(80 / sum(counts[8]))


def test_reporting_is_a_bottom_layer():
    """dl.reporting imports no other part of dl (only dl.errors), nor JAX."""
    script = (
        "import json, sys, dl.reporting, dl.reporting.curves, dl.reporting.figures\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('dl') or m == 'jax']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert {m for m in loaded if not m.startswith("dl.reporting")} == {"dl", "dl.errors"}
