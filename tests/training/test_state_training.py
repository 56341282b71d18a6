"""Training models with state (ResNet's BatchNorm running statistics) and randomness (dropout).

The running statistics travel through the compiled epoch, into the checkpoints and into
evaluation; dropout masks derive from the seed, the epoch and the step. Resuming after an
interruption must equal the uninterrupted run bitwise, params and running statistics alike.
"""

import dataclasses

import jax
import numpy as np
import pytest

from jaxcnn.training import checkpoint
from jaxcnn.training import loop as train

DROPOUT = train.TrainConfig(
    model="classic-dropout", dataset="mnist-sample", train_limit=300, test_limit=200,
    epochs=2, batch_size=50, optimizer="adam", schedule="constant", augment="none",
)
RESNET = dataclasses.replace(DROPOUT, model="resnet", train_limit=200, test_limit=100, optimizer="adam")


def _quiet(*args):
    pass


def _assert_bitwise(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _resume_equals_uninterrupted(config, tmp_path):
    whole = train.train_and_evaluate(config, tmp_path / "whole", progress=False, log=_quiet)
    train.train_and_evaluate(config, tmp_path / "parts", progress=False, stop_after=1, log=_quiet)
    resumed = train.train_and_evaluate(config, tmp_path / "parts", resume=True, progress=False, log=_quiet)
    _assert_bitwise(resumed.params, whole.params)
    _assert_bitwise(resumed.model_state, whole.model_state)
    assert [r["test_accuracy"] for r in resumed.history] == [r["test_accuracy"] for r in whole.history]
    return whole


@pytest.mark.slow
def test_dropout_run_resumes_bitwise_and_depends_on_the_seed(tmp_path):
    whole = _resume_equals_uninterrupted(DROPOUT, tmp_path)
    assert whole.model_state is None
    # another seed draws other masks (and another init): different params
    other = train.train_and_evaluate(dataclasses.replace(DROPOUT, seed=1, epochs=1), tmp_path / "seed1",
                                     progress=False, log=_quiet)
    assert not np.array_equal(np.asarray(other.params[-1]["w"]), np.asarray(whole.params[-1]["w"]))


@pytest.mark.slow
def test_resnet_running_statistics_train_resume_and_evaluate(tmp_path):
    whole = _resume_equals_uninterrupted(RESNET, tmp_path)
    stem_stats = whole.model_state[1]
    assert set(stem_stats) == {"mean", "var"}
    assert not np.allclose(np.asarray(stem_stats["mean"]), 0.0)  # moved by training
    # the checkpoint holds the running statistics, and eval uses them: the same accuracy as the run's last epoch
    evaluated = train.evaluate_checkpoint(tmp_path / "whole")
    assert evaluated["test_accuracy"] == whole.history[-1]["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(whole.history[-1]["test_loss"], rel=1e-5)
    restored = checkpoint.restore(tmp_path / "whole", train.initial_state(
        RESNET.validated(), whole.params, train.make_optimizer(RESNET.validated(), 4), whole.model_state))
    _assert_bitwise(restored["model_state"], whole.model_state)
