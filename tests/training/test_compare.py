"""``jaxcnn.training.compare.train_modes``: the three gradient modes trained side by side.

A tiny run (the sequence net, 200 digits, 2 epochs of 4 batches) in float32 and float64:
the reference mode's losses are exactly those of ``train_and_evaluate`` (same init, keys and
compiled epoch), the modes start from one init (difference 0 at epoch 0), and their drift is
at float32 rounding level in float32 and at float64 rounding level in float64.
"""

import dataclasses

import numpy as np
import pytest

from jaxcnn.training import compare
from jaxcnn.training import loop as train

TINY = train.TrainConfig(model="sequence", dataset="mnist-sample", train_limit=200, test_limit=100, epochs=2,
                         batch_size=50, augment="shift", optimizer="adam")


@pytest.fixture(scope="module")
def results():
    return {dtype: compare.train_modes(TINY, dtype=dtype) for dtype in compare.DTYPES}


@pytest.mark.slow
def test_the_reference_mode_trains_exactly_as_train_and_evaluate(results, tmp_path):
    run = train.train_and_evaluate(dataclasses.replace(TINY, grad="autodiff"), tmp_path, progress=False,
                                   log=lambda line: None)
    assert results["float32"]["runs"]["autodiff"]["epoch_loss"] == [r["train_loss"] for r in run.history]
    assert results["float32"]["runs"]["autodiff"]["test_accuracy"] == run.history[-1]["test_accuracy"]


@pytest.mark.slow
def test_modes_start_together_and_drift_by_rounding_only(results):
    for dtype, bound in (("float32", 1e-4), ("float64", 1e-12)):
        result = results[dtype]
        assert result["modes"] == ["autodiff", "manual", "backprop"]
        assert len(result["runs"]["manual"]["step_loss"]) == 2 * 4
        for mode in ("manual", "backprop"):
            assert result["max_param_diff"][mode][0] == 0.0  # one init
            assert len(result["max_param_diff"][mode]) == 3
            assert max(result["max_param_rel_diff"][mode]) < bound, (dtype, result["max_param_rel_diff"])
            np.testing.assert_allclose(result["runs"][mode]["step_loss"], result["runs"]["autodiff"]["step_loss"],
                                       rtol=10 * bound)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="modes must be two or more distinct entries"):
        compare.train_modes(TINY, modes=("autodiff",))
    with pytest.raises(ValueError, match="dtype must be one of"):
        compare.train_modes(TINY, dtype="float16")
