"""Proofs for jaxcnn.ops.losses: the fused hand rules == jax.grad, the notes' formulas, bad labels."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxcnn import (
    softmax_binary_cross_entropy, softmax_binary_cross_entropy_backward,
    softmax_cross_entropy, softmax_cross_entropy_backward,
)
from jaxcnn.ops.activations import softmax
from jaxcnn.ops.losses import mean_squared_error, mean_squared_error_backward
from jaxcnn.testing import assert_hand_rule
from oracles import assert_close

LOSSES = [
    (softmax_cross_entropy, softmax_cross_entropy_backward),
    (softmax_binary_cross_entropy, softmax_binary_cross_entropy_backward),
]


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# ---------------------------------------------------------------------- losses


@pytest.mark.parametrize("loss,backward", LOSSES, ids=lambda f: getattr(f, "__name__", ""))
@given(st.integers(1, 6), st.integers(2, 10), st.integers(0, 999))
@pytest.mark.slow
def test_loss_hand_rule_equals_autodiff(x64, loss, backward, batch, classes, seed):
    logits = 3 * _normal(seed, (batch, classes))
    labels = jnp.asarray(np.random.default_rng(seed).integers(0, classes, batch))

    def gradients(z, y):  # one program per example: compilation dominates these tiny shapes
        return (jax.grad(lambda z: loss(z, y))(z), backward(z, y),
                jax.grad(lambda z: loss(z, y, grad="manual"))(z), backward(z, y, 2.5))

    compiled = jax.jit(gradients, compiler_options={"xla_backend_optimization_level": 0})
    expected, hand, manual, scaled = compiled(logits, labels)
    assert_close(hand, expected, rtol=1e-10)
    assert_close(manual, expected, rtol=1e-10)
    assert_close(scaled, 2.5 * expected, rtol=1e-10)


def test_cross_entropy_value_and_fused_rule():
    logits = jnp.array([[2.0, 1.0, 0.1], [0.0, 0.0, 5.0]])
    labels = jnp.array([0, 2])
    expected = -np.mean([np.log(np.exp(2) / np.exp([2, 1, 0.1]).sum()), np.log(np.exp(5) / (2 + np.exp(5)))])
    np.testing.assert_allclose(softmax_cross_entropy(logits, labels), expected, rtol=1e-6)
    onehot = np.eye(3)[[0, 2]]
    np.testing.assert_allclose(softmax_cross_entropy_backward(logits, labels), (softmax(logits) - onehot) / 2, rtol=1e-6)


def test_binary_cross_entropy_is_the_notes_formula():
    """Seed 000: Loss = −Σ_i [y_i log ŷ_i + (1 − y_i) log(1 − ŷ_i)] on softmax outputs."""
    logits = jnp.array([[0.3, -1.0, 2.0]])
    y_hat = np.asarray(softmax(logits))[0]
    y = np.array([0.0, 0.0, 1.0])
    expected = -np.sum(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
    np.testing.assert_allclose(softmax_binary_cross_entropy(logits, jnp.array([2])), expected, rtol=1e-6)
    confident = jnp.array([[-40.0, -40.0, 40.0]])  # ŷ → one-hot: L → 0 (the notes' y_i = ŷ_i ⇒ L = 0)
    assert float(softmax_binary_cross_entropy(confident, jnp.array([2]))) < 1e-12
    assert float(softmax_binary_cross_entropy(confident, jnp.array([0]))) > 10


@pytest.mark.parametrize("loss", [l for l, _ in LOSSES], ids=lambda f: f.__name__)
@pytest.mark.slow
def test_loss_check_grads_and_jit(x64, loss):
    logits, labels = _normal(3, (4, 5)), jnp.array([0, 4, 2, 2])
    for grad in ("autodiff", "manual"):
        jax.test_util.check_grads(lambda z: loss(z, labels, grad=grad), (logits,), order=2, modes=["rev"])
    jitted = jax.jit(jax.grad(lambda z, y: loss(z, y, grad="manual")))(logits, labels)
    assert_close(jitted, jax.grad(lambda z: loss(z, labels))(logits), rtol=1e-10)


@pytest.mark.parametrize("logits,labels,error,match", [
    (jnp.zeros((2, 3)), jnp.array([0.0, 1.0]), TypeError, "labels must be integer"),
    (jnp.zeros((2, 3)), jnp.array([0, 1, 2]), ValueError, "labels must have shape \\(batch,\\) = \\(2,\\)"),
    (jnp.zeros((2, 3)), jnp.array([0, 3]), ValueError, "labels must lie in \\[0, 3\\)"),
    (jnp.zeros((2, 3)), jnp.array([-1, 0]), ValueError, "labels must lie in"),
    (jnp.zeros((3,)), jnp.array([0, 1, 2]), ValueError, "logits must have shape \\(batch, classes\\)"),
])
def test_loss_bad_labels(logits, labels, error, match):
    for loss, _ in LOSSES:
        with pytest.raises(error, match=match):
            loss(logits, labels)


# ---------------------------------------------------------- mean squared error


@given(st.integers(1, 4), st.integers(1, 9), st.integers(0, 999))
@pytest.mark.slow
def test_mean_squared_error_hand_rule(batch, size, seed):
    rng = np.random.default_rng(seed)
    prediction, target = rng.normal(size=(batch, size, 1)), rng.normal(size=(batch, size, 1))
    # the target's cotangent is minus the prediction's (the op itself passes None: a target is data)
    def backward(dloss, p, t):
        dp = mean_squared_error_backward(p, t, dloss)
        return dp, -dp

    worst = assert_hand_rule(lambda p, t: mean_squared_error(p, t), backward, prediction, target)
    assert worst <= 1e-10


def test_mean_squared_error_value_and_manual_mode(x64):
    prediction, target = _normal(1, (3, 4, 4, 1)), _normal(2, (3, 4, 4, 1))
    expected = float(np.mean((np.asarray(prediction) - np.asarray(target)) ** 2))  # numpy's reference
    for grad in ("autodiff", "manual"):
        assert abs(float(mean_squared_error(prediction, target, grad=grad)) - expected) < 1e-14
    g_manual = jax.grad(lambda p: mean_squared_error(p, target, grad="manual"))(prediction)
    assert_close(g_manual, 2 * (prediction - target) / prediction.size, rtol=1e-14)
    with pytest.raises(ValueError, match="target must have the prediction's shape"):
        mean_squared_error(prediction, target[:1])
    with pytest.raises(ValueError, match="target must be a floating-point array"):
        mean_squared_error(prediction, jnp.zeros(prediction.shape, jnp.int32))
