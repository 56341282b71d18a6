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

import errno
import math
import os
import socket
import sys
import threading
import time
from typing import NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcnn.training import interrupt

DATA_AXIS = "data"
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
DEFAULT_INIT_TIMEOUT = 60.0  # seconds; jax's own default is 300, after which it aborts the process from C++
NOTICE_AFTER = 1.0  # a start-up still waiting after this long says what it waits for ...
NOTICE_EVERY = 10.0  # ... and again this often
RETRY_EVERY = 0.5  # seconds between attempts to reach the coordinator
JAX_TIMEOUT_GRACE = 15  # jax's own deadline (a C++ abort) comes this long after ours
# The environment variables that shape a multi-process start (jax.distributed.initialize reads them),
# checked like the flags: name -> what is accepted.
ENVIRONMENT = {
    COORDINATOR_ENV: "HOST:PORT with a port in 1-65535",
    "JAX_COORDINATOR_BIND_ADDRESS": "HOST:PORT with a port in 1-65535",
    "JAX_COORDINATOR_PORT": "a port in 1-65535",
    "JAX_LOCAL_DEVICE_IDS": "comma-separated device indices >= 0, e.g. 0,1",
    "JAX_PARTITION_INDEX": "an int >= 0",
}


class StartupFailed(RuntimeError):
    """A multi-process run could not start (the coordinator unreachable, a peer missing, a port taken).

    Attributes:
      stuck: a jax thread is still blocked inside ``jax.distributed.initialize``'s
        C++ connection; only ending the process stops it (the ``jaxcnn`` command
        does so with ``os._exit`` after printing the error).
    """

    def __init__(self, message: str, stuck: bool = False):
        super().__init__(message)
        self.stuck = stuck


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

    def address(self) -> Optional[str]:
        """The coordinator's ``HOST:PORT``: the field, else ``JAX_COORDINATOR_ADDRESS``, else ``None``."""
        return self.coordinator or os.environ.get(COORDINATOR_ENV) or None


