"""Property-based: no config override makes the binaries fail with a traceback.

Random `--config.FIELD=VALUE` overrides (real and misspelt fields, values of
every type, junk) go through the same parsing, loading and building the train
binary does. Each must either build an experiment or end in exit status 2
with a one-line message; any other exception is a bug. Values out of their
declared range (model fields, optimizer and schedule numbers, dataset
fractions) and bad flags of every binary that reads or trains runs end the
same way, before anything compiles.
"""

import dataclasses
import math
import re
import string
import time
import typing

import numpy as np
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_collections import config_flags

from conftest import config_path, load_config, run_binaries
from dl.config import Range
from dl.data.splits import FRACTION
from dl.errors import ConfigError
from dl.models import FIELD_RANGES, MODELS, build_model, check_fields, model_fields
from dl.train import build
from dl.train.experiment import RUN_RANGES
from dl.train.optim import GRAD_CLIP_RANGE, OPTIMIZER_RANGES, SCHEDULE_RANGES, make_optimizer
from experiments import common

FIELDS = [
    "seed",
    "batch_size",
    "num_train_steps",
    "steps_per_call",
    "task",
    "task.name",
    "eval_batch_size",
    "log_every_steps",
    "augment.horizontal_flip",
    "best_metric",
    "optimizer.name",
    "optimizer.learning_rate",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "schedule.name",
    "grad_clip_norm",
    "target_value",
    "early_stopping.min_delta",
    "nonfinite.max_consecutive_skips",
    "dataset.name",
    "dataset.validation_fraction",
    "dataset.test_fraction",
    "dataset.standardize",
    "model.name",
    "model.hidden_sizes",
    "model.activation",
    "model.num_outputs",
    "keep_checkpoints",
    "nonfinite.policy",
    "early_stopping.patience",
    "augment.crop_padding",
    "mesh.data",
    "mesh.fsdp",
    "dtype",
    "loss_scale.initial",
    "loss_scale.growth_interval",
    "loss_scale.factor",
    "modle.name",
    "optimizer.lr",
    "model.hiden_sizes",
    "",
    ".",
    "dataset..name",
]

VALUES = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "adam",
            "sgd",
            "mlp",
            "cnn",
            "xor",
            "digits",
            "relu",
            "True",
            "None",
            "(4,)",
            "(0,)",
            "()",
            "[1, 2]",
            "nan",
            "-1",
            "1e400",
            "npz:/nope",
            "images:/nope",
            "classification",
            "regression",
            "skip",
            "global",
            "float16",
            "bfloat16",
        ]
    ),
    st.text(string.printable, max_size=12),
)


def attempt(overrides, config="mlp_xor"):
    argv = ["train", f"--config={config_path(config)}", *overrides]
    fv = flags.FlagValues()
    # config_flags defines the override flags from the command line it is given.
    config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True, sys_argv=argv)
    common.parse_flags(argv, flag_values=fv)
    config = common.load_config_flag("config", flag_values=fv)
    common.guard(lambda: build(config))  # as the binaries: a ConfigError is exit 2 and a message
    return config


