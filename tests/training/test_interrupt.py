"""Ctrl-C everywhere (jaxcnn.training.interrupt): one line, status 130, no traceback, no crash, exact resume.

Real ``python -m jaxcnn`` processes get SIGINT at named moments. The test-side
observer (``tests/support/jaxcnn_observer.py``, armed through ``sitecustomize``)
makes a process print ``jaxcnn-test: phase NAME`` on stderr when it reaches one
(``imports``, ``setup``, ``compile``, ``epoch E step S``, ``save E``, ``eval``,
``check-grads``); the test sends SIGINT as soon as the line appears. Its pause at
``save 1`` holds the process inside epoch 1's checkpoint write (every file
written, not yet committed) long enough for the signal to land there. Each interrupted run must exit with status
130 (not a signal death), print exactly one line besides the markers,
``jaxcnn: interrupted; continue with: COMMAND``, and no traceback; the slow tests
then run COMMAND and require the metrics and the bitwise params of an
uninterrupted run.

The runs are tiny: the ``sequence`` net, 600 train / 500 test digits, 2 epochs of
12 batches, two batches per compiled call.
"""

import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest

from support import jaxcnn_observer as observer
from jaxcnn import cli
from jaxcnn.training import checkpoint, interrupt
from jaxcnn.training import loop as train

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ["train", "--dataset", "mnist-sample", "--train-limit", "600", "--test-limit", "500", "--batch-size", "50",
       "--epochs", "2", "--model", "sequence", "--schedule", "constant", "--steps-per-call", "2", "--no-progress"]
WALL_CLOCK_KEYS = {"epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds"}
SECONDS = 300  # the most any one process may take (2 cores, several processes at once)
MARK = observer.MARK
CRASH_SIGNS = ("Traceback", "Segmentation fault", "Fatal Python error", "Check failure", "core dumped", "Aborted")


def _env(**extra) -> dict:
    return observer.env(**{observer.PHASES_ENV: "1", **extra})


class Process:
    """``python -m jaxcnn ARGV`` with stdout and stderr in files beside ``stem``."""

    def __init__(self, stem: pathlib.Path, argv, **env):
        self.out, self.err = pathlib.Path(f"{stem}.out"), pathlib.Path(f"{stem}.err")
        with open(self.out, "w", encoding="utf-8") as out, open(self.err, "w", encoding="utf-8") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "jaxcnn", *map(str, argv)], stdout=out,
                                            stderr=err, env=_env(**env), cwd=stem.parent)
        self.interrupted_at = None

    def interrupt_at(self, phase: str, delay: float = 0.0) -> bool:
        """Sends SIGINT ``delay`` seconds after the marker of ``phase``; False if the process ended first."""
        deadline = time.monotonic() + SECONDS
        while f"{MARK}{phase}\n" not in self.err.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        time.sleep(delay)
        self.process.send_signal(signal.SIGINT)
        self.interrupted_at = time.monotonic()
        return True

    def wait(self):
        """``(status, stdout, stderr without the markers, seconds from SIGINT to exit)``."""
        code = self.process.wait(timeout=SECONDS)
        latency = None if self.interrupted_at is None else time.monotonic() - self.interrupted_at
        err = "".join(line for line in self.err.read_text().splitlines(True) if not line.startswith(MARK))
        return types.SimpleNamespace(code=code, out=self.out.read_text(), err=err, latency=latency)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _assert_interrupted(result, start: str):
    """Status 130 (not a signal), one stderr line beginning with ``start``, no crash output."""
    assert result.code == cli.INTERRUPTED, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), result.err
    assert not any(sign in result.out + result.err for sign in CRASH_SIGNS), result.out + result.err
    return lines[0]


def _continue_command(line: str) -> list:
    """The argv after ``python -m jaxcnn`` of the command an interrupt line says to continue with."""
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[0] == "jaxcnn", line
    return command[1:]


# ------------------------------------------------------------- in-process units


@pytest.fixture
def handler():
    """Our handler installed as in ``cli.main`` in-process (raising KeyboardInterrupt); restored after."""
    previous = interrupt.install(hard_exit=False)
    yield
    interrupt.restore(previous)


def test_an_interrupt_outside_a_deferred_section_acts_at_once(handler):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # not reached: the handler raises as soon as the signal is handled


def test_an_interrupt_inside_a_deferred_section_waits_for_its_end(handler):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            with interrupt.deferred():  # nested: only the outermost end acts
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                finished.append("inner")
            finished.append("outer")
    assert finished == ["inner", "outer"]


def test_a_deferred_section_that_fails_keeps_its_own_exception(handler):
    with pytest.raises(ValueError, match="disk full"):
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            raise ValueError("disk full")
    with interrupt.deferred():  # the interrupt was consumed: nothing left pending
        pass


