r"""What checkpoint checksums cost: save and restore of a train state with and without them.

    python -m benchmarks.checkpoint_cost [--config=resnet50] [--repeats=7]

Builds the config's train state (ResNet-50 with momentum: 25.6M parameters,
their momentum and the batch statistics, ~205 MB), then times, in the same
process and interleaved, orbax saves with dl's three items (state, meta,
checksums) against saves of state and meta alone, and restores with the
verification against plain restores. Prints one JSON line of medians:

  sums_seconds           the checksum computation alone on the device
  save_call_seconds      what `save` blocks the training thread for
  save_total_seconds     from `save` until the step is committed
  restore_seconds        restore of the state, with and without verification
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from dl.train import Checkpoints, build, checksums
from dl.train.checkpoint import _manager, abstract


def _plain_save(manager, step, state, meta):
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="resnet50")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    config = importlib.import_module(f"experiments.configs.{a.config}").get_config()
    exp = build(config)
    state = jax.block_until_ready(exp.init_state())
    nbytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
    meta = {"config": {"name": a.config}}
    root = tempfile.mkdtemp(prefix="dl-ckpt-cost-")
    names, leaves = checksums._named_leaves(state)
    jax.block_until_ready(checksums._sums(leaves))  # compiled
    times = {k: [] for k in ("sums", "call_dl", "total_dl", "call_plain", "total_plain")}
    times.update(restore_dl=[], restore_plain=[])
    dl_ckpts = Checkpoints(os.path.join(root, "dl"), keep=2)
    plain = _manager(os.path.join(root, "plain", "checkpoints"), 2, "plain")
    reader = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    ab = abstract(state)
    for step in range(1, a.repeats + 1):
        t = time.perf_counter()
        jax.block_until_ready(checksums._sums(leaves))
        times["sums"].append(time.perf_counter() - t)
        for kind in ("dl", "plain"):
            t = time.perf_counter()
            if kind == "dl":
                dl_ckpts.save(step, state, meta)
                times["call_dl"].append(time.perf_counter() - t)
                dl_ckpts.wait()
            else:
                _plain_save(plain, step, state, meta)
                times["call_plain"].append(time.perf_counter() - t)
                plain.wait_until_finished()
            times[f"total_{kind}"].append(time.perf_counter() - t)
        t = time.perf_counter()
        jax.block_until_ready(Checkpoints(os.path.join(root, "dl"), read_only=True).restore(ab))
        times["restore_dl"].append(time.perf_counter() - t)
        t = time.perf_counter()
        path = os.path.join(root, "plain", "checkpoints", str(step))
        args = ocp.args.Composite(state=ocp.args.StandardRestore(ab), meta=ocp.args.JsonRestore())
        jax.block_until_ready(reader.restore(path, args=args)["state"])
        times["restore_plain"].append(time.perf_counter() - t)
    dl_ckpts.close()
    plain.close()
    shutil.rmtree(root, ignore_errors=True)
    med = {k: round(float(np.median(v[1:] if len(v) > 2 else v)), 4) for k, v in times.items()}
    print(
        json.dumps(
            {
                "config": a.config,
                "leaves": len(names),
                "state_mb": round(nbytes / 2**20, 1),
                "device": jax.devices()[0].device_kind,
                "cpu": _cpu_name(),
                "repeats": a.repeats,
                "sums_seconds": med["sums"],
                "save_call_seconds": {"checksums": med["call_dl"], "plain": med["call_plain"]},
                "save_total_seconds": {"checksums": med["total_dl"], "plain": med["total_plain"]},
                "restore_seconds": {"verified": med["restore_dl"], "plain": med["restore_plain"]},
            }
        )
    )


if __name__ == "__main__":
    main()
