"""Data and parameter parallelism with jax.sharding: a mesh of two axes, "data" x "fsdp".

Every batch is split along its first axis over all the devices (both axes).
Parameters, optimizer state and the moving average of the parameters are
split along "fsdp" by one rule (`param_spec`): a leaf of at least
`MIN_SHARDED_SIZE` elements whose largest dimension is a multiple of the
fsdp size is split along that dimension; every other leaf, the model state
(batch_stats) and the scalars (step, key, counters) are replicated. XLA
inserts the collectives: with fsdp=1 (the default) parameters are replicated
and the gradients are all-reduced over "data", as plain data parallelism;
with fsdp > 1 each device keeps 1/fsdp of the large leaves, and XLA picks
the collectives that bring parameters and activations together (all-gathers
of the parameters, or of the activations within an fsdp group) and the
reductions that bring each gradient to its shard (BUILD_NOTES, "Meshes").
The same config runs unchanged on one device or many, in one process or
several (`jax.distributed`).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dl.config import option
from dl.errors import ConfigError
from dl.train.state import TrainState

DATA, FSDP = "data", "fsdp"
AXES = (DATA, FSDP)
# A leaf smaller than this many elements is replicated even with fsdp > 1:
# gathering it would cost more than the memory it saves (biases, norms, scalars).
MIN_SHARDED_SIZE = 2**12
# The TrainState fields split along "fsdp"; the others are replicated.
SHARDED_FIELDS = ("params", "opt_state", "ema_params")


def mesh_shape(mesh_config, device_count: int) -> tuple[int, int]:
    """(data, fsdp) sizes of a config's `mesh` section for `device_count` devices.

    `mesh.data=0` means all the devices that `mesh.fsdp` leaves (device_count / fsdp).

    Raises:
      ConfigError: the product is not the device count.

    >>> mesh_shape({"data": 0, "fsdp": 4}, 8), mesh_shape(None, 8), mesh_shape({"fsdp": 8}, 8)
    ((2, 4), (8, 1), (1, 8))
    >>> mesh_shape({"data": 3, "fsdp": 2}, 8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dl.errors.ConfigError: mesh.data x mesh.fsdp must be the device count, 8 ... one of [1, 2, 4, 8]
    """
    data = int(option(mesh_config, "data", 0))
    fsdp = int(option(mesh_config, "fsdp", 1))
    if data < 0 or fsdp < 1:
        raise ConfigError(f"mesh.data must be >= 0 and mesh.fsdp >= 1, got {data} and {fsdp}")
    if data == 0 and device_count % fsdp == 0:
        return device_count // fsdp, fsdp
    if data * fsdp == device_count:
        return data, fsdp
    divisors = [d for d in range(1, device_count + 1) if device_count % d == 0]
    shown = f"{data} x {fsdp} = {data * fsdp}" if data else f"0 (the rest) with fsdp={fsdp}"
    raise ConfigError(
        f"mesh.data x mesh.fsdp must be the device count, {device_count} "
        f"(jax.device_count(), every process), got mesh.data={data}, mesh.fsdp={fsdp} "
        f"({shown}); accepted: mesh.data * mesh.fsdp = {device_count}, or mesh.data=0 "
        f"(all the devices mesh.fsdp leaves) with mesh.fsdp one of {divisors}"
    )


def make_mesh(mesh_config=None, devices=None) -> Mesh:
    """The ("data", "fsdp") mesh of a config's `mesh` section over all devices (of every process).

    Devices are taken in `jax.devices()` order, fsdp the inner axis: a group of
    fsdp neighbouring devices (of one host, where fsdp divides its device
    count) shares the parameters' shards.
    """
    devices = np.asarray(devices if devices is not None else jax.devices())
    data, fsdp = mesh_shape(mesh_config, devices.size)
    return Mesh(devices.reshape(data, fsdp), AXES)


def data_mesh(devices=None) -> Mesh:
    """The all-data mesh over all devices (of every process): fsdp=1."""
    return make_mesh(None, devices)


def fsdp_size(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(dict(mesh.shape).get(FSDP, 1))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_axes(mesh: Mesh):
    """The mesh axes a batch's first dimension is split over: every axis."""
    names = tuple(mesh.axis_names)
    return names[0] if len(names) == 1 else names


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def param_spec(shape, fsdp: int) -> PartitionSpec:
    """Where a parameter (or optimizer-state) leaf of `shape` is split over fsdp devices.

    Split along its largest dimension (the last of equal ones) when that is a
    multiple of `fsdp` and the leaf holds at least MIN_SHARDED_SIZE elements;
    replicated (PartitionSpec()) otherwise.

    >>> param_spec((64, 1024), 4), param_spec((1024, 10), 4), param_spec((1024,), 4)
    (P(None, 'fsdp'), P('fsdp',), P())
    >>> param_spec((3, 3, 64, 64), 4), param_spec((64, 1024), 1), param_spec((100, 90), 8)
    (P(None, None, None, 'fsdp'), P(), P())
    """
    shape = tuple(int(d) for d in shape)
    if fsdp <= 1 or not shape or math.prod(shape) < MIN_SHARDED_SIZE:
        return PartitionSpec()
    largest = max(shape)
    if largest % fsdp:
        return PartitionSpec()
    dim = len(shape) - 1 - shape[::-1].index(largest)
    return PartitionSpec(*([None] * dim), FSDP)


def state_shardings(state, mesh: Mesh):
    """The sharding of every leaf of a TrainState (arrays or shapes) on `mesh`.

    params, opt_state and ema_params by `param_spec`; every other field
    replicated. Any other pytree is replicated whole.
    """
    rep = replicated(mesh)
    out = jax.tree_util.tree_map(lambda _: rep, state)
    fsdp = fsdp_size(mesh)
    if fsdp == 1 or not isinstance(state, TrainState):
        return out

    def rule(x):
        return NamedSharding(mesh, param_spec(np.shape(x), fsdp))

    return out.replace(
        **{f: jax.tree_util.tree_map(rule, getattr(state, f)) for f in SHARDED_FIELDS}
    )


def constrain_state(state, mesh: Mesh | None):
    """`state` constrained to `state_shardings` inside a jitted call (nothing with fsdp=1).

    The state a donating call returns then has the shardings it was given,
    call after call, and one compiled call serves them all.
    """
    if fsdp_size(mesh) == 1:
        return state
    return jax.tree_util.tree_map(
        jax.lax.with_sharding_constraint, state, state_shardings(state, mesh)
    )


def _host(x):
    """A numpy copy of one leaf, also of an array that spans several processes."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def put(tree, shardings):
    """Places host or device arrays with `shardings` (one Sharding, or a pytree of them).

    Every process hands in the whole value of every leaf (works across processes).
    """

    def one(x, sharding):
        host = _host(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree_util.tree_map(lambda x: one(x, shardings), tree)
    return jax.tree_util.tree_map(one, tree, shardings)


def put_replicated(tree, mesh: Mesh):
    """Places host or device arrays on every device of the mesh (works across processes)."""
    return put(tree, replicated(mesh))


def put_state(state, mesh: Mesh):
    """Places a TrainState (host or device arrays) with its `state_shardings`."""
    return put(state, state_shardings(state, mesh))


def put_batches(tree, mesh: Mesh, axis: int = 0):
    """This process's share of host batches -> global arrays split over the mesh along `axis`.

    Each process hands in its own examples of every batch (the streaming
    pipeline reads only those); the global batch is theirs in process order.
    """
    sharding = NamedSharding(mesh, PartitionSpec(*([None] * axis), batch_axes(mesh)))

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
    return jax.tree_util.tree_map(_host, tree)


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
