"""A researcher's own model, dataset, task and callbacks, without editing dl."""

import io
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import config_path, load_config, run_binary
from dl.data import from_arrays, raw_splits
from dl.errors import ConfigError
from dl.tasks import Classification
from dl.train import Action, Checkpoints, build, train
from dl.train.evaluation import read_run_config, restore_run

MY_NETS = """
import flax.linen as nn


class ResMLP(nn.Module):
    width: int = 32
    depth: int = 1
    num_outputs: int = 10

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.Dense(self.width)(x.reshape(x.shape[0], -1))
        for _ in range(self.depth):
            x = x + nn.Dense(self.width)(nn.relu(x))
        return nn.Dense(self.num_outputs)(nn.relu(x))
"""


def quiet(config, workdir, **kwargs):
    return train(config, str(workdir), stream=io.StringIO(), **kwargs)


def short(config, steps=60):
    config.num_train_steps = steps
    config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = steps // 2
    return config


@pytest.mark.slow
def test_a_model_named_by_import_path_is_found_again_by_every_binary(tmp_path):
    (tmp_path / "my_nets.py").write_text(MY_NETS)
    work = tmp_path / "run"
    flags = [
        "--config.model.name=my_nets:ResMLP",
        "--config.model.depth=2",
        "--config.num_train_steps=60",
        "--config.log_every_steps=30",
        "--config.eval_every_steps=30",
        "--config.checkpoint_every_steps=30",
    ]
    # A config of one's own lists its model's fields (model_config lists them all).
    config = tmp_path / "config.py"
    config.write_text(
        "from dl.models import model_config\n"
        "from experiments.configs.mlp_digits import get_config as base\n\n"
        "def get_config():\n    c = base()\n    c.model = model_config('my_nets:ResMLP')\n"
        "    return c\n"
    )
    proc = run_binary(
        "experiments.train", f"--config={config}", f"--workdir={work}", *flags, cwd=str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((work / "config.json").read_text())
    assert stored["model"] == {"name": "my_nets:ResMLP", "width": 32, "depth": 2}
    evaluated = run_binary("experiments.evaluate", f"--workdir={work}", cwd=str(tmp_path))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"] > 0.5
    # Without --config, lr_find reads the workdir's config.json and imports the model again.
    found = run_binary(
        "experiments.lr_find", f"--workdir={work}", "--num_steps=20", cwd=str(tmp_path)
    )
    assert found.returncode == 0, found.stderr
    # export imports the model again; the exported function, called with jax alone on the
    # raw test digits, gives the accuracy evaluate reported (preprocessing included).
    exported = run_binary(
        "experiments.export",
        f"--workdir={work}",
        f"--output={tmp_path / 'model.jax'}",
        "--platforms=cpu",
        cwd=str(tmp_path),
    )
    assert exported.returncode == 0, exported.stderr
    raw = raw_splits(read_run_config(str(work)).dataset)["test"]
    with open(tmp_path / "model.jax", "rb") as f:
        labels = np.asarray(jax.export.deserialize(f.read()).call(raw["x"])["labels"])
    accuracy = json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"]
    assert abs(float(np.mean(labels == raw["y"])) - accuracy) <= 1 / len(labels)
    # A model that needs the batch size as an int (len(x), as README's ResMLP) cannot be
    # traced with a symbolic one: exit 2, one line naming the model's line, no traceback.
    (tmp_path / "my_nets.py").write_text(MY_NETS.replace("x.shape[0]", "len(x)"))
    refused = run_binary(
        "experiments.export",
        f"--workdir={work}",
        f"--output={tmp_path / 'len.jax'}",
        "--platforms=cpu",
        cwd=str(tmp_path),
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "cannot be exported with a symbolic batch size" in refused.stderr
    assert "my_nets.py:12" in refused.stderr.strip().splitlines()[-1]
    (tmp_path / "my_nets.py").write_text(MY_NETS)
    # sweep builds every point (the import path) before training, then trains each; one
    # point of 10 steps shows it.
    swept = run_binary(
        "experiments.sweep",
        f"--config={config}",
        f"--workdir={tmp_path / 'sweep'}",
        *flags[:2],
        "--config.num_train_steps=10",
        "--config.log_every_steps=10",
        "--config.eval_every_steps=10",
        "--config.checkpoint_every_steps=10",
        "--sweep=model.width=8",
        cwd=str(tmp_path),
    )
    assert swept.returncode == 0, swept.stderr
    statuses = json.loads(swept.stdout.strip().splitlines()[-1])["statuses"]
    assert statuses == {"model.width=8": "done"}, swept.stdout
    point = json.loads((tmp_path / "sweep" / "model.width=8" / "config.json").read_text())
    assert point["model"] == {"name": "my_nets:ResMLP", "width": 8, "depth": 2}
    # The model's own fields are validated as dl's own models' are.
    typo = run_binary(
        "experiments.train",
        f"--config={config}",
        f"--workdir={tmp_path / 'b'}",
        "--config.model.name=my_nets:ResMLP",
        "--config.model.dept=2",
        cwd=str(tmp_path),
    )
    assert typo.returncode == 2 and "Traceback" not in typo.stderr


@pytest.mark.slow
def test_a_seq2seq_model_named_by_import_path_is_decoded_by_experiments_decode(tmp_path):
    work = tmp_path / "run"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('seq2seq_addition')}",
        f"--workdir={work}",
        "--config.model.name=dl.models.seq2seq:Seq2Seq",
        "--config.dataset.num_samples=500",
        "--config.dataset.max_digits=2",
        "--config.model.hidden_size=16",
        "--config.model.embed_dim=8",
        "--config.batch_size=32",
        "--config.num_train_steps=20",
        "--config.log_every_steps=20",
        "--config.eval_every_steps=20",
        "--config.checkpoint_every_steps=20",
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((work / "config.json").read_text())
    assert stored["model"]["name"] == "dl.models.seq2seq:Seq2Seq"
    decoded = run_binary("experiments.decode", f"--workdir={work}", "--show=0", cwd=str(tmp_path))
    assert decoded.returncode == 0, decoded.stderr
    result = json.loads(decoded.stdout.strip().splitlines()[-1])
    assert result["step"] == 20 and 0.0 <= result["token_accuracy"] <= 1.0


MY_DATA = """
import jax.numpy as jnp
import numpy as np

from dl.data import from_arrays
from dl.tasks import Classification


def load(config):
    rng = np.random.default_rng(0)  # config: the dataset section, e.g. config.get("seed")
    x = rng.normal(size=(240, 4)).astype(np.float32)
    return from_arrays(x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0), num_classes=3)


class WithErrorRate(Classification):
    metric_directions = {**Classification.metric_directions, "error_rate": "min"}

    def metrics(self, outputs, batch):
        out = super().metrics(outputs, batch)
        correct, count = out["accuracy"]
        return {**out, "error_rate": (count - correct, count)}
"""


@pytest.mark.slow
def test_a_dataset_and_a_task_named_by_import_path_are_imported_again_by_evaluate(tmp_path):
    (tmp_path / "my_data.py").write_text(MY_DATA)
    args = [
        f"--config={config_path('mlp_digits')}",
        "--config.dataset.name=my_data:load",
        "--config.task.name=my_data:WithErrorRate",
        "--config.model.hidden_sizes=(16,)",
        "--config.num_train_steps=20",
        "--config.log_every_steps=20",
        "--config.eval_every_steps=20",
        "--config.checkpoint_every_steps=20",
    ]
    work = tmp_path / "run"
    proc = run_binary("experiments.train", *args, f"--workdir={work}", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((work / "config.json").read_text())
    assert stored["dataset"]["name"] == "my_data:load"
    assert stored["task"]["name"] == "my_data:WithErrorRate"
    summary = json.loads(proc.stdout.split("summary ", 1)[1].splitlines()[0])
    assert summary["parameters"] == 4 * 16 + 16 + 16 * 3 + 3  # 4 features in, 3 classes out
    proc = run_binary("experiments.evaluate", f"--workdir={work}", "--nofigures", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error_rate"] == pytest.approx(1 - result["accuracy"])  # the task's own metric
    assert result["accuracy"] == summary["test"]["accuracy"]  # the same data, drawn again
    # A task or a dataset path that does not resolve: exit 2, one line naming both parts.
    for flag, message in (
        ("--config.task.name=my_data:NoSuchTask", "module 'my_data' has no attribute 'NoSuchTask'"),
        ("--config.dataset.name=no_such_data:load", "cannot import module 'no_such_data'"),
    ):
        bad = run_binary(
            "experiments.train", *args, flag, f"--workdir={tmp_path / 'bad'}", cwd=str(tmp_path)
        )
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        last = bad.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, bad.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_module:Net", "cannot import module 'no_such_module' for model"),
        ("my_nets:NoSuchNet", "module 'my_nets' has no attribute 'NoSuchNet'"),
        ("my_nets:helper", "needs a flax.linen.Module class"),
    ],
)
def test_an_import_path_that_does_not_resolve_is_one_line_naming_module_and_attribute(
    tmp_path, monkeypatch, name, message
):
    (tmp_path / "my_nets.py").write_text(MY_NETS + "\n\ndef helper():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    c = load_config("mlp_digits")
    c.model = {"name": name}
    with pytest.raises(ConfigError, match=message) as e:
        build(c)
    assert "\n" not in str(e.value)


def test_a_bad_import_path_from_the_command_line_exits_2_with_one_line(tmp_path):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={tmp_path}",
        "--config.model.name=no_such_module:Net",
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: cannot import module 'no_such_module' for model 'no_such_module:Net'")
    )


def test_objects_handed_to_train_are_recorded_and_needed_again_to_read_the_workdir(tmp_path):
    class Tiny(nn.Module):  # local: no import path
        num_outputs: int = 3

        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(self.num_outputs)(nn.relu(nn.Dense(16)(x)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0)
    source = from_arrays(x, y, num_classes=3)
    c = short(load_config("mlp_digits"))
    c.dataset.standardize = "none"
    c.model = {"name": "given"}  # a class handed in is built with the section's fields
    summary = quiet(c, tmp_path, model=Tiny, dataset=source)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model"]["name"] == "<object>:Tiny"
    assert stored["dataset"]["name"] == "<object>:Source"
    proc = run_binary("experiments.evaluate", f"--workdir={tmp_path}")
    assert proc.returncode == 2
    assert "handed to dl.train.train as a Python object" in proc.stderr
    _, exp, state, _ = restore_run(str(tmp_path), model=Tiny, dataset=source)
    from dl.train import Evaluator, device_arrays

    test = Evaluator(exp, device_arrays(exp.dataset, exp.mesh), 256)(state, "test")
    assert test == summary["test"]


def test_a_task_class_handed_in_takes_the_place_of_the_name(tmp_path):
    class Smoothed(Classification):
        """Classification with label smoothing: a task of one's own with a field."""

        def __init__(self, dataset, smoothing: float = 0.1):
            super().__init__(dataset)
            self.smoothing = smoothing

        def loss(self, outputs, batch):
            import optax

            labels = jax.nn.one_hot(batch["y"], outputs.shape[-1])
            smooth = optax.smooth_labels(labels, self.smoothing)
            return optax.softmax_cross_entropy(outputs, smooth), jax.numpy.ones(len(labels))

    c = short(load_config("mlp_digits"))
    with c.unlocked():
        c.task.smoothing = 0.2
    summary = quiet(c, tmp_path, task=Smoothed)
    assert summary["test"]["accuracy"] > 0.5
    with c.unlocked():
        c.task.smoothin = 0.2
    with pytest.raises(ConfigError, match="no field.*smoothin; its fields are: smoothing"):
        build(c, task=Smoothed)


def test_from_arrays_refuses_bad_data_before_anything_compiles(tmp_path):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ConfigError, match=r"example 9 has label 3, outside \[0, 3\)"):
        from_arrays(x, [0, 1, 2] * 3 + [3], num_classes=3)
    with pytest.raises(ConfigError, match="x has 10 examples but y has 9"):
        from_arrays(x, [0] * 9)
    with pytest.raises(ConfigError, match="split 'test' indexes example 12"):
        from_arrays(x, [0] * 10, splits={"train": [0, 1], "test": [12]})
    # A Source of one's own whose labels exceed num_classes is refused before training
    # (it gave a NaN loss at step 0 and the advice to lower the learning rate).
    source = from_arrays(x, [0, 1] * 5, num_classes=2)
    source.num_classes = 1
    c = short(load_config("mlp_digits"))
    with pytest.raises(ConfigError, match=r"label 1, outside \[0, 1\)"):
        quiet(c, tmp_path, dataset=source)
    # A non-finite value is refused when the data is split, naming the split and the example.
    bad = x.copy()
    bad[9, 2] = np.nan
    source = from_arrays(bad, [0, 1] * 5, splits={"train": range(8), "test": [8, 9]})
    message = r"field 'x': the test split's example 1 \(example 9 of the data\) holds nan at \(2,\)"
    with pytest.raises(ConfigError, match=message):
        quiet(c, tmp_path, dataset=source)


def test_from_arrays_takes_given_splits():
    rng = np.random.default_rng(1)
    parts = {
        s: (rng.normal(size=(n, 2)), rng.integers(0, 2, n))
        for s, n in (("train", 30), ("validation", 10), ("test", 5))
    }
    source = from_arrays(None, None, splits=parts)
    assert {s: len(i) for s, i in source.fixed_splits.items()} == {
        "train": 30,
        "validation": 10,
        "test": 5,
    }
    np.testing.assert_array_equal(
        source.x[source.fixed_splits["test"]], parts["test"][0].astype(np.float32)
    )


def test_a_csv_whose_labels_are_not_last_says_so_and_label_column_fixes_it(tmp_path):
    csv = tmp_path / "flowers.csv"
    rows = ["species,length,width"] + [
        f"{'setosa' if i % 2 else 'virginica'},{1 + i % 5}.5,{i % 3}.25" for i in range(60)
    ]
    csv.write_text("\n".join(rows) + "\n")
    args = [
        f"--config={config_path('logistic_breast_cancer')}",
        f"--workdir={tmp_path / 'w'}",
        f"--config.dataset.name=csv:{csv}",
        "--config.num_train_steps=20",
        "--config.log_every_steps=10",
        "--config.eval_every_steps=10",
        "--config.checkpoint_every_steps=10",
    ]
    proc = run_binary("experiments.train", *args)
    assert proc.returncode == 2
    assert "line 2, column 'species': 'virginica' is not a number" in proc.stderr
    assert "--config.dataset.label_column=species" in proc.stderr
    proc = run_binary("experiments.train", *args, "--config.dataset.label_column=species")
    assert proc.returncode == 0, proc.stderr
    rows[5] = "setosa,1.5,wide"
    csv.write_text("\n".join(rows) + "\n")
    proc = run_binary(
        "experiments.train", *args[:-0] or args, "--config.dataset.label_column=species"
    )
    assert proc.returncode == 2
    assert "line 6, column 'width': 'wide' is not a number" in proc.stderr


class StopAtAccuracy(Action):
    """Stops training once the validation accuracy reaches `value`."""

    name = "stop_at_accuracy"

    def __init__(self, value):
        self.value, self.reached_step = value, None

    def on_evaluate(self, loop, split, metrics):
        if split == "validation" and metrics["accuracy"] >= self.value:
            self.reached_step = loop.step
            loop.stop(f"validation accuracy {metrics['accuracy']:.3f} >= {self.value}")

    def state_dict(self):
        return {"reached_step": self.reached_step}

    def load_state_dict(self, state):
        self.reached_step = state.get("reached_step")


@pytest.mark.slow
def test_a_callback_stops_training_and_the_run_resumes_exactly(tmp_path):
    c = load_config("mlp_digits")
    c.model.dropout_rate = 0.0
    c.num_train_steps, c.log_every_steps = 400, 50
    c.eval_every_steps = c.checkpoint_every_steps = 50
    straight = quiet(c, tmp_path / "straight")
    callback = StopAtAccuracy(0.85)
    stopped = quiet(c, tmp_path / "cb", callbacks=[callback])
    step = stopped["step"]
    assert 0 < step < 400 and step == callback.reached_step
    assert stopped["stopped"]["reason"].startswith("validation accuracy")
    ckpts = Checkpoints(str(tmp_path / "cb"), read_only=True)
    assert ckpts.steps()[-1] == step  # the stop is saved at the step it was asked for
    assert ckpts.read_meta(step)["loop"]["stop_at_accuracy"] == {"reached_step": step}
    resumed = quiet(c, tmp_path / "cb")  # the same run again, without the callback
    assert resumed["step"] == 400
    exp = build(c)
    a = Checkpoints(str(tmp_path / "straight"), read_only=True).restore(exp.abstract_state())[0]
    b = Checkpoints(str(tmp_path / "cb"), read_only=True).restore(exp.abstract_state())[0]
    for p, q in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(p), np.asarray(q))
    assert resumed["test"] == straight["test"]


