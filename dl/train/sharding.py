"""Data parallelism with jax.sharding: one mesh axis, "data", over every device.

Parameters, optimizer state and the in-memory datasets are replicated; each
batch gathered on the device is constrained to be split along its first axis
over the mesh, so XLA runs each device on its share and inserts the
reductions of the gradients itself. The same config runs unchanged on one
device or many, in one process or several (`jax.distributed`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl.errors import ConfigError

DATA = "data"


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh over all devices (of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA))


def put_replicated(tree, mesh: Mesh):
    """Places host or device arrays on every device of the mesh (works across processes)."""
    sharding = replicated(mesh)

    def put(x):
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree)


def put_batches(tree, mesh: Mesh, axis: int = 0):
    """This process's share of host batches -> global arrays split over the mesh along `axis`.

    Each process hands in its own examples of every batch (the streaming
    pipeline reads only those); the global batch is theirs in process order.
    """
    sharding = NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA))

    def put(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[axis] *= jax.process_count()
        return jax.make_array_from_process_local_data(sharding, x, tuple(shape))

    return jax.tree_util.tree_map(put, tree)


def shard_batch(batch, mesh: Mesh | None):
    """Constrains every field of a batch to be split over the mesh along its first axis."""
    if mesh is None or mesh.size == 1:
        return batch
    sharding = batch_sharding(mesh)
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)


def is_lead() -> bool:
    """True in the process that writes files other than checkpoints (process 0)."""
    return jax.process_index() == 0


def to_host(tree):
    """Numpy copies of a pytree of arrays, also when they span several processes.

    Fully replicated arrays are read from a local shard; arrays split over
    processes are gathered from all of them.
    """

    def get(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(get, tree)


def sync(name: str) -> None:
    """A barrier across processes (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def check_divisible(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    if batch_size % mesh.size:
        raise ConfigError(
            f"{name}={batch_size} must be a multiple of the {mesh.size} devices "
            "that share each batch"
        )