def out_of_range(config) -> list[str]:
    """The numbers of a config outside their declared ranges."""
    sections = [
        (config.optimizer, OPTIMIZER_RANGES, "optimizer."),
        (config.schedule, SCHEDULE_RANGES, "schedule."),
        (config, {"grad_clip_norm": GRAD_CLIP_RANGE}, ""),
        (config.dataset, dict.fromkeys(["validation_fraction", "test_fraction"], FRACTION), ""),
        (config.model, FIELD_RANGES, "model."),
    ]
    sections += [(config.get(k) if k else config, r, k) for k, r in RUN_RANGES.items()]
    return [
        f"{prefix}{field}={part[field]!r}"
        for part, ranges, prefix in sections
        for field, accepted in ranges.items()
        if part.get(field) is not None and not accepted.accepts(part[field])
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_random_overrides_build_or_exit_2_with_a_message(capsys, pairs):
    overrides = [f"--config.{field}={value}" for field, value in pairs]
    try:
        config = attempt(overrides)
    except SystemExit as e:
        assert e.code == 2, overrides
    else:  # what builds has every number in its range
        assert not out_of_range(config), overrides
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_a_good_override_builds():
    attempt(["--config.model.hidden_sizes=(8,)", "--config.optimizer.name=sgd"])


def test_a_known_bad_override_is_reported_as_a_message(capsys):
    with pytest.raises(SystemExit) as e:
        attempt(["--config.batch_size=abc"])
    assert e.value.code == 2
    assert "--config.batch_size=abc" in capsys.readouterr().err


def _numeric(value, hint) -> bool:
    if isinstance(value, tuple):
        return all(type(v) is int for v in value)
    return type(value) in (int, float) or (value is dataclasses.MISSING and hint in (int, float))


def test_every_numeric_model_field_has_a_declared_range_holding_its_default():
    for name, constructor in MODELS.items():
        cls = getattr(constructor, "func", constructor)
        hints = typing.get_type_hints(cls)
        fields = model_fields(constructor)
        unranged = [f for f, v in fields.items() if _numeric(v, hints.get(f))]
        unranged = [f for f in unranged if f not in FIELD_RANGES]
        assert not unranged, f"model {name}: numeric fields without a range: {unranged}"
        check_fields(constructor, {k: v for k, v in fields.items() if v is not dataclasses.MISSING})


def _out_of_range(r: Range) -> list:
    """Values just outside `r`, and values of the wrong kind."""
    out = []
    if r.low is not None:
        out.append(r.low if r.low_open else r.low - 1)
    if r.high is not None:
        out.append(r.high if r.high_open else r.high + 1)
    out += [2.5, True] if r.integer else [math.nan, math.inf, -math.inf, "0.5"]
    return [(1, v) if r.each and r.integer else [v] if r.each else v for v in out]


def test_every_model_field_with_a_range_refuses_values_outside_it():
    checked = 0
    for name, constructor in MODELS.items():
        fields = model_fields(constructor)
        needed = {k: 7 for k, v in fields.items() if v is dataclasses.MISSING}  # vocab sizes
        for field in sorted(set(fields) & set(FIELD_RANGES)):
            for bad in _out_of_range(FIELD_RANGES[field]):
                with pytest.raises(ConfigError) as e:
                    build_model({"name": name, **needed, field: bad})
                message = str(e.value)
                assert message.startswith(f"model.{field} must be {FIELD_RANGES[field]}, got ")
                assert repr(bad) in message, message
                checked += 1
    assert checked > 300


@pytest.mark.parametrize(
    "config,override,message",
    [
        (
            "mlp_digits",
            "model.dropout_rate=2.0",
            "model.dropout_rate must be a finite number in [0, 1), got 2.0",
        ),
        ("mlp_digits", "model.dropout_rate=nan", "in [0, 1), got nan"),
        ("mlp_digits", "model.hidden_sizes=(16,0)", "list of integers >= 1, got (16, 0)"),
        ("cnn_digits", "model.kernel_size=0", "model.kernel_size must be an integer >= 1, got 0"),
        ("gat_karate", "model.num_heads=0", "model.num_heads must be an integer >= 1, got 0"),
        ("rbf_xor", "model.init_width=inf", "model.init_width must be a finite number > 0"),
        ("lstm_digits", "model.num_layers=-1", "model.num_layers must be an integer >= 1"),
        (
            "mlp_xor",
            "optimizer.learning_rate=inf",
            "optimizer.learning_rate must be a finite number > 0, got inf",
        ),
        ("mlp_xor", "optimizer.learning_rate=-0.1", "> 0, got -0.1"),
        (
            "mlp_xor",
            "optimizer.momentum=nan",
            "optimizer.momentum must be a finite number in [0, 1), got nan",
        ),
        ("mlp_xor", "optimizer.momentum=1.0", "[0, 1), got 1.0"),
        (
            "mlp_xor",
            "optimizer.weight_decay=-1e-4",
            "optimizer.weight_decay must be a finite number >= 0",
        ),
        ("mlp_xor", "optimizer.weight_decay=inf", ">= 0, got inf"),
        ("mlp_xor", "grad_clip_norm=nan", "grad_clip_norm must be a finite number >= 0, got nan"),
        ("mlp_xor", "grad_clip_norm=-1.0", ">= 0, got -1.0"),
        ("mlp_xor", "early_stopping.min_delta=nan", "early_stopping.min_delta must be a finite"),
        ("mlp_xor", "target_value=inf", "target_value must be a finite number, got inf"),
        ("mlp_xor", "keep_checkpoints=0", "keep_checkpoints must be an integer >= 1, got 0"),
        (
            "mlp_xor",
            "dataset.validation_fraction=1.5",
            "validation_fraction must be a finite number in [0, 1), got 1.5",
        ),
        (
            "mlp_xor",
            "dataset.test_fraction=nan",
            "test_fraction must be a finite number in [0, 1), got nan",
        ),
        (
            "mlp_xor",
            "dataset.test_fraction=-0.25",
            "test_fraction must be a finite number in [0, 1), got -0.25",
        ),
        ("mlp_xor", "mesh.fsdp=0", "mesh.fsdp must be an integer >= 1, got 0"),
        ("mlp_xor", "mesh.data=-1", "mesh.data must be an integer >= 0, got -1"),
        ("mlp_xor", "mesh.fsdp=7", "mesh.data x mesh.fsdp must be the device count"),
        ("mlp_xor", "mesh.data=7", "got mesh.data=7, mesh.fsdp=1 (7 x 1 = 7)"),
        ("mlp_xor", "loss_scale.initial=0.5", "loss_scale.initial must be a finite number in [1"),
        ("mlp_xor", "loss_scale.growth_interval=0", "loss_scale.growth_interval must be an int"),
        ("mlp_xor", "loss_scale.factor=1.0", "loss_scale.factor must be a finite number > 1, got"),
        ("mlp_digits", "dataset.validation_fraction=0.5", None),  # builds
    ],
)
def test_values_out_of_range_exit_2_naming_field_value_and_range(capsys, config, override, message):
    overrides = [f"--config.{override}"]
    if message is None:
        attempt(overrides, config)
        return
    with pytest.raises(SystemExit) as e:
        attempt(overrides, config)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("b1", 1.0, "optimizer.b1 must be a finite number in [0, 1), got 1.0"),
        ("b2", math.nan, "optimizer.b2 must be a finite number in [0, 1), got nan"),
        ("eps", 0.0, "optimizer.eps must be a finite number > 0, got 0.0"),
        ("decay", -0.5, "optimizer.decay must be a finite number in [0, 1), got -0.5"),
    ],
)
def test_optimizer_numbers_a_config_file_sets_are_checked_too(field, value, message):
    config = load_config("mlp_xor")
    with config.unlocked():
        config.optimizer[field] = value
    with pytest.raises(ConfigError) as e:
        build(config)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "schedule,message",
    [
        ({"name": "cosine", "alpha": math.nan}, "schedule.alpha must be a finite number in [0, 1]"),
        ({"name": "cosine", "decay_steps": 0}, "schedule.decay_steps must be a finite number >= 1"),
        ({"name": "step", "boundaries": (0.5, -1)}, "schedule.boundaries must be a list of"),
        ({"name": "step", "decay_factor": math.inf}, "schedule.decay_factor must be a finite"),
        ({"name": "exponential", "decay_rate": 0.0}, "schedule.decay_rate must be a finite"),
        ({"name": "exponential", "transition_steps": -3}, "schedule.transition_steps must be"),
        ({"name": "warmup_cosine", "warmup_steps": -5}, "schedule.warmup_steps must be a finite"),
        ({"name": "warmup_cosine", "end_value": math.nan}, "schedule.end_value must be"),
        (
            {"name": "one_cycle", "pct_start": 1.0},
            "schedule.pct_start must be a finite number in (0, 1), got 1.0",
        ),
        ({"name": "one_cycle", "div_factor": 0}, "schedule.div_factor must be a finite number"),
    ],
)
def test_schedule_numbers_out_of_range_are_config_errors(schedule, message):
    config = load_config("mlp_xor")
    with config.unlocked():
        config.schedule = schedule
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_optimizer(config)


