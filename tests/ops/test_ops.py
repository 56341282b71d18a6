"""Proofs for dense, relu, softmax and the losses: hand rules == jax.grad."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxcnn import (
    dense, dense_backward, log_softmax, relu, relu_backward, softmax,
    softmax_binary_cross_entropy, softmax_binary_cross_entropy_backward,
    softmax_cross_entropy, softmax_cross_entropy_backward,
)
from oracles import assert_close, vjp

LOSSES = [
    (softmax_cross_entropy, softmax_cross_entropy_backward),
    (softmax_binary_cross_entropy, softmax_binary_cross_entropy_backward),
]


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# ----------------------------------------------------------------------- dense


@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.booleans(), st.integers(0, 999))
def test_dense_hand_rule_equals_autodiff(x64, batch, fan_in, fan_out, with_bias, seed):
    x, w, dy = _normal(seed, (batch, fan_in)), _normal(seed + 1, (fan_in, fan_out)), _normal(seed + 2, (batch, fan_out))
    b = _normal(seed + 3, (fan_out,)) if with_bias else None
    expected = vjp(lambda *a: dense(*a), (x, w, b), dy)
    manual = vjp(lambda *a: dense(*a, grad="manual"), (x, w, b), dy)
    hand = dense_backward(dy, x, w)
    for e, m, h in zip(expected, manual, hand):
        if e is None:
            assert m is None
            continue
        assert_close(h, e, rtol=1e-10)
        assert_close(m, e, rtol=1e-10)


def test_dense_float32_jit_vmap(device):
    x, w, b = (jax.device_put(_normal(s, shape, jnp.float32), device) for s, shape in ((0, (3, 4, 5)), (1, (5, 2)), (2, (2,))))

    def grads(grad):
        loss = lambda x, w, b: jnp.sum(jnp.sin(dense(x, w, b, grad=grad)))
        return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, None, None)))(x, w, b)

    for h, a in zip(grads("manual"), grads("autodiff")):
        assert_close(h, a, rtol=1e-5)


@pytest.mark.parametrize("grad", ("autodiff", "manual"))
def test_dense_check_grads(x64, grad):
    args = (_normal(0, (3, 4)), _normal(1, (4, 2)), _normal(2, (2,)))
    jax.test_util.check_grads(lambda *a: dense(*a, grad=grad), args, order=2, modes=["rev"])


@pytest.mark.parametrize("x,w,b,match", [
    (jnp.zeros((2, 3, 4)), jnp.zeros((3, 4)), None, "x must have shape \\(batch, in_features\\)"),
    (jnp.zeros((2, 3)), jnp.zeros((4, 4)), None, "w must have shape \\(in_features=3"),
    (jnp.zeros((2, 3)), jnp.zeros((3, 4)), jnp.zeros(3), "b must have shape \\(4,\\)"),
])
def test_dense_bad_shapes(x, w, b, match):
    with pytest.raises(ValueError, match=match):
        dense(x, w, b)


# ------------------------------------------------------------------------ relu


def test_relu_seed_004_example():
    """Seed 004: ReLU(x) = 0 for x ≤ 0, x for x > 0."""
    x = jnp.array([[0.0, -1.0, 2.0], [3.0, 4.0, 5.0], [-6.0, 10.0, 12.0]])
    np.testing.assert_array_equal(relu(x), [[0, 0, 2], [3, 4, 5], [0, 10, 12]])


@pytest.mark.parametrize("grad", ("autodiff", "manual"))
def test_relu_subgradient_zero_at_zero_like_jax(grad):
    x = jnp.array([-1.0, 0.0, 0.0, 2.0])
    g = jax.grad(lambda x: jnp.sum(relu(x, grad=grad)))(x)
    np.testing.assert_array_equal(g, jax.grad(lambda x: jnp.sum(jax.nn.relu(x)))(x))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 1.0])


@given(st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.0, 0.5, 3.0]), min_size=1, max_size=20), st.integers(0, 99))
def test_relu_hand_rule_equals_autodiff_with_zeros(x64, values, seed):
    x = jnp.asarray(values)
    dy = _normal(seed, x.shape)
    (expected,) = vjp(relu, (x,), dy)
    assert_close(relu_backward(dy, x), expected, rtol=1e-12)
    (manual,) = vjp(lambda x: relu(x, grad="manual"), (x,), dy)
    assert_close(manual, expected, rtol=1e-12)


@pytest.mark.parametrize("grad", ("autodiff", "manual"))
def test_relu_check_grads(x64, grad):
    x = _normal(4, (3, 5)) + 0.05 * jnp.sign(_normal(4, (3, 5)))  # kept away from the kink at 0
    jax.test_util.check_grads(lambda x: relu(x, grad=grad), (x,), order=2, modes=["rev"])


def test_relu_grad_of_grad(x64):
    x = _normal(0, (7,))
    f = lambda x, grad: jnp.sum(jax.grad(lambda x: jnp.sum(relu(x, grad=grad) ** 3))(x) ** 2)
    assert_close(jax.grad(f)(x, "manual"), jax.grad(f)(x, "autodiff"), rtol=1e-10)


# --------------------------------------------------------------------- softmax


def test_softmax_seed_000_sums_to_one_and_is_stable():
    logits = jnp.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
    probs = softmax(logits)
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [0.5, 0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(log_softmax(logits), jax.nn.log_softmax(logits), rtol=1e-6)


# ---------------------------------------------------------------------- losses


@pytest.mark.parametrize("loss,backward", LOSSES, ids=lambda f: getattr(f, "__name__", ""))
@given(st.integers(1, 6), st.integers(2, 10), st.integers(0, 999))
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


def test_unknown_grad_name():
    with pytest.raises(ValueError, match="grad must be one of \\('autodiff', 'manual'\\), got 'hand'"):
        relu(jnp.zeros(3), grad="hand")
