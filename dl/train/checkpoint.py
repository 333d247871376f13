"""Orbax checkpoints of the train state, with fallback past unreadable steps.

A workdir holds two orbax CheckpointManagers:

- `checkpoints/`: the latest `keep_checkpoints` steps, written every
  `checkpoint_every_steps` and at the end;
- `best/`: the step with the best validation `best_metric` so far.

Each checkpoint stores the whole TrainState and a JSON item `meta` (the
config it was written with, the loop's own counters). Orbax writes a step
into a temporary directory and renames it when complete, so a step killed
half-way is never listed; if a listed step cannot be read, restoring falls
back to the newest step that can, and says which one failed. A reader that
runs while training writes the same workdir (evaluation during training)
only sees committed steps, and a step that the writer's retention deletes
while it is being read is passed over for the newest step then on disk.
"""

from __future__ import annotations

import os
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

import dl.train.checksums as checksums
import dl.train.orbax_noise as orbax_noise
from dl.errors import ConfigError, WriteError

LATEST, BEST = "checkpoints", "best"
_WARNED: set = set()  # (directory, name) of non-step directories already warned about


class CheckpointError(RuntimeError):
    """No checkpoint could be restored."""


class _Manager(ocp.CheckpointManager):
    """A CheckpointManager that leaves JAX's preemption sync point to the training loop.

    orbax asks `reached_preemption_sync_point(step)` on every save, from its
    finalize thread too, only to log the answer. Each ask sets the step that
    JAX's preemption protocol reports for this process, so a save finishing
    as SIGTERM arrives could report an old step, and the agreed stop step
    could then fall behind every process, which would never stop. The loop
    alone reports steps (see dl/train/preemption.py, `PreemptionFlag`).
    """

    def reached_preemption(self, step: int) -> bool:
        return False


def _manager(directory: str, keep: int, kind: str) -> ocp.CheckpointManager:
    # Two managers save the same step (best and latest); with several processes
    # their barriers need distinct names.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        cleanup_tmp_directories=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=kind),
    )
    return _Manager(directory, options=options, item_names=("state", "meta", checksums.ITEM))


