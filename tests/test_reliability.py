"""Reliability: every bad input is one clear error, and a killed run resumes exactly.

1. Bad input, table-driven: the Python API raises ``ValueError``/``TypeError``
   naming the argument and what is accepted; the ``jaxcnn`` command (in-process
   through ``cli.main``, and in a real process) prints one line
   ``jaxcnn: error: ...`` on stderr, exits with status 2, no traceback.
2. The work directory survives a kill at any instant (``jaxcnn.training.checkpoint``):
   uncommitted and half-pruned checkpoints are ignored, a torn metrics line too.
3. Fault tests in real processes: runs killed with SIGKILL during epoch 2's
   training and inside epoch 2's checkpoint save (the test-side observer of
   ``tests/support/jaxcnn_observer.py``),
   then resumed, end with the params and metrics of an uninterrupted run; two
   runs with the same seed are bitwise identical (wall-clock fields aside).

The runs are tiny (the ``sequence`` net, 600 train / 500 test digits, 3 epochs of
12 batches) and run four at a time; one uninterrupted reference run serves
every comparison.
"""

import dataclasses
import gzip
import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from support import jaxcnn_observer as observer
from jaxcnn import cli
from jaxcnn.training import checkpoint
from jaxcnn.training import data
from jaxcnn.nn import layers
from jaxcnn.nn import models
from jaxcnn.training import loop as train

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN = ["train", "--dataset", "mnist-sample", "--train-limit", "600", "--test-limit", "500", "--batch-size", "50",
       "--epochs", "3", "--model", "sequence", "--schedule", "constant", "--steps-per-call", "2", "--no-progress"]
WALL_CLOCK_KEYS = {"epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds"}
RUN_SECONDS = 300  # per batch of processes; each takes ~15 s alone on 2 cores
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ============================================================ 1. bad input: API


def _tiny_model():
    model = layers.serial(layers.Flatten(), layers.Dense(10))
    _, params = model.init(jax.random.PRNGKey(0), (-1, 4, 4, 1))
    return model, params


def _loss_and_grad(**kwargs):
    model, params = _tiny_model()
    labels = kwargs.pop("labels", jnp.array([0, 1]))
    return jaxcnn.loss_and_grad(model, params, jnp.ones((2, 4, 4, 1)), labels, **kwargs)


X, W = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
LOGITS = jnp.zeros((2, 10))
CONFIG = train.TrainConfig(model="sequence", dataset="mnist-sample")

