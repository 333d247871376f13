"""Property-based: no config override makes the binaries fail with a traceback.

Random `--config.FIELD=VALUE` overrides (real and misspelt fields, values of
every type, junk) go through the same parsing, loading and building the train
binary does. Each must either build an experiment or end in exit status 2
with a one-line message; any other exception is a bug.
"""

import string

import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_collections import config_flags

from conftest import config_path
from dl.errors import ConfigError
from dl.train import build
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
    "dataset.name",
    "dataset.validation_fraction",
    "dataset.standardize",
    "model.name",
    "model.hidden_sizes",
    "model.activation",
    "model.num_outputs",
    "keep_checkpoints",
    "nonfinite.policy",
    "early_stopping.patience",
    "augment.crop_padding",
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
        ]
    ),
    st.text(string.printable, max_size=12),
)


def attempt(overrides):
    argv = ["train", f"--config={config_path('mlp_xor')}", *overrides]
    fv = flags.FlagValues()
    # config_flags defines the override flags from the command line it is given.
    config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True, sys_argv=argv)
    common.parse_flags(argv, flag_values=fv)
    config = common.load_config_flag("config", flag_values=fv)
    try:
        build(config)
    except ConfigError:
        raise SystemExit(2) from None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_random_overrides_build_or_exit_2_with_a_message(capsys, pairs):
    overrides = [f"--config.{field}={value}" for field, value in pairs]
    try:
        attempt(overrides)
    except SystemExit as e:
        assert e.code == 2, overrides
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_a_good_override_builds():
    attempt(["--config.model.hidden_sizes=(8,)", "--config.optimizer.name=sgd"])


def test_a_known_bad_override_is_reported_as_a_message(capsys):
    with pytest.raises(SystemExit) as e:
        attempt(["--config.batch_size=abc"])
    assert e.value.code == 2
    assert "--config.batch_size=abc" in capsys.readouterr().err