class Checkpoints:
    """The checkpoints of one workdir.

    Args:
      workdir: the run's directory.
      keep: how many of the latest steps to keep.
      read_only: open for restoring only (evaluation): no CheckpointManager is
        created, so nothing is written, cleaned up or deleted.

    >>> import tempfile, jax.numpy as jnp
    >>> ckpts = Checkpoints(tempfile.mkdtemp(), keep=2)
    >>> state = {"w": jnp.arange(3.0)}
    >>> ckpts.save(10, state, {"note": "any JSON"})
    >>> ckpts.wait()
    >>> restored, meta, step = ckpts.restore(abstract(state))
    >>> step, meta["note"], restored["w"].tolist()
    (10, 'any JSON', [0.0, 1.0, 2.0])
    >>> ckpts.close()
    """

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
        self.workdir = os.path.abspath(workdir)
        if keep < 1:
            raise ConfigError(f"keep_checkpoints must be >= 1, got {keep}")
        self.read_only = read_only
        orbax_noise.quiet()
        self._managers = {}
        self._writing: dict[str, int] = {}  # kind -> the step being written
        if not read_only:
            for kind, n in ((LATEST, keep), (BEST, 1)):
                self._managers[kind] = _manager(os.path.join(self.workdir, kind), n, kind)
        self._reader = ocp.Checkpointer(ocp.CompositeCheckpointHandler())

    def steps(self, kind: str = LATEST) -> list[int]:
        """The committed steps of `kind` on disk (a step still being written is not listed)."""
        path = self._path(kind)
        if not os.path.isdir(path):
            return []
        steps = []
        for d in os.listdir(path):
            if not (d.isdigit() and os.path.isdir(os.path.join(path, d))):
                continue
            if d != str(int(d)):
                if (path, d) not in _WARNED:
                    _WARNED.add((path, d))
                    logging.warning(
                        "%s is not a checkpoint step (steps are named %s): left alone",
                        os.path.join(path, d),
                        int(d),
                    )
                continue
            steps.append(int(d))
        return sorted(steps)

    def save(self, step: int, state, meta: dict, kind: str = LATEST) -> None:
        """Starts writing `state` at `step` (asynchronously); `wait` to finish.

        Raises:
          WriteError: this step, or the one written before, could not be
            written (disk full, I/O error); the steps committed before are intact.
        """
        self.check()
        self._writing[kind] = step
        try:
            self._managers[kind].save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    meta=ocp.args.JsonSave(meta),
                    **{checksums.ITEM: checksums.compute(state, meta)},
                ),
                force=True,
            )
        except Exception as e:
            raise self._write_error(kind, e) from e

    def check(self) -> None:
        """Raises WriteError if a checkpoint written in the background has failed (no wait)."""
        for kind, manager in self._managers.items():
            if kind in self._writing and not manager.is_saving_in_progress():
                self._finish(kind)

    def wait(self) -> None:
        """Waits for the checkpoints being written; raises WriteError if one failed."""
        for kind in self._managers:
            self._finish(kind)

    def _finish(self, kind: str) -> None:
        try:
            self._managers[kind].wait_until_finished()
        except Exception as e:
            raise self._write_error(kind, e) from e
        self._writing.pop(kind, None)

    def _write_error(self, kind: str, e: Exception) -> WriteError:
        step = self._writing.pop(kind, None)
        logging.debug("writing checkpoint step %s failed:", step, exc_info=e)
        cause = orbax_noise.os_error(e) or orbax_noise.summary(e)
        path = os.path.join(self._path(kind), str(step))
        kept = self.steps(kind)
        return WriteError(
            f"checkpoint step {step} could not be written to {path}: {cause}. "
            f"Steps kept in {self._path(kind)}: {kept}; once the cause is fixed, run the "
            "same command again to resume"
        )

    def close(self) -> None:
        """Finishes the writes in flight and closes; raises the first write that failed."""
        failure = None
        for kind in list(self._managers):
            try:
                self._finish(kind)
            except WriteError as e:
                failure = failure or e
            try:
                self._managers[kind].close()
            except Exception:  # noqa: BLE001 -- the failure was reported by _finish
                logging.debug("closing the %s manager failed", kind, exc_info=True)
        self._reader.close()
        if failure is not None:
            raise failure

    def read_meta(self, step: int, kind: str = LATEST) -> dict:
        """The JSON item of a checkpoint: its config and the loop's counters."""
        path = os.path.join(self._path(kind), str(step))
        items = {"meta": ocp.args.JsonRestore()}
        verified = os.path.isdir(os.path.join(path, checksums.ITEM))
        if verified:
            items[checksums.ITEM] = checksums.ChecksumRestore()
        restored = self._reader.restore(path, args=ocp.args.Composite(**items))
        if (
            verified
            and checksums.meta_crc(restored["meta"]) != restored[checksums.ITEM]["meta_crc"]
        ):
            raise checksums.ChecksumMismatch(f"{path}: the metadata differs from what was written")
        return restored["meta"]

    def restore(self, abstract_state, which: str | int = "latest"):
        """Restores a checkpoint into the structure of `abstract_state`.

        Safe while a run writes the same workdir: only committed steps are
        listed, and a step that the writer's retention deletes while it is
        being read is passed over for the newest step then on disk.

        Args:
          abstract_state: a TrainState of jax.ShapeDtypeStruct (or arrays),
            the structure, shapes, dtypes and shardings to restore into (the
            reader's, whatever mesh wrote the step); or None to restore the
            saved tree as it is (nested dicts of arrays on this process's first
            device, e.g. to take another run's parameters).
          which: "latest", "best", or a step number.

        Returns:
          (state, meta, step), or None if the workdir has no checkpoint.

        Raises:
          CheckpointError: checkpoints exist but none of them can be read; the
            message lists every path tried.
        """
        kind = BEST if which == "best" else LATEST
        wanted = None
        if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
            wanted = int(which)
            steps = self.steps(kind)
            if wanted not in steps:
                raise CheckpointError(
                    f"no checkpoint at step {wanted} in {self._path(kind)}; steps there: {steps}"
                )
        failed: dict[int, tuple[str, list[int]]] = {}  # step -> (why, the steps listed then)
        while True:
            # Listed anew after each failure: a concurrent writer commits a new
            # step before its retention deletes an old one.
            listed = self.steps(kind)
            candidates = [
                s for s in ([wanted] if wanted is not None else listed) if s not in failed
            ]
            if not candidates:
                break
            step = candidates[-1]
            path = os.path.join(self._path(kind), str(step))
            if abstract_state is not None:
                _check_fits(abstract_state, path)
            try:
                restored = self._restore_step(path, abstract_state)
            except Exception as e:  # noqa: BLE001 -- any unreadable step is skipped, and said
                orbax_noise.quiet()
                logging.debug("reading %s failed:", path, exc_info=True)
                failed[step] = (orbax_noise.summary(e), listed)
                continue
            unreadable = self._report(failed, kind)
            if unreadable:
                logging.warning(
                    "restored step %d after %d unreadable newer step(s)", step, len(unreadable)
                )
            return restored["state"], restored["meta"], step
        if not failed:
            return None
        unreadable = self._report(failed, kind)
        if not unreadable:
            raise CheckpointError(
                f"every checkpoint step of {self._path(kind)} that was read ({sorted(failed)}) "
                "was deleted while being read, by the run writing this workdir; try again"
            )
        raise CheckpointError("no readable checkpoint; tried:\n  " + "\n  ".join(unreadable))

    def _restore_step(self, path: str, abstract_state) -> dict:
        """One step's state and meta, its content verified against its checksums.

        Raises:
          ChecksumMismatch: a leaf or the metadata differs from what was written,
            or the state holds non-finite values.
        """
        verified = os.path.isdir(os.path.join(path, checksums.ITEM))
        if abstract_state is None:  # the saved tree, not the writer's devices
            abstract_state = _saved_tree(os.path.join(path, "state"))
        items = {
            "state": ocp.args.StandardRestore(abstract_state),
            "meta": ocp.args.JsonRestore(),
        }
        if verified:
            items[checksums.ITEM] = checksums.ChecksumRestore()
        restored = self._reader.restore(path, args=ocp.args.Composite(**items))
        if verified:
            checksums.verify(restored["state"], restored["meta"], restored[checksums.ITEM])
        else:
            checksums.check_finite(restored["state"])
            logging.warning(
                "%s has no checksums (written before dl recorded them): its content is not "
                "verified",
                path,
            )
        return restored

    def _report(self, failed: dict[int, tuple[str, list[int]]], kind: str) -> list[str]:
        """Logs the steps that failed to restore; returns 'path: reason' of the unreadable ones.

        A step that is gone from disk was deleted while it was read, by the
        retention of a run writing this workdir: no fault of the checkpoint,
        so it is logged as information only. Where the steps on disk have
        changed since (a writer is active), a failed step still present is
        given a moment to finish being deleted before it is called unreadable.
        """
        unreadable = []
        for step, (message, listed) in sorted(failed.items(), reverse=True):
            path = os.path.join(self._path(kind), str(step))
            if self.steps(kind) != listed:
                deadline = time.monotonic() + 1.0
                while os.path.isdir(path) and time.monotonic() < deadline:
                    time.sleep(0.02)
            if os.path.isdir(path):
                logging.error("checkpoint step %d at %s cannot be read: %s", step, path, message)
                unreadable.append(f"{path}: {message}")
            else:
                logging.info("checkpoint step %d at %s was deleted while being read", step, path)
        return unreadable

    def quarantine(self, newer_than: int, kind: str = LATEST) -> list[str]:
        """Moves unreadable steps newer than a restored one aside, into WORKDIR/unreadable/.

        Training resumed from an older step would otherwise meet them again
        (and could not write those steps anew). Nothing is deleted.

        Returns:
          The new paths of the moved steps.
        """
        if self.read_only:
            raise RuntimeError("a read-only Checkpoints never moves files")
        moved = []
        for step in self.steps(kind):
            if step > newer_than:
                target = _free_name(os.path.join(self.workdir, "unreadable", f"{kind}-{step}"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(os.path.join(self._path(kind), str(step)), target)
                logging.warning("moved unreadable checkpoint step %d to %s", step, target)
                moved.append(target)
        if moved:
            self._managers[kind].reload()
        return moved

    def discard_after(self, step: int, kind: str = BEST) -> list[int]:
        """Deletes steps of `kind` newer than `step`.

        A run resumed from `step` replays what came after it, deterministically,
        so a best checkpoint written later by the interrupted run is written
        again; keeping the old one would make best/ disagree with the replayed
        history (as metrics.jsonl is truncated to `step` too).
        """
        newer = [s for s in self.steps(kind) if s > step]
        for s in newer:
            self._managers[kind].delete(s)
        return newer

    def _path(self, kind: str) -> str:
        return os.path.join(self.workdir, kind)


def _check_fits(abstract_state, path: str) -> None:
    """Raises ConfigError listing the leaves of the step at `path` that do not fit the state."""
    differences = _shape_differences(abstract_state, os.path.join(path, "state"))
    if differences:
        raise ConfigError(
            f"checkpoint {path} does not fit the model and data of this config; "
            f"nothing was loaded. Differing leaves (checkpoint -> expected):\n  "
            + "\n  ".join(differences[:20])
            + (f"\n  ... and {len(differences) - 20} more" if len(differences) > 20 else "")
        )


def _free_name(path: str) -> str:
    """`path`, or `path.1`, `path.2`, ... if taken (the same step can be set aside twice)."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate


def _saved_metadata(state_dir: str):
    """The saved state's tree of array metadata (shape, dtype, the writer's sharding)."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax warns about an optional metadata file
    try:
        saved = ocp.StandardCheckpointer().metadata(state_dir)
    finally:
        logging.set_verbosity(verbosity)
    saved = getattr(saved, "item_metadata", saved)
    return getattr(saved, "tree", saved)


def _saved_tree(state_dir: str):
    """The saved state's structure as ShapeDtypeStructs on this process's first device.

    Without a target orbax restores onto the writer's devices, which fails on
    another topology (a run trained on 8 devices read on 1).
    """
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
        _saved_metadata(state_dir),
    )


def _shape_differences(abstract_state, state_dir: str) -> list[str]:
    """Leaves whose shape or presence differ between a saved state and the expected one.

    Returns [] when they agree, or when the metadata cannot be read (the
    restore itself then reports the unreadable step).
    """
    try:
        saved = _saved_metadata(state_dir)
    except Exception:  # noqa: BLE001 -- unreadable: restore decides and reports
        return []
    have = {
        checksums.leaf_name(p): tuple(getattr(x, "shape", ()))
        for p, x in jax.tree_util.tree_leaves_with_path(saved)
    }
    if not have:
        return []  # metadata lost with the arrays: an unreadable step, not a mismatch
    want = {
        checksums.leaf_name(p): tuple(x.shape)
        for p, x in jax.tree_util.tree_leaves_with_path(abstract_state)
    }
    out = []
    for name in sorted(set(have) | set(want)):
        a, b = have.get(name, "absent"), want.get(name, "absent")
        if a != b:
            out.append(f"{name}: {a} -> {b}")
    return out


def abstract(tree):
    """The ShapeDtypeStruct skeleton of a pytree of arrays (keeps shardings)."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )
