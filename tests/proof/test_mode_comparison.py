"""``check-grads`` in slices: a large batch's gradient, taken slice by slice, is the whole batch's.

The gradient of a mean loss over ``N`` examples is the sum of the slices' mean-loss gradients
weighted by ``N_c / N``; float64 shows the two agree to rounding (1e-12), and the slices report
their progress.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.nn import layers
from jaxcnn.proof import gradients, mode_comparison


def _model_and_params(dtype):
    model = layers.serial(layers.Flatten(), layers.Dense(4))
    _, params = model.init(jax.random.key(0), (-1, 6, 6, 1))
    return model, jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


@pytest.mark.slow
def test_sliced_gradients_equal_the_whole_batch_in_float64(x64):
    model, params = _model_and_params(jnp.float64)
    x = jax.random.normal(jax.random.key(1), (10, 6, 6, 1), jnp.float64)
    labels = jnp.arange(10) % 4
    whole = mode_comparison.mode_gradients(model, params, x, labels)
    seen = []
    sliced = mode_comparison.mode_gradients(model, params, x, labels, chunk=3, progress=lambda *done: seen.append(done))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]  # slices of 3, 3, 3 and 1
    for mode in gradients.MODES:  # each mode sliced equals itself whole, and equals autodiff
        for a, b, c in zip(jax.tree.leaves(whole[mode]), jax.tree.leaves(sliced[mode]),
                           jax.tree.leaves(whole["autodiff"])):
            scale = float(jnp.max(jnp.abs(a)))
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14 * scale)
            np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.slow
def test_compare_modes_in_slices_agrees_with_one_batch():
    images = np.asarray(jax.random.uniform(jax.random.key(2), (12, 8, 8, 1)))
    labels = np.arange(12) % 10
    seen = []
    sliced = mode_comparison.compare_modes(images, labels, "sequence", batch=12, chunk=5,
                                     progress=lambda *done: seen.append(done))
    whole = mode_comparison.compare_modes(images, labels, "sequence", batch=12, chunk=12)
    assert seen == [(5, 12), (10, 12), (12, 12)]
    assert [row[:4] for row in sliced] == [row[:4] for row in whole]
    assert max(max(row.rel_manual, row.rel_backprop) for row in sliced) < 1e-5


@pytest.mark.slow
def test_check_grads_with_many_slices_reports_progress(capsys, monkeypatch):
    monkeypatch.setattr(mode_comparison, "CHUNK", 8)
    assert cli.main(["check-grads", "--model", "sequence", "--batch", "20"]) == 0
    out, err = capsys.readouterr()
    progress = err.strip().splitlines()
    assert progress[0] == "check-grads: 8/20 digits through the three gradient modes", err
    assert progress[-1] == "check-grads: 20/20 digits through the three gradient modes", err
    assert out.strip().splitlines()[-1].endswith(": ok")
