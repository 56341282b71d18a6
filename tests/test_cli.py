"""Tests for the ``jaxcnn`` command (jaxcnn.cli), in-process through ``main(argv)``
and once as ``python -m jaxcnn`` in a subprocess.

The training runs are tiny (the cheap ``sequence`` network on 500 + 500 digits,
one or two epochs): they prove the plumbing (flags, workdir, resume, eval), not
learning, which tests/training/test_loop.py covers.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from jaxcnn import cli
from jaxcnn.training import checkpoint

TINY = ["--model", "sequence", "--train-limit", "500", "--test-limit", "500", "--batch-size", "50",
        "--steps-per-call", "2", "--no-progress"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``jaxcnn train --dataset mnist`` (offline: falls back to the sample), 2 epochs."""
    workdir = tmp_path_factory.mktemp("cli-run")
    code = cli.main(["train", "--dataset", "mnist", "--epochs", "2", "--workdir", str(workdir), *TINY])
    return code, workdir


# ------------------------------------------------------------------ errors


BAD_ARGS = [
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "-3"], "--batch-size"),
    (["train", "--batch-size", "ten"], "--batch-size"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--model", "resnet50"], "--model"),
    (["train", "--grad", "numeric"], "--grad"),
    (["train", "--impl", "cudnn"], "--impl"),
    (["train", "--optimizer", "lbfgs"], "--optimizer"),
    (["train", "--schedule", "step"], "--schedule"),
    (["train", "--augment", "mixup"], "--augment"),
    (["train", "--colour", "red"], "unrecognized arguments"),
    (["train", "--dataset", "mnist-sample", "--batch-size", "5001"], "batch_size must be at most"),
    (["train", "--dataset", "idx:/no/such/dir"], "does not exist"),
    (["train", "--dataset", "no_such_dataset_xyz"], "no such TFDS dataset"),
    (["train", "--resume"], "--resume needs --workdir"),
    (["eval"], "--workdir"),
    (["summary", "resnet50"], "model must be one of"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGS, ids=[" ".join(a) or "(none)" for a, _ in BAD_ARGS])
def test_bad_arguments_print_one_error_line_and_exit_2(capsys, tmp_path, argv, message):
    if argv[:1] == ["train"] and "--resume" not in argv:
        argv = [*argv, "--workdir", str(tmp_path / "run")]
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxcnn: error: ") and message in lines[0], err
    assert "Traceback" not in err + out
    assert not (tmp_path / "run" / checkpoint.CONFIG_FILE).exists()


def test_corrupt_idx_files_are_a_clean_error(capsys, tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    code, _, err = _run(capsys, "train", "--dataset", f"idx:{tmp_path}", "--workdir", str(tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("jaxcnn: error: ")


def test_resume_without_a_checkpoint_is_a_clean_error(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--resume", "--workdir", str(tmp_path))
    assert code == 2 and "holds no training run" in err and err.count("\n") == 1


def test_errors_are_one_line_in_a_real_process(tmp_path):
    """``python -m jaxcnn``: nothing else (warnings, logs) reaches stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "jaxcnn", "train", "--epochs", "0"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "jaxcnn: error: argument --epochs: must be a positive int, got '0'\n"


def test_help_exits_0(capsys):
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0 and "--resume" in out and "--train-limit" in out


# ------------------------------------------------------- train, eval, resume


def test_train_writes_a_run(trained):
    code, workdir = trained
    assert code == 0
    records = checkpoint.read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2]
    config = checkpoint.load_config(workdir)
    assert config["dataset"] in ("mnist", "mnist-sample") and config["model"] == "sequence"
    for name in ("curves.png", "filters.png"):
        assert (workdir / name).read_bytes()[:4] == b"\x89PNG"


def test_eval_reproduces_the_last_test_accuracy(capsys, trained):
    _, workdir = trained
    code, out, _ = _run(capsys, "eval", "--workdir", str(workdir))
    last = checkpoint.read_metrics(workdir)[-1]
    assert code == 0
    assert out.startswith("epoch 2: test accuracy")
    correct, total = map(int, re.search(r"\((\d+)/(\d+)\)", out).groups())
    assert total == 500 and correct / total == last["test_accuracy"]


def test_resume_rejects_a_changed_flag_and_a_fresh_run_an_existing_workdir(capsys, trained, tmp_path):
    _, workdir = trained
    code, _, err = _run(capsys, "train", "--resume", "--workdir", str(workdir), "--lr", "0.5")
    assert code == 2 and "only epochs may change" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "train", "--workdir", str(workdir), *TINY)
    assert code == 2 and "already holds a run" in err


@pytest.mark.slow
def test_resume_continues_the_metric_sequence(capsys, tmp_path):
    """Plan 2 epochs, stop after 1 (as an interruption would), resume from the CLI."""
    from jaxcnn.training import loop as train

    config = train.TrainConfig(model="sequence", dataset="mnist-sample", train_limit=500, test_limit=500,
                               batch_size=50, steps_per_call=2, epochs=2, schedule="constant")
    train.train_and_evaluate(config, tmp_path, progress=False, stop_after=1, log=lambda line: None)
    code, out, _ = _run(capsys, "train", "--resume", "--workdir", str(tmp_path), "--no-progress")
    assert code == 0 and "epoch 2/2" in out and "epoch 1/2" not in out
    code, out, _ = _run(capsys, "train", "--resume", "--workdir", str(tmp_path), "--epochs", "3",
                        "--no-progress")
    assert code == 0 and "epoch 3/3" in out
    assert [r["epoch"] for r in checkpoint.read_metrics(tmp_path)] == [1, 2, 3]
    assert json.loads((tmp_path / checkpoint.CONFIG_FILE).read_text())["epochs"] == 3


# ----------------------------------------------------- check-grads, summary


@pytest.mark.slow
def test_check_grads_prints_small_differences_for_every_parameter(capsys):
    code, out, _ = _run(capsys, "check-grads", "--batch", "8")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert [(row[0], row[2]) for row in rows] == [(i, p) for i in ("0", "2", "6", "8") for p in ("w", "b")]
    for row in rows:
        assert all(float(value) < 1e-5 for value in row[4:8]), row
    assert out.splitlines()[-1].endswith(": ok")


@pytest.mark.parametrize("model, batch", [("classic-dropout", 8), pytest.param("resnet", 4, marks=pytest.mark.slow)])
@pytest.mark.slow
def test_check_grads_float64_in_training_mode(capsys, model, batch):
    """Dropout active with one fixed key, BatchNorm on batch statistics: the modes agree to 1e-10 in float64."""
    code, out, _ = _run(capsys, "check-grads", "--model", model, "--dtype", "float64", "--batch", str(batch))
    last = out.splitlines()[-1]
    assert code == 0 and last.endswith("(tolerance 1e-10): ok"), last
    assert float(last.split()[3]) <= 1e-10
    rows = [line.split() for line in out.splitlines()[1:-1]]
    # classic-dropout: 4 layers with w and b; resnet: stem w + BN (3), 7 blocks of 2 × (w + BN) and 2 with a
    # projection w + BN more (7·6 + 2·9), dense w and b
    assert len(rows) == {"classic-dropout": 8, "resnet": 3 + 7 * 6 + 2 * 9 + 2}[model]


def test_summary_prints_the_parameter_count(capsys):
    code, out, _ = _run(capsys, "summary", "classic")
    assert code == 0 and "1,199,882" in out
