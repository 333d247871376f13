"""Checksums of a checkpoint's content, written with it and verified on every restore.

orbax checks a checkpoint's structure (tree, shapes, dtypes), not its
content: a flipped bit in an array file restores without a word. dl records
two 32-bit position-weighted sums of every leaf's bits (and a CRC-32 of
the metadata) as a third item of each checkpoint, `checksums`:

- The sums are computed on the device by one jitted call, dispatched when
  the save starts; the training thread does not wait for it. orbax's commit
  thread reads the result and writes `checksums/checksums.json` before the
  step is committed, so a committed step always has its checksums.
- Any single-bit change of a leaf changes its first sum (each word is
  multiplied by an odd weight, so a change of ±2^k in one word cannot vanish
  modulo 2^32); the second sum, over rotated words with other weights, makes
  other corruptions miss with a chance of the order of 2^-64. This guards
  against storage faults, not against deliberate tampering.
- `verify` recomputes the sums of the restored arrays and names the first leaf
  that differs, or holds non-finite values.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

ITEM = "checksums"
FILENAME = "checksums.json"
VERSION = 1


class ChecksumMismatch(RuntimeError):
    """A restored checkpoint's content differs from what was written."""


def leaf_name(path) -> str:
    """'params/Dense_0/kernel' for a pytree key path (dict keys, attributes, indices)."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as a flat uint32 vector (one word per element, two for 64-bit types)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).ravel()


def _leaf_sums(x: jax.Array) -> jax.Array:
    """[sum1, sum2, finite] of one leaf, as uint32."""
    w = _words(x)
    i = jnp.arange(w.shape[0], dtype=jnp.uint32)
    s1 = jnp.sum(w * ((i * jnp.uint32(0x9E3779B1)) | jnp.uint32(1)), dtype=jnp.uint32)
    rotated = (w << jnp.uint32(13)) | (w >> jnp.uint32(19))
    w2 = ((i ^ jnp.uint32(0x5BD1E995)) * jnp.uint32(0x85EBCA6B)) | jnp.uint32(1)
    s2 = jnp.sum(rotated * w2, dtype=jnp.uint32)
    finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else True
    return jnp.stack([s1, s2, jnp.asarray(finite, jnp.uint32)])


@jax.jit
def _sums(leaves: list) -> jax.Array:
    if not leaves:
        return jnp.zeros((0, 3), jnp.uint32)
    return jnp.stack([_leaf_sums(x) for x in leaves])


def _named_leaves(tree) -> tuple[list[str], list]:
    flat = jax.tree_util.tree_leaves_with_path(tree)
    return [leaf_name(p) for p, _ in flat], [x for _, x in flat]


def meta_crc(meta) -> int:
    """CRC-32 of the metadata's canonical JSON (the same before and after a JSON round trip)."""
    canonical = json.loads(json.dumps(meta))  # tuples become lists, keys strings
    return zlib.crc32(json.dumps(canonical, sort_keys=True).encode())


def compute(state, meta) -> ChecksumSave:
    """Starts computing the checksums of `state` (on its devices, asynchronously)."""
    names, leaves = _named_leaves(state)
    return ChecksumSave(names=names, sums=_sums(leaves), meta_crc=meta_crc(meta))


def verify(state, meta, recorded: dict) -> None:
    """Raises ChecksumMismatch naming the first leaf (or the metadata) that was not written so.

    A leaf that holds NaN or an infinity is refused as well: dl never writes one.
    """
    if recorded.get("version") != VERSION:
        raise ChecksumMismatch(f"checksums of an unknown version {recorded.get('version')!r}")
    names, leaves = _named_leaves(state)
    got = np.asarray(_sums(leaves))
    want = recorded["leaves"]
    missing = sorted(set(want) - set(names))
    if missing:
        raise ChecksumMismatch(f"leaf {missing[0]} was written but not restored")
    for name, row in zip(names, got, strict=True):
        if name not in want:
            raise ChecksumMismatch(f"leaf {name} has no recorded checksum")
        if [int(row[0]), int(row[1])] != want[name]:
            raise ChecksumMismatch(f"leaf {name}: content differs from what was written")
        if not row[2]:
            raise ChecksumMismatch(f"leaf {name} holds non-finite values")
    if meta_crc(meta) != recorded["meta_crc"]:
        raise ChecksumMismatch("the metadata (meta) differs from what was written")


def check_finite(state) -> None:
    """Raises ChecksumMismatch naming the first leaf of `state` holding non-finite values."""
    names, leaves = _named_leaves(state)
    for name, row in zip(names, np.asarray(_sums(leaves)), strict=True):
        if not row[2]:
            raise ChecksumMismatch(f"leaf {name} holds non-finite values")


class ChecksumHandler(ocp.JsonCheckpointHandler):
    """Writes the checksums item from orbax's commit thread, once the device has them."""

    def __init__(self, **kwargs):
        super().__init__(FILENAME, **kwargs)
        self._lead = jax.process_index() == 0

    async def async_save(self, directory, item=None, args=None):
        async def write():
            sums = np.asarray(args.sums)  # waits here, off the training thread
            record = {
                "version": VERSION,
                "leaves": {
                    n: [int(s[0]), int(s[1])] for n, s in zip(args.names, sums, strict=True)
                },
                "meta_crc": args.meta_crc,
            }
            if self._lead:
                (directory / FILENAME).write_text(json.dumps(record))

        return [ocp.future.CommitFutureAwaitingContractedSignals(write(), name="dl_checksums")]


@ocp.args.register_with_handler(ChecksumHandler, for_save=True)
@dataclasses.dataclass
class ChecksumSave(ocp.args.CheckpointArgs):
    """The checksums of a state being saved (`sums` may still be computing)."""

    names: list
    sums: Any
    meta_crc: int


@ocp.args.register_with_handler(ChecksumHandler, for_restore=True)
@dataclasses.dataclass
class ChecksumRestore(ocp.args.CheckpointArgs):
    """Reads a step's recorded checksums."""
