"""Data-parallel and multi-process training equal single-device training.

The multi-device runs need a fresh process (the simulated device count is fixed
when JAX starts): ``tests/training/multidevice_worker.py`` with 8 CPU devices, and two
``jaxcnn train`` processes joined over 127.0.0.1 with 2 devices each.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from support import jaxcnn_observer as observer
from jaxcnn import cli
from jaxcnn.training import checkpoint
from jaxcnn.training import parallel
from jaxcnn.training import steps
from jaxcnn.training import loop as train

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _relative(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / max(np.max(np.abs(np.asarray(x))), 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_eight_devices_give_the_params_of_one_in_every_gradient_mode(tmp_path):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "training" / "multidevice_worker.py"), str(out)],
                   env=_env(8), check=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["devices"] == 8
    assert set(result["modes"]) == {"autodiff", "manual", "backprop"}
    for grad, mode in result["modes"].items():
        assert mode["relative"] <= TOLERANCE, grad
        assert mode["all_reduce"], f"{grad}: XLA did not sum the gradient over devices"
        np.testing.assert_allclose(*mode["losses"], rtol=TOLERANCE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONFIG = dict(model="classic", dataset="mnist-sample", train_limit=256, test_limit=200, batch_size=32, epochs=2,
              schedule="constant", optimizer="momentum", augment="none", grad="manual")


def _flags(config: dict) -> list:
    return [f"--{name.replace('_', '-')}={value}" for name, value in config.items()]


@pytest.mark.slow
def test_two_processes_on_loopback_train_like_one(tmp_path):
    workdir, port = tmp_path / "two", _free_port()
    command = [sys.executable, "-m", "jaxcnn", "train", *_flags(CONFIG), "--no-progress", f"--workdir={workdir}",
               f"--coordinator=127.0.0.1:{port}", "--num-processes=2"]
    processes = [subprocess.Popen([*command, f"--process-id={i}"], env=_env(2), cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "4 devices, 2 processes" in outputs[0]
    assert "epoch 1/2" in outputs[0] and "epoch 1/2" not in outputs[1]  # only process 0 logs

    single = train.train_and_evaluate(train.TrainConfig(**CONFIG), tmp_path / "one", progress=False, log=lambda _: None)
    records = checkpoint.read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2]  # written once, by process 0
    assert {(r["devices"], r["processes"]) for r in records} == {(4, 2)}
    assert {(r["devices"], r["processes"]) for r in single.history} == {(1, 1)}
    for two, one in zip(records, single.history):
        np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=TOLERANCE)
        assert two["test_accuracy"] == one["test_accuracy"]
    like = jax.device_put(parallel.to_host({"params": single.params, "opt_state": single.opt_state, "epoch": 0,
                                            "key": np.zeros(2, np.uint32)}), jax.devices()[0])
    restored = checkpoint.restore(workdir, like)  # a 4-device checkpoint, read back on one device
    assert int(restored["epoch"]) == 2
    assert _relative(single.params, restored["params"]) <= TOLERANCE


# ------------------------------------------------------------------ units


@pytest.mark.parametrize("cluster, message", [
    (parallel.Cluster(coordinator="localhost"), "coordinator must be HOST:PORT"),
    (parallel.Cluster(coordinator="host:99999"), "coordinator must be HOST:PORT"),
    (parallel.Cluster(num_processes=0), "num_processes must be a positive int"),
    (parallel.Cluster(num_processes=2, process_id=2), r"process_id must be in \[0, num_processes=2\)"),
    (parallel.Cluster(process_id=-1), "process_id must be an int >= 0"),
])
def test_bad_cluster_flags_are_named(cluster, message):
    with pytest.raises(ValueError, match=message):
        parallel.check_cluster(cluster)


def test_a_single_process_run_initializes_nothing(monkeypatch):
    monkeypatch.delenv(parallel.COORDINATOR_ENV, raising=False)
    assert not parallel.Cluster().requested()
    parallel.initialize(parallel.Cluster())  # no jax.distributed call: it would fail without a coordinator
    monkeypatch.setenv(parallel.COORDINATOR_ENV, "10.0.0.1:1234")
    assert parallel.Cluster().requested()


@pytest.mark.parametrize("steps_per_epoch, steps_per_call, penalty, expected", [
    (40, None, False, (40, False)),   # the whole epoch, one rolled lax.scan
    (40, None, True, (8, True)),      # lax on CPU: unrolled chunks of 8
    (39, None, True, (3, True)),
    (40, 5, False, (5, False)),
    (7, 100, False, (7, False)),
])
def test_plan_epoch(steps_per_epoch, steps_per_call, penalty, expected):
    assert steps.plan_epoch(steps_per_epoch, steps_per_call, penalty) == expected


# ------------------------------------------------- a start-up that cannot complete

INIT_TIMEOUT = 3  # seconds, --init-timeout of the start-up tests
MARGIN = 10  # seconds allowed past it (a loaded 2-core machine; jax is already imported when timing starts)
STARTUP_RUN = ["train", "--model", "sequence", "--dataset", "mnist-sample", "--train-limit", "100", "--test-limit",
               "100", "--batch-size", "50", "--epochs", "1", "--no-progress", "--num-processes", "2",
               f"--init-timeout={INIT_TIMEOUT}"]
SETUP_MARK = f"{observer.MARK}setup\n"
C_LOG_LINE = re.compile(r"^[FEW]\d{4} ", re.MULTILINE)  # absl/glog: F1201 04:54:54.995209 ... (a fatal log)


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    return _free_port()


def test_missing_flags_of_a_multi_process_run_are_named(monkeypatch):
    monkeypatch.delenv(parallel.COORDINATOR_ENV, raising=False)
    with pytest.raises(ValueError, match=r"needs --coordinator HOST:PORT \(or JAX_COORDINATOR_ADDRESS\); "
                                         r"got only --num-processes=2, --process-id=1"):
        parallel.check_cluster(parallel.Cluster(num_processes=2, process_id=1))
    with pytest.raises(ValueError, match="needs --num-processes N and --process-id I; got only --coordinator=h:1"):
        parallel.check_cluster(parallel.Cluster(coordinator="h:1"))
    monkeypatch.setenv(parallel.COORDINATOR_ENV, "h:1")
    expected = f"needs --process-id I; got only --num-processes=2, {parallel.COORDINATOR_ENV}=h:1"
    with pytest.raises(ValueError, match=expected):
        parallel.check_cluster(parallel.Cluster(num_processes=2))
    parallel.check_cluster(parallel.Cluster(num_processes=2, process_id=1))  # the variable names the coordinator


@pytest.mark.parametrize("name, value", [
    (parallel.COORDINATOR_ENV, "localhost"), (parallel.COORDINATOR_ENV, "h:0"),
    ("JAX_COORDINATOR_BIND_ADDRESS", "[::]"), ("JAX_COORDINATOR_PORT", "65536"),
    ("JAX_LOCAL_DEVICE_IDS", "0,x"), ("JAX_PARTITION_INDEX", "-1"),
])
def test_bad_environment_of_a_multi_process_run_is_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    cluster = parallel.Cluster(None if name == parallel.COORDINATOR_ENV else "h:1", 2, 1)
    with pytest.raises(ValueError, match=f"environment variable {name} must be .*, got {re.escape(repr(value))}"):
        parallel.check_cluster(cluster)


def test_a_flag_overrides_a_bad_coordinator_variable(monkeypatch):
    monkeypatch.setenv(parallel.COORDINATOR_ENV, "nonsense")  # jax ignores it when the flag is given
    parallel.check_cluster(parallel.Cluster("h:1", 2, 1))


def test_one_process_without_a_coordinator_joins_nothing(monkeypatch):
    monkeypatch.delenv(parallel.COORDINATOR_ENV, raising=False)
    parallel.initialize(parallel.Cluster(num_processes=1, process_id=0))  # no jax.distributed call


@pytest.mark.slow
def test_a_closed_coordinator_port_fails_at_the_timeout_in_python(monkeypatch):
    """In-process: the pre-flight TCP check fails before jax.distributed is touched (nothing stuck)."""
    lines, port = [], _closed_port()
    monkeypatch.setattr(parallel, "NOTICE_AFTER", 0.0)
    start = time.monotonic()
    with pytest.raises(parallel.StartupFailed, match=f"gave up after 1.5 s waiting for the coordinator at "
                                                     f"127.0.0.1:{port} .*connection refused") as failed:
        parallel.initialize(parallel.Cluster(f"127.0.0.1:{port}", 2, 1), timeout=1.5, notice=lines.append)
    assert 1.5 <= time.monotonic() - start < 1.5 + MARGIN
    assert not failed.value.stuck
    assert lines and lines[0].startswith(f"jaxcnn: waiting for the coordinator at 127.0.0.1:{port}"), lines


def test_process_0_refuses_a_coordinator_port_in_use():
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(parallel.StartupFailed, match=f"cannot start the coordinator on port {port}: it is in use"):
            parallel.initialize(parallel.Cluster(f"127.0.0.1:{port}", 2, 0), timeout=5)


@pytest.mark.slow
def test_a_start_up_that_cannot_complete_gives_up_with_one_error_line(tmp_path):
    """Real processes, --init-timeout 3: process 1 with an unresolvable coordinator and with a closed
    loopback port, and process 0 of 2 whose peer never comes. Each says what it waits for, then gives
    up within the timeout plus a margin with one error line; no C++ fatal log, no traceback, no signal death."""
    cases = {
        "unresolvable": (["--coordinator=no-such-host.invalid:1234", "--process-id=1"],
                         ("waiting for the coordinator at no-such-host.invalid:1234 (process 0) to accept "
                          "connections: cannot resolve the host name 'no-such-host.invalid'")),
        "closed port": ([f"--coordinator=127.0.0.1:{_closed_port()}", "--process-id=1"],
                        "to accept connections: connection refused"),
        "no peer": ([f"--coordinator=127.0.0.1:{_free_port()}", "--process-id=0"],
                    "waiting for the other process to join the coordinator at 127.0.0.1:"),
    }
    env = observer.env(_env(1), **{observer.PHASES_ENV: "1"})  # prints the "setup" moment
    processes, setup_at = {}, {}
    try:
        for name, (flags, _) in cases.items():
            err = open(tmp_path / f"{name}.err", "w", encoding="utf-8")  # pylint: disable=consider-using-with
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "jaxcnn", *STARTUP_RUN, *flags, f"--workdir={tmp_path / name}"],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
            err.close()
        ended = {}
        while len(ended) < len(processes):
            for name, process in processes.items():
                now = time.monotonic()
                if name not in setup_at and SETUP_MARK in (tmp_path / f"{name}.err").read_text():
                    setup_at[name] = now
                if name not in ended and process.poll() is not None:
                    ended[name] = now
            time.sleep(0.01)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, (_, waited_for) in cases.items():
        err = (tmp_path / f"{name}.err").read_text()
        lines = [line for line in err.splitlines() if not line.startswith("jaxcnn-test:")]
        assert processes[name].returncode == cli.USAGE_ERROR, (name, processes[name].returncode, err)
        assert name in setup_at and ended[name] - setup_at[name] < INIT_TIMEOUT + MARGIN, (name, err)
        assert lines[0].startswith("jaxcnn: waiting for "), (name, err)
        assert lines[-1].startswith(f"jaxcnn: error: gave up after {INIT_TIMEOUT} s ") and waited_for in lines[-1], \
            (name, err)
        assert all(line.startswith("jaxcnn: waiting for ") for line in lines[:-1]), (name, err)
        assert "Traceback" not in err and "Check failure" not in err and not C_LOG_LINE.search(err), (name, err)
        assert not (tmp_path / name).exists()