# (id, call, exception type, substrings the message must contain: the argument, the value, what is accepted)
API_CASES = [
    ("conv stride 0", lambda: jaxcnn.conv(X, W, stride=0), ValueError, ["stride", ">= 1", "0"]),
    ("conv stride float", lambda: jaxcnn.conv(X, W, stride=1.5), TypeError, ["stride", "int", "1.5"]),
    ("conv padding name", lambda: jaxcnn.conv(X, W, padding="HALF"), ValueError, ["padding", '"SAME"', "HALF"]),
    ("conv padding negative", lambda: jaxcnn.conv(X, W, padding=-1), ValueError, ["padding", ">= 0", "-1"]),
    ("conv impl", lambda: jaxcnn.conv(X, W, impl="cudnn"), ValueError, ["impl", "'lax'", "'winograd'", "cudnn"]),
    ("conv winograd stride", lambda: jaxcnn.conv(X, W, stride=2, impl="winograd"), ValueError,
     ["impl=\"winograd\"", "window 3", "stride 1", "stride (2, 2)"]),
    ("conv grad", lambda: jaxcnn.conv(X, W, grad="numeric"), ValueError, ["grad", "'manual'", "numeric"]),
    ("conv channels", lambda: jaxcnn.conv(X, jnp.ones((3, 3, 2, 4))), ValueError, ["3 channels", "w.shape[-2]"]),
    ("conv groups", lambda: jaxcnn.conv(X, W, groups=2), ValueError, ["groups=2", "divide"]),
    ("conv window", lambda: jaxcnn.conv(X, jnp.ones((9, 9, 3, 4))), ValueError, ["larger than the padded input"]),
    ("conv bias", lambda: jaxcnn.conv(X, W, jnp.ones(3)), ValueError, ["b must have shape (4,)", "(3,)"]),
    ("max_pool window", lambda: jaxcnn.max_pool(X, 0), ValueError, ["window", ">= 1"]),
    ("max_pool rank", lambda: jaxcnn.max_pool(jnp.ones((8, 8)), 2), ValueError, ["x must have shape", "(8, 8)"]),
    ("avg_pool count_include_pad", lambda: jaxcnn.avg_pool(X, 2, count_include_pad="yes"), TypeError,
     ["count_include_pad", "True or False", "yes"]),
    ("dense shapes", lambda: jaxcnn.dense(jnp.ones((2, 3)), jnp.ones((4, 5))), ValueError,
     ["w must have shape", "in_features=3", "(4, 5)"]),
    ("dense rank", lambda: jaxcnn.dense(jnp.ones((2, 3, 4)), jnp.ones((4, 5))), ValueError,
     ["x must have shape (batch, in_features)"]),
    ("loss float labels", lambda: jaxcnn.softmax_cross_entropy(LOGITS, jnp.array([0.0, 1.0])), TypeError,
     ["labels", "integer", "float32"]),
    ("loss label 10 of 10", lambda: jaxcnn.softmax_cross_entropy(LOGITS, jnp.array([0, 10])), ValueError,
     ["labels must lie in [0, 10)", "[0, 10]"]),
    ("binary loss label", lambda: jaxcnn.softmax_binary_cross_entropy(LOGITS, jnp.array([-1, 0])), ValueError,
     ["labels must lie in [0, 10)", "-1"]),
    ("loss labels shape", lambda: jaxcnn.softmax_cross_entropy(LOGITS, jnp.array([0, 1, 2])), ValueError,
     ["labels must have shape (batch,)", "(3,)"]),
    ("loss logits rank", lambda: jaxcnn.softmax_cross_entropy(jnp.zeros(10), jnp.array([0])), ValueError,
     ["logits must have shape (batch, classes)"]),
    ("Conv out_channels", lambda: layers.Conv(0, 3), ValueError, ["out_channels", "positive int", "0"]),
    ("Conv init scheme", lambda: layers.Conv(4, 3, init="xavier"), ValueError, ["init", "'he'", "xavier"]),
    ("Conv impl", lambda: layers.Conv(4, 3, impl="cudnn"), ValueError, ["impl", "'explicit'", "'auto'", "cudnn"]),
    ("Dense init scheme", lambda: layers.Dense(4, init="zeros"), ValueError, ["init", "'glorot'", "zeros"]),
    ("Conv input rank", lambda: layers.Conv(4, 3).init(jax.random.PRNGKey(0), (-1, 8)), ValueError,
     ["Conv expects input_shape", "(-1, 8)"]),
    ("Dense out_features", lambda: layers.Dense(2.5), ValueError, ["out_features", "positive int", "2.5"]),
    ("serial non-layer", lambda: layers.serial(layers.Relu(), "dense"), TypeError, ["serial", "Layer"]),
    ("models.get_model", lambda: models.get_model("resnet50"), ValueError, ["model", "'resnet'", "resnet50"]),
    # the research blocks (issue 11)
    ("dropout rate 1", lambda: jaxcnn.dropout(X, jax.random.key(0), rate=1.0), ValueError, ["rate", "[0, 1)", "1.0"]),
    ("Dropout layer rate", lambda: layers.Dropout(1), ValueError, ["rate", "[0.0, 1.0)", "1"]),
    ("group_norm groups", lambda: jaxcnn.group_norm(X, jnp.ones(3), jnp.zeros(3), groups=2), ValueError,
     ["groups", "dividing channels=3", "got 2"]),
    ("GroupNorm layer groups", lambda: layers.GroupNorm(2).init(jax.random.key(0), (-1, 4, 4, 3)), ValueError,
     ["groups=2", "divide", "3"]),
    ("batch_norm scale shape", lambda: jaxcnn.batch_norm(X, jnp.ones(4), jnp.zeros(3)), ValueError, ["scale", "(3,)"]),
    ("conv_transpose output_padding", lambda: jaxcnn.conv_transpose(X, jnp.ones((3, 3, 4, 3)), stride=2,
                                                                    output_padding=2), ValueError,
     ["output_padding", "stride"]),
    ("conv_transpose groups", lambda: jaxcnn.conv_transpose(X, jnp.ones((3, 3, 2, 3)), groups=2), ValueError,
     ["groups"]),
    ("stateful model without state", lambda: models.resnet().apply(
        models.resnet().init(jax.random.key(0), (-1, 8, 8, 1))[1], jnp.ones((1, 8, 8, 1))), ValueError,
     ["BatchNorm needs its state", "apply_with_state"]),
    ("loss_and_grad without state", lambda: jaxcnn.loss_and_grad(
        models.resnet(), models.resnet().init(jax.random.key(0), (-1, 8, 8, 1))[1], jnp.ones((1, 8, 8, 1)),
        jnp.array([0])), ValueError, ["pass state="]),
    ("loss_and_grad dropout without key", lambda: jaxcnn.loss_and_grad(
        models.classic_dropout_net(), models.classic_dropout_net().init(jax.random.key(0), (-1, 8, 8, 1))[1],
        jnp.ones((1, 8, 8, 1)), jnp.array([0])), ValueError, ["pass key="]),
    ("residual non-layer", lambda: layers.residual("block"), TypeError, ["block must be a Layer"]),
    ("FanOut count", lambda: layers.FanOut(0), ValueError, ["num", "positive int", "0"]),
    ("leaky_relu slope", lambda: jaxcnn.leaky_relu(X, negative_slope=float("nan")), ValueError, ["negative_slope"]),
    ("loss_and_grad grad", lambda: _loss_and_grad(grad="numeric"), ValueError, ["grad must be one of", "'backprop'", "numeric"]),
    ("loss_and_grad loss", lambda: _loss_and_grad(grad="manual", loss=lambda z, y: 0.0), ValueError,
     ["needs a loss with a hand rule", "softmax_cross_entropy"]),
    ("loss_and_grad labels", lambda: _loss_and_grad(labels=jnp.array([0, 12])), ValueError,
     ["labels must lie in [0, 10)"]),
    ("TrainConfig epochs", lambda: dataclasses.replace(CONFIG, epochs=0).validated(), ValueError,
     ["epochs", "positive int", "0"]),
    ("TrainConfig batch_size", lambda: dataclasses.replace(CONFIG, batch_size=2.5).validated(), ValueError,
     ["batch_size", "positive int", "2.5"]),
    ("TrainConfig lr text", lambda: dataclasses.replace(CONFIG, lr="abc").validated(), ValueError,
     ["lr", "positive finite number", "abc"]),
    ("TrainConfig lr nan", lambda: dataclasses.replace(CONFIG, lr=float("nan")).validated(), ValueError,
     ["lr", "positive finite number", "nan"]),
    ("TrainConfig optimizer", lambda: dataclasses.replace(CONFIG, optimizer="lbfgs").validated(), ValueError,
     ["optimizer", "'adamw'", "lbfgs"]),
    ("TrainConfig.from_dict", lambda: train.TrainConfig.from_dict({"colour": "red"}), ValueError,
     ["unknown TrainConfig fields", "colour", "batch_size"]),
    ("data.load split", lambda: data.load("mnist-sample", "validation"), ValueError,
     ["split", "'train'", "validation"]),
    ("data.load name", lambda: data.load(3, "train"), ValueError, ["name must be", "idx:DIR", "got 3"]),
    ("data.load idx:", lambda: data.load("idx:", "train"), ValueError, ["needs a directory after"]),
    ("data.load idx missing", lambda: data.load("idx:/no/such/jaxcnn-dir", "train"), ValueError,
     ["/no/such/jaxcnn-dir", "does not exist"]),
    ("data.num_classes name", lambda: data.num_classes(3), ValueError, ["name must be", "got 3"]),
    ("conv_output_size", lambda: jaxcnn.conv_output_size(8, 0), ValueError, ["f must be a positive int", "0"]),
    ("checkpoint.load_config", lambda: checkpoint.load_config("/no/such/jaxcnn-dir"), ValueError,
     ["config.json does not exist", "holds no training run"]),
    ("checkpoint.restore", lambda: checkpoint.restore("/no/such/jaxcnn-dir", {}), ValueError, ["no checkpoint in"]),
    ("checkpoint.check_workdir", lambda: checkpoint.check_workdir(__file__), ValueError,
     ["is a file", "must be a directory"]),
    # issue 14: seeds that alias, step counts that overflow, learning rates float32 cannot hold, options without effect
    ("TrainConfig seed 2**32", lambda: dataclasses.replace(CONFIG, seed=2**32).validated(), ValueError,
     ["seed", "[0, 2**32)", "4294967296"]),
    ("TrainConfig seed 2**63", lambda: dataclasses.replace(CONFIG, seed=2**63).validated(), ValueError,
     ["seed", "[0, 2**32)", "9223372036854775808"]),
    ("TrainConfig epochs 2**31", lambda: dataclasses.replace(CONFIG, epochs=2**31).validated(), ValueError,
     ["epochs", "at most 2**31 - 1", "2147483648"]),
    ("TrainConfig lr of 400 digits", lambda: dataclasses.replace(CONFIG, lr=10**400).validated(), ValueError,
     ["lr", "positive finite number", "(401 characters)"]),
    ("TrainConfig lr rounds to 0", lambda: dataclasses.replace(CONFIG, lr=1e-50).validated(), ValueError,
     ["lr must be at least 1.18e-38", "round to 0 in float32", "1e-50"]),
    ("TrainConfig lr beyond float32", lambda: dataclasses.replace(CONFIG, lr=1e39).validated(), ValueError,
     ["lr must be at most 3.403e+38", "1e+39"]),
    ("TrainConfig weight_decay with sgd", lambda: dataclasses.replace(CONFIG, optimizer="sgd", weight_decay=0.1)
     .validated(), ValueError, ["weight_decay has no effect with optimizer='sgd'", "'adamw'", "0.1"]),
    ("checkpoint.check_workdir ''", lambda: checkpoint.check_workdir(""), ValueError,
     ["workdir must be a directory path", "''"]),
    ("checkpoint.load_config ''", lambda: checkpoint.load_config(""), ValueError,
     ["workdir must be a directory path", "''"]),
]


