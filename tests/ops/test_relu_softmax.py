"""Proofs for relu and softmax (the activations module's seed-000/004 ops): hand rule == jax.grad."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxcnn import log_softmax, relu, relu_backward, softmax
from oracles import assert_close, vjp


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


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
@pytest.mark.slow
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


def test_unknown_grad_name():
    with pytest.raises(ValueError, match="grad must be one of \\('autodiff', 'manual'\\), got 'hand'"):
        relu(jnp.zeros(3), grad="hand")