def _split_address(address: str):
    """``(host, port)`` of ``HOST:PORT`` (brackets of an IPv6 host removed), or ``None`` if malformed."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host, int(port)


def _valid_environment(name: str, value: str) -> bool:
    if name in (COORDINATOR_ENV, "JAX_COORDINATOR_BIND_ADDRESS"):
        return _split_address(value) is not None
    if name == "JAX_COORDINATOR_PORT":
        return value.isdigit() and 0 < int(value) < 65536
    if name == "JAX_LOCAL_DEVICE_IDS":
        return all(part.strip().isdigit() for part in value.split(","))
    return value.strip().isdigit()  # JAX_PARTITION_INDEX


def _scheduler() -> Optional[str]:
    """The cluster environment jax detects by itself (Slurm, Open MPI, Cloud TPU, ...), or ``None``."""
    try:
        from jax._src.clusters import ClusterEnv  # pylint: disable=import-outside-toplevel

        for env in ClusterEnv._cluster_types:  # pylint: disable=protected-access
            if not env.opt_in_only_method and env.is_env_present():
                return env.__name__
        return None
    except Exception:  # pylint: disable=broad-except  # a private API: if it moves, assume a scheduler
        return "unknown"


def check_cluster(cluster: Cluster) -> Cluster:
    """Validates the flags and environment of a multi-process run.

    Raises:
      ValueError: naming the argument or variable: ``coordinator`` (or
        ``JAX_COORDINATOR_ADDRESS``) not ``HOST:PORT``, ``num_processes`` < 1,
        ``process_id`` outside ``[0, num_processes)``, another variable of
        :data:`ENVIRONMENT` malformed; or, outside a scheduler that jax reads
        (Slurm, Open MPI, ...), a multi-process run without ``--coordinator``,
        ``--num-processes`` or ``--process-id`` (each missing flag is named).
    """
    if cluster.coordinator is not None and _split_address(cluster.coordinator) is None:
        raise ValueError(f"coordinator must be HOST:PORT with a port in 1-65535, got {cluster.coordinator!r}")
    if cluster.num_processes is not None and cluster.num_processes < 1:
        raise ValueError(f"num_processes must be a positive int, got {cluster.num_processes!r}")
    if cluster.process_id is not None:
        if cluster.process_id < 0:
            raise ValueError(f"process_id must be an int >= 0, got {cluster.process_id!r}")
        if cluster.num_processes is not None and cluster.process_id >= cluster.num_processes:
            raise ValueError(f"process_id must be in [0, num_processes={cluster.num_processes}), "
                             f"got {cluster.process_id}")
    if not cluster.requested():
        return cluster
    for name, accepted in ENVIRONMENT.items():
        value = os.environ.get(name)
        if name == COORDINATOR_ENV and cluster.coordinator is not None:
            continue  # the flag wins; jax ignores the variable
        if value and not _valid_environment(name, value):
            raise ValueError(f"environment variable {name} must be {accepted}, got {value!r}")
    missing = [flag for flag, value in (("--coordinator HOST:PORT (or JAX_COORDINATOR_ADDRESS)", cluster.address()),
                                        ("--num-processes N", cluster.num_processes),
                                        ("--process-id I", cluster.process_id)) if value is None]
    if missing and not _single_process(cluster) and _scheduler() is None:
        given = [f"{flag}={value}" for flag, value in (("--coordinator", cluster.coordinator),
                 ("--num-processes", cluster.num_processes), ("--process-id", cluster.process_id))
                 if value is not None]
        if os.environ.get(COORDINATOR_ENV):
            given.append(f"{COORDINATOR_ENV}={os.environ[COORDINATOR_ENV]}")
        needs = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise ValueError(f"a multi-process run needs {needs}; got only {', '.join(given)}")
    return cluster


def _single_process(cluster: Cluster) -> bool:
    """``--num-processes 1`` without a coordinator: nothing to join."""
    return cluster.num_processes == 1 and cluster.address() is None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bounded(function, deadline: float, on_wait=None):
    """``function()`` in a daemon thread, waited for until ``deadline`` (``time.monotonic``) in short
    slices, so that the main thread handles Ctrl-C meanwhile; ``on_wait()`` runs after each slice.

    Raises:
      TimeoutError: ``deadline`` passed first (the thread is left running).
      Whatever ``function`` raised.
    """
    done, outcome = threading.Event(), {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # pylint: disable=broad-except  # handed to the waiting thread
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name="jaxcnn-startup", daemon=True).start()
    while not done.wait(max(min(0.25, deadline - time.monotonic()), 0)):
        if time.monotonic() >= deadline:
            raise TimeoutError
        if on_wait is not None:
            on_wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _Notices:
    """``jaxcnn: waiting for WHAT ...`` once ``NOTICE_AFTER`` seconds have passed, then every ``NOTICE_EVERY``."""

    def __init__(self, notice, what: str, deadline: float):
        self.notice, self.what, self.deadline = notice, what, deadline
        self.start, self.last = time.monotonic(), None

    def __call__(self, detail: str = "") -> None:
        now = time.monotonic()
        due = now - self.start >= NOTICE_AFTER if self.last is None else now - self.last >= NOTICE_EVERY
        if due:
            self.last = now
            detail = f" ({detail})" if detail else ""
            self.notice(f"jaxcnn: waiting for {self.what}{detail}; giving up in "
                        f"{max(self.deadline - now, 0):.0f} s (--init-timeout)")


def _check_port_free(address: str) -> None:
    """Process 0 binds the coordinator service on ``JAX_COORDINATOR_BIND_ADDRESS`` or ``[::]:PORT``;
    a port already taken would otherwise fail inside jax with C++ log lines."""
    host, port = _split_address(os.environ.get("JAX_COORDINATOR_BIND_ADDRESS") or f"[::]:{address.rsplit(':', 1)[1]}")
    for family, bind_host in ((socket.AF_INET6, host), (socket.AF_INET, "0.0.0.0" if host == "::" else host)):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((bind_host, port))
            return
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupFailed(f"process 0 cannot start the coordinator on port {port}: it is in use "
                                    f"(another run, or another program); choose another port in --coordinator") \
                    from error
            last = error
    raise StartupFailed(f"process 0 cannot start the coordinator on {host}:{port}: {last.strerror or last}")


def _reach(host: str, port: int, deadline: float) -> Optional[str]:
    """One attempt to open a TCP connection to ``host:port``: ``None`` if it worked, else why not."""
    try:  # each attempt gets a second at least, so the last one before the deadline still says why
        addresses = _bounded(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                             max(deadline, time.monotonic() + 1.0))
    except socket.gaierror as error:
        return f"cannot resolve the host name {host!r}: {error.strerror or error}"
    except TimeoutError:
        return f"no answer from DNS for the host name {host!r}"
    reason = "no address"
    for family, kind, proto, _, target in addresses:
        try:
            with socket.socket(family, kind, proto) as connection:
                connection.settimeout(max(min(2.0, deadline - time.monotonic()), 0.5))
                connection.connect(target)
            return None
        except OSError as error:
            reason = "connection refused" if isinstance(error, ConnectionRefusedError) else \
                "no answer" if isinstance(error, socket.timeout) else (error.strerror or str(error))
    return reason


def _wait_for_coordinator(address: str, deadline: float, timeout: float, notice) -> None:
    """Process ``i >= 1``: retries until the coordinator's port accepts a TCP connection (a refused or
    unresolvable address fails inside jax only at its deadline, with a C++ abort)."""
    host, port = _split_address(address)
    what = f"the coordinator at {address} (process 0) to accept connections"
    notices = _Notices(notice, what, deadline)
    while True:
        reason = _reach(host, port, deadline)
        if reason is None:
            return
        if time.monotonic() >= deadline:
            raise StartupFailed(f"gave up after {timeout:g} s waiting for {what}: {reason}; start process 0 "
                                "first, check --coordinator, or raise --init-timeout")
        notices(reason)
        time.sleep(max(min(RETRY_EVERY, deadline - time.monotonic()), 0))


def _join(cluster: Cluster, deadline: float, timeout: float, notice) -> None:
    """``jax.distributed.initialize`` in a thread, given up at ``deadline`` (its C++ connection blocks, and
    at its own deadline aborts the process with a fatal log, so it gets ``JAX_TIMEOUT_GRACE`` s more)."""
    address, count, index = cluster.address(), cluster.num_processes, cluster.process_id
    where = f"at {address}" if address else "(coordinator from the cluster environment)"
    if index == 0:
        what = f"the other {count - 1} processes" if count > 2 else "the other process"
        what = f"{what} to join the coordinator {where}"
    else:
        what = f"all {count or 'the'} processes to join the run {where}"
    jax_timeout = math.ceil(max(deadline - time.monotonic(), 0)) + JAX_TIMEOUT_GRACE
    notices = _Notices(notice, what, deadline)
    try:
        _bounded(lambda: jax.distributed.initialize(address, count, index, initialization_timeout=jax_timeout),
                 deadline, notices)
    except TimeoutError:
        raise StartupFailed(f"gave up after {timeout:g} s waiting for {what}; start every process with the "
                            "same --coordinator and --num-processes, or raise --init-timeout", stuck=True) from None
    except (ValueError, TypeError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StartupFailed(f"cannot join the multi-process run {where}: {first}") from error


def initialize(cluster: Cluster, *, timeout: float = DEFAULT_INIT_TIMEOUT, notice=None) -> None:
    """Joins the multi-process run ``cluster`` describes; does nothing for a single process.

    Must run before any other JAX call. On CPU the cross-process collectives
    use gloo (``jax_cpu_collectives_implementation``). Process 0 first checks that
    the coordinator's port is free; every other process first waits until the
    coordinator accepts a TCP connection (its host name resolving). Then
    ``jax.distributed.initialize`` runs in a thread until every process has
    joined. Whatever it waits for is said through ``notice`` after a second and
    every ten seconds; Ctrl-C is handled meanwhile.

    Args:
      timeout: seconds to wait in all (default :data:`DEFAULT_INIT_TIMEOUT`).
      notice: receives the waiting lines (default: stderr).

    Raises:
      ValueError: bad or missing flags or environment (see :func:`check_cluster`),
        or a bad ``timeout``.
      StartupFailed: the port is taken, or ``timeout`` passed (``stuck`` if jax
        was still connecting).
    """
    if not check_cluster(cluster).requested() or _single_process(cluster):
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    notice = _say if notice is None else notice
    deadline = time.monotonic() + timeout
    if cluster.address() is not None and cluster.process_id == 0:
        _check_port_free(cluster.address())
    elif cluster.address() is not None and cluster.process_id is not None:
        _wait_for_coordinator(cluster.address(), deadline, timeout, notice)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _join(cluster, deadline, timeout, notice)


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
    """A pytree of replicated (or single-device) arrays as NumPy, read from this process's first copy.

    Waits by polling (``interrupt.wait_ready``), so Ctrl-C is handled at once even mid-computation.
    """
    interrupt.wait_ready(tree)
    return jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data) if isinstance(a, jax.Array)
                        else np.asarray(a), tree)


def is_writer() -> bool:
    """Only process 0 writes metrics, plots and logs."""
    return jax.process_index() == 0
