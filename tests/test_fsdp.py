"""Parameters sharded over a mesh of data x fsdp CPU devices: the losses, shards and
checkpoints of one device."""

import json
import shutil

import numpy as np
import pytest

from conftest import (
    DEVICE_RUN_ARGS,
    config_path,
    devices_env,
    metric_events,
    run_binary,
    summary_of,
    train_losses,
)
from dl.errors import ConfigError
from dl.train.sharding import MIN_SHARDED_SIZE, mesh_shape, param_spec

# The schedule is constant so that a run resumed with more steps takes the same steps.
ARGS = [*DEVICE_RUN_ARGS, "--config.schedule.name=constant"]
SHARDED = ["--config.mesh.data=2", "--config.mesh.fsdp=4"]


def train(workdir, n: int, *args: str):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={workdir}",
        *ARGS,
        *args,
        env=devices_env(n),
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def evaluate(workdir, n: int) -> dict:
    proc = run_binary(
        "experiments.evaluate",
        f"--workdir={workdir}",
        "--split=validation",
        "--figures=false",
        env=devices_env(n),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_rule_splits_large_leaves_along_their_largest_dimension():
    assert param_spec((64, 1024), 4) == param_spec((64, 1024), 8) != param_spec((64, 1024), 1)
    assert tuple(param_spec((1024, 10), 4)) == ("fsdp",)
    assert tuple(param_spec((3, 3, 64, 64), 2)) == (None, None, None, "fsdp")  # ties: the last
    assert tuple(param_spec((MIN_SHARDED_SIZE // 8, 8), 2)) == ("fsdp",)
    assert tuple(param_spec((MIN_SHARDED_SIZE // 8 - 1, 8), 2)) == ()  # too small
    assert tuple(param_spec((1000, 30), 16)) == ()  # the largest dimension is not a multiple
    assert tuple(param_spec((), 4)) == ()
    assert mesh_shape({"data": 0, "fsdp": 4}, 8) == mesh_shape({"data": 2, "fsdp": 4}, 8)
    assert mesh_shape(None, 1) == mesh_shape({"data": 0, "fsdp": 1}, 1) == (1, 1)
    with pytest.raises(ConfigError, match="mesh.data x mesh.fsdp must be the device count, 1"):
        mesh_shape({"data": 0, "fsdp": 2}, 1)


@pytest.mark.parametrize(
    "mesh,shown",
    [
        (["--config.mesh.data=3", "--config.mesh.fsdp=2"], "(3 x 2 = 6)"),
        (["--config.mesh.fsdp=3"], "0 (the rest) with fsdp=3"),
    ],
)
def test_a_mesh_that_is_not_the_device_count_exits_2_with_the_message(tmp_path, mesh, shown):
    proc = run_binary(
        "experiments.train",
        f"--config={config_path('mlp_digits')}",
        f"--workdir={tmp_path}",
        *mesh,
        env=devices_env(8),
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "mesh.data x mesh.fsdp must be the device count, 8" in last, last
    assert shown in last and "with mesh.fsdp one of [1, 2, 4, 8]" in last, last
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_sharded_training_matches_one_device_and_checkpoints_cross_meshes(tmp_path):
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    summary_one = summary_of(train(one, 1).stdout)
    train(sharded, 8, *SHARDED)
    losses = train_losses(one)
    assert len(losses) == 24
    np.testing.assert_allclose(train_losses(sharded), losses, atol=1e-5)

    # Written sharded on 8 devices, evaluated on 1 (the stored mesh does not fit: all-data).
    own = metric_events(sharded, "validation")[-1]
    result = evaluate(sharded, 1)
    assert result["step"] == 24 and result["accuracy"] == own["accuracy"]
    assert result["loss"] == pytest.approx(own["loss"], abs=1e-6)

    # Written on 1 device, resumed from step 12 with fsdp=4 on 8: the steps of one device.
    resumed = tmp_path / "resumed"
    shutil.copytree(one, resumed)
    shutil.rmtree(resumed / "checkpoints" / "24")
    summary_resumed = summary_of(train(resumed, 8, "--config.mesh.fsdp=4").stdout)
    after = [e for e in metric_events(resumed, "train") if e["step"] > 12]
    assert [e["step"] for e in after] == list(range(13, 25))
    np.testing.assert_allclose([e["loss"] for e in after], losses[12:], atol=1e-5)
    for split in ("train", "validation", "test"):
        a, b = summary_resumed[split], summary_one[split]
        assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], abs=1e-5)


PROBE = r"""
import importlib.util, json, sys
import jax, numpy as np
from dl.train import Checkpoints, build
from dl.train.checkpoint import abstract
from dl.train.compilations import CompilationCounter
from dl.train.evaluator import device_arrays
from dl.train.feeder import Feeder
from dl.train.checksums import leaf_name

spec = importlib.util.spec_from_file_location("config", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
c = module.get_config()
c.model.dropout_rate, c.batch_size, c.ema.decay = 0.0, 64, 0.9
c.mesh.data, c.mesh.fsdp = 0, 4
exp = build(c)
state = exp.placed_init_state()
feeder = Feeder(exp, device_arrays(exp.dataset, exp.mesh)["train"], batch_size=64,
                steps_per_call=2, seed=0)
feeder.compile(state)
with CompilationCounter() as compilations:
    for _ in range(3):
        state, _ = feeder(state)
    jax.block_until_ready(state)
leaves = {}
for path, x in jax.tree_util.tree_leaves_with_path(state):
    leaves[leaf_name(path)] = {
        "shape": list(x.shape),
        "spec": [a for a in x.sharding.spec],
        "shards": sorted({tuple(s.data.shape) for s in x.addressable_shards}),
        "devices": len(x.addressable_shards),
        "indices": len({str(s.index) for s in x.addressable_shards}),
    }
ckpts = Checkpoints(sys.argv[2])
ckpts.save(int(state.step), state, {})
ckpts.wait()
restored = ckpts.restore(exp.abstract_state())[0]
ckpts.close()
same = all(
    a.sharding == b.sharding and np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state))
)
print(json.dumps({"mesh": dict(exp.mesh.shape), "step": int(state.step), "leaves": leaves,
                  "compilations": compilations.count, "restored_same": same}))
"""


@pytest.mark.slow
def test_each_device_holds_a_quarter_of_the_large_leaves(tmp_path):
    (tmp_path / "fsdp_probe.py").write_text(PROBE)
    proc = run_binary(
        "fsdp_probe",
        config_path("mlp_digits"),
        str(tmp_path / "ckpt"),
        env=devices_env(8),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mesh"] == {"data": 2, "fsdp": 4} and out["step"] == 6
    assert out["compilations"] == 0  # the donated state kept its shardings from call to call
    assert out["restored_same"]
    leaves = out["leaves"]
    large = {  # (full shape, each device's shard)
        "hidden_0/kernel": ([64, 1024], (64, 256)),
        "output/kernel": ([1024, 10], (256, 10)),
    }
    for prefix in ("params", "ema_params", "opt_state/0/0/mu", "opt_state/0/0/nu"):
        for name, (shape, shard) in large.items():
            leaf = leaves[f"{prefix}/{name}"]
            assert leaf["shape"] == shape and leaf["shards"] == [list(shard)], (prefix, leaf)
            assert "fsdp" in leaf["spec"] and leaf["devices"] == 8 and leaf["indices"] == 4
        for name in ("hidden_0/bias", "output/bias"):  # small: replicated
            leaf = leaves[f"{prefix}/{name}"]
            assert leaf["shards"] == [leaf["shape"]] and leaf["indices"] == 1, (prefix, leaf)
    for name in ("step", "rng", "skipped", "halted", "opt_state/0/0/count"):
        assert leaves[name]["indices"] == 1 and leaves[name]["devices"] == 8, name
