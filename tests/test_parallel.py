"""Data-parallel and multi-process training equal single-device training.

The multi-device runs need a fresh process (the simulated device count is fixed
when JAX starts): ``tests/multidevice_worker.py`` with 8 CPU devices, and two
``jaxcnn train`` processes joined over 127.0.0.1 with 2 devices each.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxcnn import checkpoint, parallel, steps, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _relative(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / max(np.max(np.abs(np.asarray(x))), 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_eight_devices_give_the_params_of_one_in_every_gradient_mode(tmp_path):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "multidevice_worker.py"), str(out)],
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