def test_callbacks_must_be_actions_with_names_of_their_own(tmp_path):
    c = short(load_config("mlp_digits"))
    with pytest.raises(ConfigError, match="is not a dl.train.actions.Action"):
        quiet(c, tmp_path, callbacks=[lambda loop: None])
    clash = StopAtAccuracy(1.0)
    clash.name = "best"
    with pytest.raises(ConfigError, match="two actions are named 'best'"):
        quiet(c, tmp_path, callbacks=[clash])


def _tree(workdir, config, which="latest"):
    ckpts = Checkpoints(str(workdir), read_only=True)
    return ckpts.restore(build(config).abstract_state(), which)[0]


@pytest.mark.slow
def test_init_from_loads_another_runs_weights_and_freeze_keeps_them(tmp_path):
    base = [
        f"--config={config_path('mlp_digits')}",
        "--config.num_train_steps=40",
        "--config.log_every_steps=20",
        "--config.eval_every_steps=20",
        "--config.checkpoint_every_steps=20",
        "--config.model.hidden_sizes=(64,)",
    ]
    a = run_binary("experiments.train", *base, f"--workdir={tmp_path / 'a'}")
    assert a.returncode == 0, a.stderr
    tuned = [
        *base,
        f"--config.init_from.workdir={tmp_path / 'a'}",
        "--config.init_from.checkpoint=20",  # a step of a's, not its latest (40)
        "--config.init_from.exclude=('output/.*',)",
        "--config.freeze=('hidden_0/.*',)",
    ]
    b = run_binary("experiments.train", *tuned, f"--workdir={tmp_path / 'b'}")
    assert b.returncode == 0, b.stderr
    c = load_config("mlp_digits")
    c.model.hidden_sizes, c.num_train_steps = (64,), 40
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 20
    first, latest = _tree(tmp_path / "a", c, 20), _tree(tmp_path / "a", c)
    c.freeze = ("hidden_0/.*",)
    second = _tree(tmp_path / "b", c)
    # Loaded and frozen: bitwise the first run's at step 20; excluded and trained: not.
    for leaf in ("kernel", "bias"):
        np.testing.assert_array_equal(
            second.params["hidden_0"][leaf], first.params["hidden_0"][leaf]
        )
    assert not np.array_equal(
        first.params["hidden_0"]["kernel"], latest.params["hidden_0"]["kernel"]
    )
    assert not np.array_equal(second.params["output"]["kernel"], first.params["output"]["kernel"])
    # A run with checkpoints of its own resumes from them, whatever init_from says.
    again = run_binary(
        "experiments.train",
        *tuned,
        "--config.num_train_steps=60",
        "--config.init_from.workdir=/no/such/run",
        f"--workdir={tmp_path / 'b'}",
    )
    assert again.returncode == 0, again.stderr