def _binary_cases(tmp_path) -> list[tuple[str, list[str], str]]:
    """(module, args, what the error line says) for bad flags of the binaries that read runs.

    Every case fails before anything compiles, except decode's on a run that
    is not seq2seq (it restores the checkpoint first).
    """
    run, xor = str(tmp_path / "run"), config_path("mlp_xor")
    digits, a_file = config_path("mlp_digits"), str(tmp_path / "a_file")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "other.csv").write_text("p,q\n1,2\n")
    np.savez(tmp_path / "wrong.npz", z=np.zeros((2, 2)))
    sweep = ["experiments.sweep", f"--config={xor}", f"--workdir={tmp_path / 'sweep'}"]
    lr = ["experiments.lr_find", f"--workdir={tmp_path / 'lr'}", f"--config={xor}"]
    predict = ["experiments.predict", f"--workdir={run}", f"--output={tmp_path / 'p.csv'}"]
    cases = [
        ("experiments.evaluate", "--checkpoint=newest", "--checkpoint must be 'latest', 'best'"),
        ("experiments.evaluate", "--split=dev", "--split=dev: value should be one of"),
        ("experiments.evaluate", "--figures=maybe", "Non-boolean argument to boolean flag"),
        ("experiments.evaluate", "--dataset.validation_fraction=1.5", "got 1.5"),
        ("experiments.evaluate", "--dataset.test_fraction=nan", "[0, 1), got nan"),
        ("experiments.evaluate", "--dataset.name=no_such_set", "unknown dataset 'no_such_set'"),
        ("experiments.evaluate", "--dataset.nme=digits", 'Did you mean "name"'),
        ("experiments.evaluate", "--dataset.name=csv:/no/such.csv", "csv file not found"),
        ("experiments.decode", "--beam_size=0", "--beam_size must be >= 1"),
        ("experiments.decode", "--show=-1", "--show must be >= 0, got -1"),
        ("experiments.decode", "--split=dev", "--split=dev: value should be one of"),
        ("experiments.decode", "--checkpoint=-3", "--checkpoint must be 'latest', 'best'"),
        ("experiments.decode", "", "free-running decoding needs a seq2seq model"),
    ]
    cases = [(m, [f"--workdir={run}", *([a] if a else [])], say) for m, a, say in cases]
    train = ["experiments.train", f"--config={digits}", f"--workdir={tmp_path / 'train'}"]
    cases += [  # the cases: trained to 8.6% accuracy, or exit 3 once training had started
        (*train[:1], [*train[1:], "--config.model.dropout_rate=2.0"], "in [0, 1), got 2.0"),
        (*train[:1], [*train[1:], "--config.optimizer.learning_rate=inf"], "> 0, got inf"),
        (
            *train[:1],
            [*train[1:], "--config.optimizer.name=momentum", "--config.optimizer.momentum=nan"],
            "optimizer.momentum must be a finite number in [0, 1), got nan",
        ),
    ]
    cases += [
        (*lr[:1], [*lr[1:], "--min_lr=nan"], "--min_lr must be a finite number > 0, got nan"),
        (*lr[:1], [*lr[1:], "--min_lr=0"], "--min_lr must be a finite number > 0, got 0.0"),
        (*lr[:1], [*lr[1:], "--max_lr=inf"], "--max_lr must be a finite number larger"),
        (*lr[:1], [*lr[1:], "--max_lr=1e-9"], "larger than --min_lr (1e-07), got 1e-09"),
        (*lr[:1], [*lr[1:], "--num_steps=3"], "--num_steps must be at least 10, got 3"),
        (*lr[:1], [*lr[1:], "--smoothing=1.0"], "--smoothing must be in [0, 1), got 1.0"),
        (*lr[:1], [*lr[1:], "--divergence_factor=nan"], "--divergence_factor must be > 1"),
        (*lr[:1], [*lr[1:], "--rule=median"], "--rule=median: value should be one of"),
        (*lr[:1], [*lr[1:], "--config.optimizer.momentum=nan"], "optimizer.momentum must be"),
        (*lr[:1], [*lr[1:], "--config.grad_clip_norm=-1.0"], "grad_clip_norm must be"),
        (*lr[:1], [*lr[1:], "--config.dataset.test_fraction=1.0"], "test_fraction must be"),
        (*lr[:1], [*lr[1:], "--config.model.hidden_sizes=(0,)"], "model.hidden_sizes must be"),
        ("experiments.lr_find", [f"--workdir={tmp_path}"], "no --config given"),
        (*sweep[:1], [*sweep[1:], "--sweep=optimizer.learning_rate=0.1,inf"], "got inf"),
        (*sweep[:1], [*sweep[1:], "--sweep=optimizer.momentum=nan"], "momentum must be"),
        (*sweep[:1], [*sweep[1:], "--sweep=model.hidden_sizes=(4,),(0,)"], "integers >= 1"),
        (*sweep[:1], [*sweep[1:], "--sweep=dataset.test_fraction=2.0"], "got 2.0"),
        (*sweep[:1], [*sweep[1:], "--sweep=no_field=1,2"], "sweep field 'no_field' does not"),
        (*sweep[:1], [*sweep[1:], "--sweep=batch_size"], "must be FIELD=V1,V2"),
        (*sweep[:1], sweep[1:], "give at least one --sweep"),
        (
            *sweep[:1],
            [*sweep[1:], "--sweep=seed=0,1", "--config.optimizer.learning_rate=-1.0"],
            "optimizer.learning_rate must be a finite number > 0, got -1.0",
        ),
        (
            "experiments.sweep",
            [
                f"--config={digits}",
                f"--workdir={tmp_path / 's2'}",
                "--sweep=model.dropout_rate=1.5",
            ],
            "model.dropout_rate must be a finite number in [0, 1), got 1.5",
        ),
        ("experiments.sweep", [f"--config={xor}", f"--workdir={a_file}", "--sweep=seed=1"], "file"),
        (*predict[:1], [*predict[1:], "--input=/no/such.npz"], "input not found"),
        (*predict[:1], [*predict[1:], f"--input={tmp_path / 'other.csv'}"], "is a CSV file, but"),
        (*predict[:1], [*predict[1:], f"--input={tmp_path / 'wrong.npz'}"], "lacks arrays ['x']"),
        (*predict[:1], [*predict[1:], f"--input={a_file}"], "unknown type"),
        (*predict[:1], [*predict[1:], "--input=x.npz", "--checkpoint=last"], "--checkpoint must"),
        (
            "experiments.predict",
            [f"--workdir={run}", f"--input={a_file}", f"--output={tmp_path / 'p.txt'}"],
            "has unknown type '.txt'",
        ),
    ]
    return cases


def test_bad_flags_of_the_binaries_that_read_runs_exit_2_with_an_error_line(tmp_path):
    """evaluate, decode, lr_find, sweep and predict: their own flags and their overrides."""
    run = str(tmp_path / "run")
    steps = [f"--config.{f}=4" for f in ("num_train_steps", "log_every_steps", "eval_every_steps")]
    train = [
        (
            "experiments.train",
            [
                f"--config={config_path('mlp_xor')}",
                f"--workdir={run}",
                *steps,
                "--config.checkpoint_every_steps=4",
            ],
        ),
    ]
    cases = _binary_cases(tmp_path)
    start = time.perf_counter()
    trained, *procs = run_binaries(train + [(m, a) for m, a, _ in cases])
    assert trained.returncode == 0, trained.stderr
    bad = []
    for (module, args, say), proc in zip(cases, procs, strict=True):
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        if proc.returncode != 2 or not last.startswith("error: ") or say not in last:
            bad.append(f"{module} {' '.join(args)}: exit {proc.returncode}, last line {last!r}")
        if "Traceback" in proc.stderr:
            bad.append(f"{module} {' '.join(args)}: a traceback:\n{proc.stderr}")
    assert not bad, "\n".join(bad)
    assert time.perf_counter() - start < 120