def test_without_the_handler_deferred_sections_change_nothing():
    assert signal.getsignal(signal.SIGINT) is not interrupt.handler
    with interrupt.deferred():
        value = 1
    assert value == 1


def test_wait_ready_returns_the_computed_tree():
    tree = {"a": jax.numpy.arange(3.0) * 2, "b": np.ones(2), "c": None}
    assert interrupt.wait_ready(tree) is tree


def test_the_rerun_line_quotes_its_arguments():
    assert interrupt.rerun_message(["train", "--workdir", "my runs/a"]) == \
        "jaxcnn: interrupted; continue with: jaxcnn train --workdir 'my runs/a'"
    assert interrupt.rerun_message(["eval", "--workdir", "w"]) == \
        "jaxcnn: interrupted; nothing was written; run again with: jaxcnn eval --workdir w"


def test_main_in_process_returns_130_with_the_line_and_restores_the_handler(capsys, monkeypatch, tmp_path):
    """Interrupted inside prepare (data loaded, nothing written): the line says to run the same command."""
    before = signal.getsignal(signal.SIGINT)

    def interrupted_prepare(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    monkeypatch.setattr(train, "prepare", interrupted_prepare)
    argv = ["train", "--model", "sequence", "--workdir", str(tmp_path / "run")]
    assert cli.main(argv) == cli.INTERRUPTED
    err = capsys.readouterr().err
    assert err == f"jaxcnn: interrupted; continue with: jaxcnn {shlex.join(argv)}\n", err
    assert signal.getsignal(signal.SIGINT) is before


def test_the_train_line_switches_to_resume_once_the_run_exists(tmp_path):
    """Before config.json is (re)written: the same command; after: --resume, with a multi-process run's flags."""
    argv = ["train", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "1", "--workdir", "w"]
    args = types.SimpleNamespace(argv=argv, resume=False, coordinator="h:1", num_processes=2, process_id=1)
    line = cli._train_interrupted(args, tmp_path)  # pylint: disable=protected-access
    assert line() == f"jaxcnn: interrupted; continue with: jaxcnn {shlex.join(argv)}"
    checkpoint.save_config(tmp_path, {"model": "sequence"})
    assert line() == (f"jaxcnn: interrupted; continue with: jaxcnn train --resume --workdir {tmp_path} "
                      "--coordinator=h:1 --num-processes=2 --process-id=1")


@pytest.mark.parametrize("argv0, orig_argv, command", [
    ("-m", ["python", "-m", "jaxcnn", "train"], True),  # python -m jaxcnn, while the package imports
    ("<jaxcnn/__main__.py>", ["python", "-m", "jaxcnn", "train"], True),  # then, in jaxcnn/__main__.py
    ("<jaxcnn/__main__.py>", ["python", "-mjaxcnn"], True),
    ("/usr/bin/jaxcnn", ["python", "/usr/bin/jaxcnn", "train"], True),  # the console script
    ("-m", ["python", "-m", "pytest"], False),
    ("-c", ["python", "-c", "import jaxcnn"], False),
    ("/home/me/train.py", ["python", "/home/me/train.py"], False),  # a user's script
])
def test_the_command_is_recognised_by_how_it_was_launched(monkeypatch, argv0, orig_argv, command):
    main_file = str(ROOT / "jaxcnn" / "__main__.py")
    monkeypatch.setattr(sys, "argv", [argv0.replace("<jaxcnn/__main__.py>", main_file)])
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert interrupt._launched_as_command() is command  # pylint: disable=protected-access


# ------------------------------------------------------------ real processes


def test_interrupts_while_importing_and_in_check_grads_are_one_line(tmp_path):
    """Ctrl-C before jax is even imported, and inside ``check-grads`` (loading and compiling)."""
    importing = Process(tmp_path / "importing", RUN + ["--workdir", tmp_path / "run"])
    checking = Process(tmp_path / "checking", ["check-grads", "--batch", "8"])
    try:
        assert importing.interrupt_at("imports") and checking.interrupt_at("check-grads")
        results = importing.wait(), checking.wait()
    finally:
        importing.kill()
        checking.kill()
    line = _assert_interrupted(results[0], "jaxcnn: interrupted; continue with: jaxcnn train")
    assert _continue_command(line) == [*RUN, "--workdir", str(tmp_path / "run")]  # the same command again
    assert not (tmp_path / "run").exists()
    assert _assert_interrupted(results[1], "jaxcnn: interrupted; nothing was written; run again with: ") == \
        "jaxcnn: interrupted; nothing was written; run again with: jaxcnn check-grads --batch 8"


# (name, phase at which SIGINT is sent, seconds after its marker, extra environment)
MOMENTS = [
    ("setup", "setup", 0.0, {}),  # loading the data, building the model
    ("compile", "compile", 0.0, {}),  # tracing and lowering the epoch program
    ("compile+0.5s", "compile", 0.5, {}),  # inside XLA's compilation
    ("mid-epoch", "epoch 2 step 4", 0.0, {}),  # epoch 2, batches 5-6 running
    ("save", "save 1", 0.0, {observer.PAUSE_ENV: "save 1"}),  # epoch 1's checkpoint written, not committed
]
CONTINUED = ("compile", "mid-epoch", "save")  # continued and compared (setup's continuation is a fresh run)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """An uninterrupted reference run, the runs of MOMENTS (three at a time), ``eval`` of the reference
    interrupted, then the runs of CONTINUED continued with the command their line gives."""
    root = tmp_path_factory.mktemp("interrupts")
    workdir = {name: root / name for name, *_ in MOMENTS}
    reference = Process(root / "reference", RUN + ["--workdir", root / "reference"])
    results, continued, snapshots = {}, {}, {}
    processes = [reference]
    try:
        for group in (MOMENTS[:3], MOMENTS[3:]):
            started = {name: Process(workdir[name], RUN + ["--workdir", workdir[name]], **env)
                       for name, _, _, env in group}
            processes += started.values()
            for name, phase, delay, _ in group:
                assert started[name].interrupt_at(phase, delay), started[name].err.read_text()
            for name, process in started.items():
                results[name] = process.wait()
                snapshots[name] = types.SimpleNamespace(
                    epochs=checkpoint.committed_epochs(workdir[name]),
                    metrics=[r["epoch"] for r in checkpoint.read_metrics(workdir[name])],
                    listing=sorted(p.name for p in (workdir[name] / checkpoint.CHECKPOINT_DIR).glob("*")))
        reference_result = reference.wait()
        evaluating = Process(root / "eval", ["eval", "--workdir", root / "reference"])
        processes.append(evaluating)
        assert evaluating.interrupt_at("eval")
        eval_result = evaluating.wait()
        resumed = {}
        for name, result in results.items():
            if name in CONTINUED and result.code == cli.INTERRUPTED and "continue with: " in result.err:
                resumed[name] = Process(root / f"{name}-continued", _continue_command(result.err.strip()))
        processes += resumed.values()
        continued = {name: process.wait() for name, process in resumed.items()}
    finally:
        for process in processes:
            process.kill()
    return types.SimpleNamespace(root=root, workdir=workdir, reference=reference_result, results=results,
                                 snapshots=snapshots, eval=eval_result, continued=continued)


def _metrics_without_wall_clock(workdir):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in checkpoint.read_metrics(workdir)]


def _assert_same_run(workdir, reference):
    assert [r["epoch"] for r in checkpoint.read_metrics(workdir)] == [1, 2]
    assert _metrics_without_wall_clock(workdir) == _metrics_without_wall_clock(reference)
    assert checkpoint.committed_epochs(workdir) == checkpoint.committed_epochs(reference) == [1, 2]
    for epoch in (1, 2):
        ours, theirs = checkpoint.restore(workdir, None, epoch), checkpoint.restore(reference, None, epoch)
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        jax.tree.map(np.testing.assert_array_equal, ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("name", [moment[0] for moment in MOMENTS])
def test_an_interrupted_run_exits_130_with_one_line(interrupted, name):
    assert interrupted.reference.code == 0, interrupted.reference.err
    result = interrupted.results[name]
    line = _assert_interrupted(result, "jaxcnn: interrupted; continue with: jaxcnn train ")
    assert result.latency < 30, result.latency  # handled at once, or when a compile call returns
    if name in ("mid-epoch", "save"):
        resume = f"jaxcnn train --resume --workdir {interrupted.workdir[name]}"
        assert line == f"jaxcnn: interrupted; continue with: {resume}"


@pytest.mark.slow
def test_an_interrupt_mid_epoch_stops_before_the_epoch_is_written(interrupted):
    snapshot, out = interrupted.snapshots["mid-epoch"], interrupted.results["mid-epoch"].out
    assert snapshot.epochs == [1] and snapshot.metrics == [1], snapshot
    assert "epoch 1/2" in out and "epoch 2/2" not in out


@pytest.mark.slow
def test_an_interrupt_inside_a_checkpoint_write_lets_it_commit_first(interrupted):
    snapshot = interrupted.snapshots["save"]
    assert snapshot.epochs == [1] and snapshot.listing == ["1"] and snapshot.metrics == [1], snapshot
    assert "epoch 2/2" not in interrupted.results["save"].out


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTINUED)
def test_the_continued_run_equals_an_uninterrupted_one(interrupted, name):
    result = interrupted.continued[name]
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    _assert_same_run(interrupted.workdir[name], interrupted.root / "reference")


@pytest.mark.slow
def test_an_interrupted_eval_is_one_line(interrupted):
    line = _assert_interrupted(interrupted.eval, "jaxcnn: interrupted; nothing was written; run again with: ")
    assert line.endswith(f"jaxcnn eval --workdir {interrupted.root / 'reference'}")
