"""Data parallelism over every device JAX sees, on one host or many.

One 1-D mesh with a ``data`` axis spans ``jax.devices()`` (all processes'
devices after :func:`initialize`). The training set, params and optimizer state
are *replicated* on every device; inside the compiled epoch each batch's
example indices are constrained to be *sharded* along ``data``, so device
``k`` of ``D`` gathers and computes on examples ``k·B/D ... (k+1)·B/D − 1`` of the
batch (a batch that does not split evenly, e.g. 125 over 8 devices, is padded
by XLA and masked in every reduction). The loss is a mean over the whole batch, so its gradient (autodiff, the
hand rules and the hand-written backprop alike) sums over devices: XLA's SPMD
partitioner inserts that all-reduce. Nothing here communicates by hand.

.. math::
   \\nabla L = \\frac{1}{B} \\sum_{k=1}^{D} \\sum_{n \\in \\text{shard}_k} \\nabla \\ell_n

With ``D = 1`` every constraint is a no-op and the program is the plain one.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


class Cluster(NamedTuple):
    """How to join a multi-process run (``jax.distributed.initialize``'s arguments).

    ``None`` fields are left to JAX: ``coordinator`` falls back to the
    ``JAX_COORDINATOR_ADDRESS`` environment variable, and on Slurm, Open MPI or
    Cloud TPU all three are detected from the cluster's environment.
    """

    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None

    def requested(self) -> bool:
        """Whether a multi-process run was asked for (a flag or ``JAX_COORDINATOR_ADDRESS``)."""
        return any(v is not None for v in self) or bool(os.environ.get(COORDINATOR_ENV))


def check_cluster(cluster: Cluster) -> Cluster:
    """Validates the flags of a multi-process run.

    Raises:
      ValueError: naming the argument: ``coordinator`` not ``HOST:PORT``,
        ``num_processes`` < 1, ``process_id`` outside ``[0, num_processes)``.
    """
    if cluster.coordinator is not None:
        host, _, port = cluster.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be HOST:PORT with a port in 1-65535, got {cluster.coordinator!r}")
    if cluster.num_processes is not None and cluster.num_processes < 1:
        raise ValueError(f"num_processes must be a positive int, got {cluster.num_processes!r}")
    if cluster.process_id is not None:
        if cluster.process_id < 0:
            raise ValueError(f"process_id must be an int >= 0, got {cluster.process_id!r}")
        if cluster.num_processes is not None and cluster.process_id >= cluster.num_processes:
            raise ValueError(f"process_id must be in [0, num_processes={cluster.num_processes}), "
                             f"got {cluster.process_id}")
    return cluster


def initialize(cluster: Cluster) -> None:
    """Joins the multi-process run ``cluster`` describes; does nothing for a single process.

    Must run before any other JAX call. On CPU the cross-process collectives
    use gloo (``jax_cpu_collectives_implementation``).
    """
    if not check_cluster(cluster).requested():
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)


def data_mesh() -> Mesh:
    """The 1-D mesh ``("data",)`` over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split evenly along ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def put_replicated(tree, mesh: Mesh):
    """Places a pytree of host arrays (identical in every process) on every device."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)


def to_host(tree):
    """A pytree of replicated (or single-device) arrays as NumPy, read from this process's first copy."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data) if isinstance(a, jax.Array)
                        else np.asarray(a), tree)


def is_writer() -> bool:
    """Only process 0 writes metrics, plots and logs."""
    return jax.process_index() == 0