@pytest.mark.parametrize("call, error, parts", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_bad_api_input_raises_a_clear_error(call, error, parts):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert all(part in message for part in parts), message
    assert "\n" not in message


# ============================================================ 1. bad input: CLI


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


def _write_split(directory: pathlib.Path, stem: str, count: int, labels=None, images_bytes=None, label_count=None):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = np.arange(label_count or count, dtype=np.uint8) % 10 if labels is None else labels
    (directory / f"{stem}-images-idx3-ubyte").write_bytes(images_bytes or _idx_bytes(images))
    (directory / f"{stem}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """IDX directories, each with one defect (train split; a valid test split), a regular
    file and a read-only directory."""
    root = tmp_path_factory.mktemp("bad-input")
    good = _idx_bytes(np.zeros((100, 28, 28), np.uint8))
    defects = {
        "valid": {},
        "labels_out_of_range": {"labels": np.array([0] * 99 + [10], np.uint8)},
        "wrong_magic": {"images_bytes": b"\x12\x34" + good[2:]},
        "truncated": {"images_bytes": good[:-7]},
        "count_mismatch": {"label_count": 90},
    }
    for name, defect in defects.items():
        _write_split(root / name, "train", 100, **defect)
        _write_split(root / name, "t10k", 50)
    _write_split(root / "no_test_split", "train", 100)
    (root / "corrupt_gzip").mkdir()
    (root / "corrupt_gzip" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(good)[:40])
    (root / "corrupt_gzip" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(good[:108]))
    (root / "a_file").write_text("not a directory\n")
    (root / "read_only").mkdir(mode=0o500)
    _write_sized(root / "mixed_sizes", "train", 100, (28, 28))
    _write_sized(root / "mixed_sizes", "t10k", 50, (14, 14))
    for name, size in (("tiny_images", (2, 2)), ("empty_images", (0, 0))):
        _write_sized(root / name, "train", 100, size)
        _write_sized(root / name, "t10k", 50, size)
    return root


def _write_sized(directory: pathlib.Path, stem: str, count: int, size):
    """An IDX split of ``count`` random ``size`` images."""
    directory.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (count, *size), dtype=np.uint8)
    (directory / f"{stem}-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (directory / f"{stem}-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(count, dtype=np.uint8) % 10))


def _foreign_workdir(root: pathlib.Path) -> pathlib.Path:
    """A directory of someone's own files, one of them a config.json (written afresh for every case)."""
    directory = root / "someone_elses"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text('{"learning_rate": 1}\n')
    (directory / "notes.txt").write_text("mine\n")
    return directory


def _idx(name):
    return lambda root: ["--dataset", f"idx:{root / name}"]


# (id, extra argv built from the paths fixture's root, substrings of the error line)
CLI_CASES = [
    ("batch size 0", lambda root: ["--batch-size", "0"], ["--batch-size", "positive int", "'0'"]),
    ("batch size -5", lambda root: ["--batch-size", "-5"], ["--batch-size", "positive int", "'-5'"]),
    ("batch larger than data", lambda root: [*_idx("valid")(root), "--batch-size", "101"],
     ["batch_size must be at most the 100 training examples", "101"]),
    ("epochs 0", lambda root: ["--epochs", "0"], ["--epochs", "positive int", "'0'"]),
    ("epochs -2", lambda root: ["--epochs", "-2"], ["--epochs", "positive int", "'-2'"]),
    ("lr 0", lambda root: ["--lr", "0"], ["--lr", "positive finite number", "'0'"]),
    ("lr -1", lambda root: ["--lr", "-1"], ["--lr", "positive finite number", "'-1'"]),
    ("lr nan", lambda root: ["--lr", "nan"], ["--lr", "positive finite number", "'nan'"]),
    ("lr inf", lambda root: ["--lr", "inf"], ["--lr", "positive finite number", "'inf'"]),
    ("lr abc", lambda root: ["--lr", "abc"], ["--lr", "positive finite number", "'abc'"]),
    ("train-limit 0", lambda root: ["--train-limit", "0"], ["--train-limit", "positive int"]),
    ("unknown dataset", lambda root: ["--dataset", "no_such_dataset_xyz"],
     ["no such TFDS dataset", "no_such_dataset_xyz", "mnist-sample", "idx:DIR"]),
    ("unknown model", lambda root: ["--model", "resnet50"], ["--model", "'resnet50'", "'classic'"]),
    ("unknown grad", lambda root: ["--grad", "numeric"], ["--grad", "'numeric'", "'backprop'"]),
    ("unknown impl", lambda root: ["--impl", "cudnn"], ["--impl", "'cudnn'", "'winograd'"]),
    ("unknown optimizer", lambda root: ["--optimizer", "lbfgs"], ["--optimizer", "'lbfgs'", "'adamw'"]),
    ("idx dir missing", lambda root: ["--dataset", f"idx:{root / 'missing'}"],
     ["IDX directory", "missing", "does not exist"]),
    ("idx wrong magic", _idx("wrong_magic"), ["train-images-idx3-ubyte", "magic number 0x12340803", "expected"]),
    ("idx truncated", _idx("truncated"), ["train-images-idx3-ubyte", "is truncated", "holds 78409 bytes"]),
    ("idx corrupt gzip", _idx("corrupt_gzip"), ["train-images-idx3-ubyte.gz", "not a valid gzip file"]),
    ("idx label 10", _idx("labels_out_of_range"), ["train-labels-idx1-ubyte", "labels in [0, 10]", "[0, 9]"]),
    ("idx count mismatch", _idx("count_mismatch"), ["100 images", "90 labels"]),
    ("idx no test split", _idx("no_test_split"), ["no test images", "t10k-images-idx3-ubyte"]),
    ("workdir under a file", lambda root: ["--workdir", str(root / "a_file" / "run")],
     ["cannot be created", "a_file is a file"]),
    ("workdir is a file", lambda root: ["--workdir", str(root / "a_file")], ["a_file is a file"]),
    pytest.param("workdir read-only", lambda root: ["--workdir", str(root / "read_only" / "run")],
                 ["not writable", "read_only"],
                 marks=pytest.mark.skipif(IS_ROOT, reason="root ignores permission bits (chmod 0o500)")),
    ("coordinator without a port", lambda root: ["--coordinator", "localhost"], ["coordinator must be HOST:PORT"]),
    ("process id out of range", lambda root: ["--coordinator", "127.0.0.1:1", "--num-processes", "2",
                                              "--process-id", "2"], ["process_id must be in [0, num_processes=2)"]),
    ("coordinator missing", lambda root: ["--num-processes", "2", "--process-id", "1"],
     ["multi-process run needs --coordinator HOST:PORT (or JAX_COORDINATOR_ADDRESS)"]),
    ("process count and id missing", lambda root: ["--coordinator", "127.0.0.1:1"],
     ["needs --num-processes N and --process-id I", "got only --coordinator=127.0.0.1:1"]),
    ("init timeout 0", lambda root: ["--init-timeout", "0"], ["--init-timeout", "positive finite number", "'0'"]),
    ("init timeout inf", lambda root: ["--init-timeout", "inf"], ["--init-timeout", "positive finite number"]),
    ("resume an empty dir", lambda root: ["--resume", "--workdir", str(root / "empty")],
     ["config.json does not exist", "holds no training run"]),
    # issue 14
    ("train and test images of two sizes", _idx("mixed_sizes"),
     ["train and test images", "differ in size", "train 28×28×1, test 14×14×1"]),
    ("images too small for the model", lambda root: [*_idx("tiny_images")(root), "--model", "classic"],
     ["2×2×1 images", "too small for the model 'classic'"]),
    ("images of 0x0 pixels", _idx("empty_images"), ["0×0×1 images", "too small for the model", "no pixels"]),
    ("seed 2**32", lambda root: ["--seed", str(2**32)], ["--seed", "[0, 2**32)", "'4294967296'"]),
    ("seed 2**63", lambda root: ["--seed", str(2**63)], ["--seed", "[0, 2**32)", "'9223372036854775808'"]),
    ("seed of 300 digits", lambda root: ["--seed", "9" * 300], ["--seed", "[0, 2**32)", "(300 characters)"]),
    ("epochs of 300 digits", lambda root: ["--epochs", "9" * 300], ["--epochs", "positive int", "(300 characters)"]),
    ("epochs overflowing the step counter", lambda root: ["--epochs", str(2**31 - 1)],
     ["epochs must be at most 1073741823", "int32 step counter"]),
    ("train-limit of 300 digits", lambda root: ["--train-limit", "9" * 300],
     ["--train-limit", "at most 2147483647", "(300 characters)"]),
    ("lr that rounds to 0", lambda root: ["--lr", "1e-50"], ["lr must be at least", "round to 0 in float32"]),
    ("lr beyond float32", lambda root: ["--lr", "1e300"], ["lr must be at most", "float32's largest"]),
    ("weight decay with sgd", lambda root: ["--optimizer", "sgd", "--weight-decay", "0.1"],
     ["weight_decay has no effect with optimizer='sgd'"]),
    ("workdir ''", lambda root: ["--workdir", ""], ["workdir must be a directory path", "''"]),
    ("resume workdir ''", lambda root: ["--resume", "--workdir", ""], ["workdir must be a directory path", "''"]),
    ("workdir of someone else's files", lambda root: ["--workdir", _foreign_workdir(root)],
     ["holds files that are not a jaxcnn run", "config.json, notes.txt", "choose a new or empty directory"]),
]


def _case_id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


def _main(capsys, argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code, out, err, parts):
    lines = err.strip().splitlines()
    assert code == cli.USAGE_ERROR, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("jaxcnn: error: "), err
    assert all(part in lines[0] for part in parts), lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("name, extra, parts", CLI_CASES, ids=[_case_id(case) for case in CLI_CASES])
def test_bad_cli_input_is_one_error_line(capsys, monkeypatch, paths, tmp_path, name, extra, parts):
    monkeypatch.chdir(tmp_path)  # a run that fell back to a default workdir would land here
    argv = ["train", "--model", "sequence", "--epochs", "1", "--no-progress", "--dataset", "mnist-sample",
            "--train-limit", "100", "--test-limit", "100", "--batch-size", "50", *extra(paths)]
    if "--workdir" not in argv:
        argv += ["--workdir", tmp_path / "run"]
    code, out, err = _main(capsys, argv)
    _assert_one_error_line(code, out, err, parts)
    assert not (tmp_path / "run").exists()  # nothing written for a rejected run
    assert sorted(path.name for path in tmp_path.iterdir()) == []


# (id, environment, extra argv, substrings of the error line): the variables a multi-process start reads
CLI_ENV_CASES = [
    ("JAX_COORDINATOR_ADDRESS without a port", {"JAX_COORDINATOR_ADDRESS": "localhost"}, [],
     ["environment variable JAX_COORDINATOR_ADDRESS must be HOST:PORT", "'localhost'"]),
    ("JAX_COORDINATOR_ADDRESS port 0", {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:0"}, [],
     ["JAX_COORDINATOR_ADDRESS must be HOST:PORT with a port in 1-65535", "'10.0.0.1:0'"]),
    ("JAX_COORDINATOR_ADDRESS without the other flags", {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}, [],
     ["needs --num-processes N and --process-id I", "JAX_COORDINATOR_ADDRESS=127.0.0.1:1"]),
    ("JAX_LOCAL_DEVICE_IDS", {"JAX_LOCAL_DEVICE_IDS": "0,one"},
     ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"],
     ["environment variable JAX_LOCAL_DEVICE_IDS must be comma-separated device indices", "'0,one'"]),
    ("JAX_COORDINATOR_BIND_ADDRESS", {"JAX_COORDINATOR_BIND_ADDRESS": "[::]"},
     ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"],
     ["JAX_COORDINATOR_BIND_ADDRESS must be HOST:PORT", "'[::]'"]),
    ("JAX_PARTITION_INDEX", {"JAX_PARTITION_INDEX": "first"},
     ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"],
     ["JAX_PARTITION_INDEX must be an int >= 0", "'first'"]),
]


@pytest.mark.parametrize("name, env, extra, parts", CLI_ENV_CASES, ids=[case[0] for case in CLI_ENV_CASES])
def test_bad_environment_is_one_error_line(capsys, monkeypatch, tmp_path, name, env, extra, parts):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    argv = ["train", "--model", "sequence", "--epochs", "1", "--no-progress", "--dataset", "mnist-sample",
            "--workdir", tmp_path / "run", *extra]
    code, out, err = _main(capsys, argv)
    _assert_one_error_line(code, out, err, parts)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_errors_in_a_real_process_are_one_line_without_traceback(paths, tmp_path):
    """``python -m jaxcnn``: a data error and an unwritable workdir; nothing else reaches stderr."""
    base = [sys.executable, "-m", "jaxcnn", "train", "--model", "sequence", "--no-progress"]
    commands = {
        "labels": [*base, "--dataset", f"idx:{paths / 'labels_out_of_range'}", "--workdir", tmp_path / "run"],
        "workdir": [*base, "--dataset", "mnist-sample", "--workdir", paths / "a_file" / "run"],
        "lr": [*base, "--dataset", "mnist-sample", "--lr", "1e300", "--workdir", tmp_path / "run"],  # no numpy warning
    }
    processes = {name: subprocess.Popen([str(arg) for arg in command], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
                 for name, command in commands.items()}
    done = {name: (process.communicate(timeout=RUN_SECONDS), process.returncode)
            for name, process in processes.items()}
    for name, ((out, err), code) in done.items():
        assert code == cli.USAGE_ERROR, (name, out, err)
        assert err.count("\n") == 1 and err.startswith("jaxcnn: error: "), (name, err)
        assert "Traceback" not in out + err
    assert "labels in [0, 10]; expected [0, 9]" in done["labels"][0][1]
    assert "a_file is a file" in done["workdir"][0][1]
    assert "float32's largest number; got 1e+300" in done["lr"][0][1]


# ============================================ 2. the work directory under kills


def _state(epoch, scale=1.0):
    return {"params": [{"w": jnp.full((3, 4), scale), "b": jnp.arange(4.0)}, ()], "opt_state": (),
            "epoch": epoch, "key": jnp.array([0, epoch], jnp.uint32)}


def _listing(workdir):
    return sorted(path.name for path in (pathlib.Path(workdir) / checkpoint.CHECKPOINT_DIR).iterdir())


def test_uncommitted_checkpoints_are_ignored_then_swept(tmp_path):
    """An epoch whose save was killed before the commit rename is invisible, and the next save removes it."""
    checkpoint.save(tmp_path, _state(1))
    directory = tmp_path / checkpoint.CHECKPOINT_DIR
    shutil.copytree(directory / "1", directory / f"2{checkpoint.UNCOMMITTED_MARK}")  # every file, no commit
    assert checkpoint.committed_epochs(tmp_path) == [1] and checkpoint.latest_epoch(tmp_path) == 1
    assert int(checkpoint.restore(tmp_path, _state(0))["epoch"]) == 1
    checkpoint.save(tmp_path, _state(2, scale=2.0))
    assert _listing(tmp_path) == ["1", "2"]
    restored = checkpoint.restore(tmp_path, _state(0))
    np.testing.assert_array_equal(restored["params"][0]["w"], np.full((3, 4), 2.0))


def test_pruning_keeps_the_newest_two_and_never_a_half_deleted_one(tmp_path):
    for epoch in (1, 2, 3):
        checkpoint.save(tmp_path, _state(epoch))
    assert _listing(tmp_path) == ["2", "3"] and checkpoint.committed_epochs(tmp_path) == [2, 3]
    # A kill in the middle of pruning epoch 2 (renamed, partly deleted): not a checkpoint.
    doomed = tmp_path / checkpoint.CHECKPOINT_DIR / f"2{checkpoint.UNCOMMITTED_MARK}-pruned"
    os.rename(tmp_path / checkpoint.CHECKPOINT_DIR / "2", doomed)
    shutil.rmtree(doomed / "default")
    assert checkpoint.committed_epochs(tmp_path) == [3]
    with pytest.raises(ValueError, match=r"one of \[3\]; got 2"):
        checkpoint.restore(tmp_path, _state(0), epoch=2)
    checkpoint.save(tmp_path, _state(4))
    assert _listing(tmp_path) == ["3", "4"]


def test_restore_rejects_a_checkpoint_of_another_shape(tmp_path):
    checkpoint.save(tmp_path, _state(1))
    other = _state(0)
    other["params"][0]["w"] = jnp.zeros((3, 5))
    with pytest.raises(ValueError, match=r"checkpoint 1 in .* does not fit this run's state.*\(3, 4\)"):
        checkpoint.restore(tmp_path, other)


def test_a_torn_metrics_line_is_ignored_and_cut_off(tmp_path):
    """A kill inside ``append_metrics`` leaves a line without its newline: not a record."""
    for epoch in (1, 2):
        checkpoint.append_metrics(tmp_path, {"epoch": epoch, "train_loss": 1.0 / epoch})
    path = tmp_path / checkpoint.METRICS_FILE
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"epoch": 3, "train_lo')
    assert [r["epoch"] for r in checkpoint.read_metrics(tmp_path)] == [1, 2]
    checkpoint.append_metrics(tmp_path, {"epoch": 3, "train_loss": 0.25})
    assert [r["epoch"] for r in checkpoint.read_metrics(tmp_path)] == [1, 2, 3]
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"epoch": 4}')  # valid JSON, but its newline never came: still torn
    assert [r["epoch"] for r in checkpoint.truncate_metrics(tmp_path, 2)] == [1, 2]
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_metrics_line_inside_the_file_is_named(tmp_path):
    (tmp_path / checkpoint.METRICS_FILE).write_text('{"epoch": 1}\n{"epoch": 2, \n{"epoch": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not valid JSON"):
        checkpoint.read_metrics(tmp_path)
    (tmp_path / checkpoint.METRICS_FILE).write_text('{"epoch": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match='line 2 must be a JSON object with an int "epoch"'):
        checkpoint.read_metrics(tmp_path)


def test_config_is_replaced_whole(tmp_path):
    checkpoint.save_config(tmp_path / "run", {"model": "classic"})
    checkpoint.save_config(tmp_path / "run", {"model": "sequence"})
    assert checkpoint.load_config(tmp_path / "run") == {"model": "sequence"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [checkpoint.CONFIG_FILE]


# ============================================= 3. fault tests in real processes


def _env(**extra):
    return observer.env(**extra)


def _start(workdir: pathlib.Path, *argv, **env):
    """``python -m jaxcnn ARGV --workdir WORKDIR``; stdout and stderr go to ``WORKDIR.log``."""
    log = open(f"{workdir}.log", "a", encoding="utf-8")  # pylint: disable=consider-using-with
    process = subprocess.Popen([sys.executable, "-m", "jaxcnn", *argv, "--workdir", str(workdir)],
                               stdout=log, stderr=subprocess.STDOUT, env=_env(**env), cwd=workdir.parent)
    log.close()
    return process


def _kill_when_exists(process, path: pathlib.Path) -> bool:
    """SIGKILLs ``process`` as soon as ``path`` appears; False if it ended first."""
    deadline = time.monotonic() + RUN_SECONDS
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    return True


def _snapshot(workdir):
    return types.SimpleNamespace(epochs=checkpoint.committed_epochs(workdir), listing=_listing(workdir),
                                 metrics=[r["epoch"] for r in checkpoint.read_metrics(workdir)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four runs at once: ``reference`` and ``twin`` (uninterrupted, same seed),
    ``killed_in_training`` (SIGKILL as soon as epoch 1's checkpoint is committed, i.e.
    during epoch 2, plus a torn epoch-2 metrics line as a kill inside its append
    leaves) and ``killed_in_save`` (SIGKILLs itself inside epoch 2's save, after every
    file is written and before the commit); then both killed runs resume."""
    root = tmp_path_factory.mktemp("faults")
    workdir = {name: root / name for name in ("reference", "twin", "killed_in_training", "killed_in_save")}
    kill_env = {"killed_in_save": {observer.KILL_IN_SAVE_ENV: "2"}}
    processes, resumed, intruder = {}, {}, {}
    try:
        for name, path in workdir.items():
            processes[name] = _start(path, *RUN, **kill_env.get(name, {}))
        second = threading.Thread(target=_second_run_while_running, daemon=True,
                                  args=(processes["reference"], workdir["reference"], intruder))
        second.start()
        killed_by_test = _kill_when_exists(processes["killed_in_training"],
                                           workdir["killed_in_training"] / checkpoint.CHECKPOINT_DIR / "1")
        codes, after_kill = {}, {}
        for name in ("killed_in_training", "killed_in_save", "reference", "twin"):  # each killed run resumes at once
            codes[name] = processes[name].wait(timeout=RUN_SECONDS)
            if name.startswith("killed"):
                after_kill[name] = _snapshot(workdir[name])
                if name == "killed_in_training":
                    with open(workdir[name] / checkpoint.METRICS_FILE, "a", encoding="utf-8") as file:
                        file.write('{"augment": "affine", "batch_size": 50, "dataset": "mnist-sa')
                resumed[name] = _start(workdir[name], "train", "--resume", "--no-progress")
        resume_codes = {name: process.wait(timeout=RUN_SECONDS) for name, process in resumed.items()}
        second.join(timeout=RUN_SECONDS)
    finally:  # a failed wait must not leave runs behind
        for process in [*processes.values(), *resumed.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
    logs = {name: pathlib.Path(f"{path}.log").read_text() for name, path in workdir.items()}
    return types.SimpleNamespace(workdir=workdir, codes=codes, killed_by_test=killed_by_test,
                                 after_kill=after_kill, resume_codes=resume_codes, logs=logs, intruder=intruder)


def _second_run_while_running(process, workdir: pathlib.Path, result: dict) -> None:
    """Once ``process`` holds ``workdir`` (its config.json is written), stops it (SIGSTOP), runs a
    second ``train`` in the same workdir, notes what that did, and lets the first go on (SIGCONT)."""
    deadline = time.monotonic() + RUN_SECONDS
    while not (workdir / checkpoint.CONFIG_FILE).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    try:
        before = sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
        config = (workdir / checkpoint.CONFIG_FILE).read_text()
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "jaxcnn", *RUN, "--workdir", str(workdir)], capture_output=True,
                              text=True, env=_env(), cwd=workdir.parent, timeout=RUN_SECONDS)
        result.update(code=done.returncode, stdout=done.stdout, stderr=done.stderr,
                      seconds=time.monotonic() - started, first_running=process.poll() is None,
                      untouched=before == sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
                      and config == (workdir / checkpoint.CONFIG_FILE).read_text())
    finally:
        process.send_signal(signal.SIGCONT)


def _metrics_without_wall_clock(workdir):
    records = checkpoint.read_metrics(workdir)
    return [{key: value for key, value in r.items() if key not in WALL_CLOCK_KEYS} for r in records]


def _assert_same_run(workdir, reference):
    ours, theirs = _metrics_without_wall_clock(workdir), _metrics_without_wall_clock(reference)
    assert [r["epoch"] for r in ours] == [1, 2, 3]
    assert ours == theirs
    assert checkpoint.committed_epochs(workdir) == checkpoint.committed_epochs(reference) == [2, 3]
    for epoch in (2, 3):
        state, expected = checkpoint.restore(workdir, None, epoch), checkpoint.restore(reference, None, epoch)
        assert jax.tree.structure(state) == jax.tree.structure(expected)
        jax.tree.map(np.testing.assert_array_equal, state, expected)


@pytest.mark.slow
def test_uninterrupted_runs_finish(runs):
    for name in ("reference", "twin"):
        assert runs.codes[name] == 0, runs.logs[name]
        assert "epoch 3/3" in runs.logs[name] and "Traceback" not in runs.logs[name]


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_runs(runs):
    records = _metrics_without_wall_clock(runs.workdir["reference"])
    assert len({r["train_loss"] for r in records}) == 3  # the comparison below is not vacuous
    _assert_same_run(runs.workdir["twin"], runs.workdir["reference"])


@pytest.mark.slow
def test_kill_during_epoch_2_then_resume_matches_the_uninterrupted_run(runs):
    name = "killed_in_training"
    assert runs.killed_by_test and runs.codes[name] == -signal.SIGKILL, runs.logs[name]
    assert runs.after_kill[name].epochs == [1] and runs.after_kill[name].metrics == [1]
    assert runs.resume_codes[name] == 0, runs.logs[name]
    log = runs.logs[name].split("jaxcnn: training")[-1]  # the resumed process
    assert "epoch 2/3" in log and "epoch 1/3" not in log
    _assert_same_run(runs.workdir[name], runs.workdir["reference"])


@pytest.mark.slow
def test_kill_inside_a_checkpoint_save_then_resume_matches_the_uninterrupted_run(runs):
    name = "killed_in_save"
    assert runs.codes[name] == -signal.SIGKILL, runs.logs[name]
    # Every file of epoch 2 was written, uncommitted; its metrics line came before the save.
    assert runs.after_kill[name].listing == ["1", f"2{checkpoint.UNCOMMITTED_MARK}"]
    assert runs.after_kill[name].epochs == [1]
    assert runs.after_kill[name].metrics in ([1], [1, 2])  # [1, 2] while train.py writes metrics first
    assert runs.resume_codes[name] == 0, runs.logs[name]
    _assert_same_run(runs.workdir[name], runs.workdir["reference"])
    assert _listing(runs.workdir[name]) == ["2", "3"]


@pytest.mark.slow
def test_resume_of_an_incompatible_run_is_one_error_line(capsys, runs, tmp_path):
    """A flag naming another model, and a config.json edited to another model (the
    checkpoint no longer fits): both refused, the run left as it was."""
    reference = runs.workdir["reference"]
    code, out, err = _main(capsys, ["train", "--resume", "--workdir", reference, "--model", "classic"])
    _assert_one_error_line(code, out, err, ["only epochs may change", "model='classic' (run has 'sequence')"])
    edited = tmp_path / "edited"
    shutil.copytree(reference, edited)
    config = json.loads((edited / checkpoint.CONFIG_FILE).read_text())
    (edited / checkpoint.CONFIG_FILE).write_text(json.dumps({**config, "model": "classic"}))
    before = (edited / checkpoint.METRICS_FILE).read_text()
    code, out, err = _main(capsys, ["train", "--resume", "--workdir", edited, "--no-progress"])
    _assert_one_error_line(code, out, err, ["checkpoint 3 in", "does not fit this run's state"])
    assert (edited / checkpoint.METRICS_FILE).read_text() == before
    code, out, err = _main(capsys, ["eval", "--workdir", reference, "--epoch", "1"])
    _assert_one_error_line(code, out, err, ["epoch must be one with a checkpoint", "one of [2, 3]; got 1"])


# ===================================== 4. issue 14: busy, shared, damaged and swapped work directories


@pytest.mark.slow
def test_a_second_run_in_a_busy_workdir_is_refused_at_once(runs):
    """A second ``train`` in the workdir of a running one (stopped meanwhile, so it surely runs): one
    error line naming the lock's holder, nothing touched; the first then finishes as its twin does."""
    second = runs.intruder
    assert second and second["first_running"], second
    _assert_one_error_line(second["code"], second["stdout"], second["stderr"],
                           ["is in use by another run", "holds", ".lock", "choose another --workdir"])
    assert second["untouched"]
    assert second["seconds"] < 60  # refused at once: no data loaded, nothing compiled
    assert runs.codes["reference"] == 0  # and test_same_seed_gives_bitwise_identical_runs compares it with its twin


def test_a_held_workdir_lock_refuses_a_second_run_in_process(capsys, tmp_path):
    workdir = tmp_path / "busy"
    with checkpoint.lock_workdir(workdir) as lock:
        assert lock.path == workdir and (workdir / checkpoint.LOCK_FILE).read_text().split()[0] == str(os.getpid())
        code, out, err = _main(capsys, ["train", "--dataset", "mnist-sample", "--workdir", workdir])
        _assert_one_error_line(code, out, err, [f"workdir {workdir} is in use by another run",
                                                f"process {os.getpid()} on"])
        assert sorted(path.name for path in workdir.iterdir()) == [checkpoint.LOCK_FILE]
    assert not workdir.exists()  # the lock created it and the run wrote nothing: nothing is left


@pytest.mark.slow
def test_runs_started_in_the_same_second_get_their_own_workdirs(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.time, "strftime", lambda pattern, *args: "runs/20260101-000000")
    first = checkpoint.lock_new_workdir("runs/20260101-000000")  # a run that is still going
    argv = ["train", "--model", "sequence", "--epochs", "1", "--no-progress", "--dataset", "mnist-sample",
            "--train-limit", "100", "--test-limit", "100", "--batch-size", "50"]
    with first:
        assert _main(capsys, argv)[0] == 0
        assert _main(capsys, argv)[0] == 0  # the second run's directory is taken too: a third one
    # the first wrote nothing, so releasing it removed its directory
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["20260101-000000-2", "20260101-000000-3"]
    for name in ("20260101-000000-2", "20260101-000000-3"):
        assert [r["epoch"] for r in checkpoint.read_metrics(tmp_path / "runs" / name)] == [1]
        assert not (tmp_path / "runs" / name / checkpoint.LOCK_FILE).exists()  # released when the run ended


def test_a_workdir_of_someone_elses_files_is_left_as_it_was(capsys, tmp_path):
    before = {path.name: path.read_bytes() for path in _foreign_workdir(tmp_path).iterdir()}
    code, out, err = _main(capsys, ["train", "--dataset", "mnist-sample", "--workdir", tmp_path / "someone_elses"])
    _assert_one_error_line(code, out, err, ["holds files that are not a jaxcnn run"])
    assert {path.name: path.read_bytes() for path in (tmp_path / "someone_elses").iterdir()} == before


@pytest.mark.slow
def test_train_and_test_images_swapped_under_resume_are_refused_before_anything_is_written(capsys, paths, tmp_path):
    data_dir = tmp_path / "digits"
    shutil.copytree(paths / "valid", data_dir)
    workdir = tmp_path / "run"
    argv = ["train", "--model", "sequence", "--epochs", "1", "--no-progress", "--dataset", f"idx:{data_dir}",
            "--batch-size", "50", "--workdir", workdir]
    assert _main(capsys, argv)[0] == 0
    before = {path: path.read_bytes() for path in workdir.rglob("*") if path.is_file()}
    _write_sized(data_dir, "t10k", 50, (14, 14))  # the test split swapped for smaller images
    code, out, err = _main(capsys, ["train", "--resume", "--epochs", "2", "--workdir", workdir])
    _assert_one_error_line(code, out, err, ["differ in size", "train 28×28×1, test 14×14×1"])
    assert {path: path.read_bytes() for path in workdir.rglob("*") if path.is_file()} == before


def _unraisable(monkeypatch) -> list:
    """Records what reaches ``sys.unraisablehook`` (a read left pending on a closed event loop prints there)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def _settle():
    """Gives reads still pending in other threads the time to finish (and to complain if they would)."""
    time.sleep(0.5)
    import gc  # pylint: disable=import-outside-toplevel

    gc.collect()


@pytest.mark.slow
def test_a_damaged_checkpoint_is_one_short_line_naming_the_intact_one(capsys, monkeypatch, runs, tmp_path):
    """The manifest of the newest checkpoint overwritten: ``--resume`` and ``eval`` print one line of at
    most 200 characters, and nothing after it; moving the damaged checkpoint away, as the line says,
    resumes from the intact one and ends where the uninterrupted run ended."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(runs.workdir["reference"], tmp_path / "damaged")
    manifest = tmp_path / "damaged" / checkpoint.CHECKPOINT_DIR / "3" / "default" / "manifest.ocdbt"
    manifest.write_bytes(b"\x00" * 40)
    seen = _unraisable(monkeypatch)
    for command in (["train", "--resume", "--epochs", "3", "--workdir", "damaged"], ["eval", "--workdir", "damaged"]):
        code, out, err = _main(capsys, command)
        _assert_one_error_line(code, out, err, ["checkpoint damaged/checkpoints/3 is damaged",
                                                "default/manifest.ocdbt", "checkpoint 2 is intact",
                                                "move 3/ out of checkpoints/ to fall back to it"])
        assert len(err.strip()) <= 200, err
    _settle()
    assert seen == []
    done = subprocess.run([sys.executable, "-m", "jaxcnn", "eval", "--workdir", "damaged"], capture_output=True,
                          text=True, env=_env(), cwd=tmp_path, timeout=RUN_SECONDS)
    assert done.returncode == cli.USAGE_ERROR and done.stderr.count("\n") == 1, done.stderr  # no event-loop noise
    shutil.move(tmp_path / "damaged" / checkpoint.CHECKPOINT_DIR / "3", tmp_path / "checkpoint-3-damaged")
    code, out, err = _main(capsys, ["train", "--resume", "--workdir", "damaged"])
    assert code == 0, err
    _assert_same_run(tmp_path / "damaged", runs.workdir["reference"])


def test_a_mismatched_checkpoint_leaves_no_reads_pending(monkeypatch, tmp_path):
    """Restoring into another shape is refused before orbax starts its concurrent reads, whose
    failure used to leave the others pending on a closed event loop (pytest's warning dump)."""
    checkpoint.save(tmp_path, _state(1))
    other = _state(0)
    other["params"][0]["w"] = jnp.zeros((3, 5))
    seen = _unraisable(monkeypatch)
    for _ in range(3):
        with pytest.raises(ValueError, match=r"params\.0\.w is \(3, 4\) there, \(3, 5\) in this run"):
            checkpoint.restore(tmp_path, other)
    _settle()
    assert seen == []


def _recording_fsync(monkeypatch) -> list:
    """Replaces ``os.fsync`` by one that records the path of each descriptor it flushes (and flushes it)."""
    flushed, real = [], os.fsync

    def fsync(descriptor):
        flushed.append(pathlib.Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return flushed


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names descriptors through /proc")
def test_config_metrics_and_checkpoints_are_flushed_to_disk(monkeypatch, tmp_path):
    workdir = (tmp_path / "run").resolve()
    flushed = _recording_fsync(monkeypatch)
    checkpoint.save_config(workdir, {"model": "sequence"})
    assert flushed[-2].name.startswith(".config.json.") and flushed[-1] == workdir  # the file, then the rename
    assert tmp_path.resolve() in flushed  # the new workdir's own entry
    flushed.clear()
    checkpoint.append_metrics(workdir, {"epoch": 1})
    assert flushed == [workdir / checkpoint.METRICS_FILE, workdir]
    flushed.clear()
    checkpoint.truncate_metrics(workdir, 1)
    assert flushed[-2].name.startswith(".metrics.jsonl.") and flushed[-1] == workdir
    flushed.clear()
    checkpoint.save(workdir, _state(1))
    directory = workdir / checkpoint.CHECKPOINT_DIR
    uncommitted = [path for path in flushed if checkpoint.UNCOMMITTED_MARK in str(path)]
    arrays = [path for path in uncommitted if path.is_relative_to(directory) and "ocdbt" in str(path)]
    assert arrays, flushed  # every file before the commit rename ...
    assert flushed[-2:] == [directory / "1", directory]  # ... the step and the rename after it
    assert [path for path in flushed if path.parent == directory / "1" and path.name.startswith("_CHECKPOINT")]


@pytest.mark.slow
def test_a_normal_run_prints_no_warning(tmp_path):
    """``python -m jaxcnn train`` with the default dataset (TFDS mnist is not prepared here: the sample
    fallback) writes its notice, the progress bar and the epoch lines, and no library warning."""
    done = subprocess.run([sys.executable, "-m", "jaxcnn", "train", "--model", "sequence", "--train-limit", "200",
                           "--test-limit", "100", "--batch-size", "50", "--epochs", "1", "--workdir", "run",
                           "--data-dir", str(tmp_path / "tfds")], capture_output=True, text=True, env=_env(),
                          cwd=tmp_path, timeout=RUN_SECONDS)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert any("epoch 1/1" in line for line in lines), lines
    assert not [line for line in lines if "WARNING" in line or "Warning" in line], lines