def test_init_from_refuses_leaves_that_do_not_fit_and_loads_nothing(tmp_path):
    c = short(load_config("mlp_digits"), 20)
    c.model.hidden_sizes = (32,)
    quiet(c, tmp_path / "a")
    c.model.hidden_sizes = (48,)
    c.init_from.workdir = str(tmp_path / "a")
    with pytest.raises(ConfigError) as e:
        quiet(c, tmp_path / "b")
    message = str(e.value)
    assert "nothing was loaded" in message
    assert "params/hidden_0/kernel: (64, 32) -> (64, 48)" in message
    assert "params/output/kernel: (32, 10) -> (48, 10)" in message
    assert not os.path.isdir(tmp_path / "b" / "checkpoints") or not os.listdir(
        tmp_path / "b" / "checkpoints"
    )
    c.init_from.exclude = ("hiden_0/.*",)
    with pytest.raises(ConfigError, match=r"init_from.exclude pattern\(s\) \['hiden_0/.\*'\]"):
        quiet(c, tmp_path / "b")
    c.init_from.exclude = ("hidden_0/.*", "output/.*")
    c.init_from.checkpoint = "best"  # a's best/ (its one evaluation, at step 20)
    assert quiet(c, tmp_path / "b")["step"] == 20


def test_freeze_patterns_must_name_parameters(tmp_path):
    c = short(load_config("mlp_digits"), 20)
    c.freeze = ("Dense_9/.*",)
    with pytest.raises(ConfigError, match=r"freeze pattern\(s\) \['Dense_9/.\*'\] match no"):
        build(c).init_state(from_data=False)


@pytest.mark.slow
def test_evaluate_takes_another_dataset_for_the_runs_model(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "digits.npz", x=digits.images[:, :, :, None], y=digits.target)
    run = tmp_path / "run"
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={run}",
        "--config.num_train_steps=200",
        "--config.checkpoint_every_steps=100",
        "--config.eval_every_steps=100",
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_binary(
        "experiments.evaluate",
        f"--workdir={run}",
        f"--dataset.name=npz:{tmp_path / 'digits.npz'}",
        "--figures=false",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dataset"] == f"npz:{tmp_path / 'digits.npz'}" and result["accuracy"] > 0.8
    proc = run_binary("experiments.evaluate", f"--workdir={run}", "--dataset.name=iris")
    assert proc.returncode == 2 and "does not fit the model" in proc.stderr
