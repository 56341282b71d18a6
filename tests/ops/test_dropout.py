"""Proofs for inverted dropout: the hand rule == jax.vjp, the mask's statistics, determinism, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn.ops.stochastic import dropout, dropout_backward
from jaxcnn.testing import assert_hand_rule

SHAPES = [(1,), (9,), (3, 4), (2, 3, 2, 2)]
KEYS = {"key": jax.random.key, "PRNGKey": jax.random.PRNGKey}


@pytest.mark.parametrize("make_key", sorted(KEYS))
@given(
    shape=st.sampled_from(SHAPES), rate=st.sampled_from([0.0, 0.1, 0.5, 0.95]),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_hand_rule_equals_autodiff(make_key, shape, rate, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 10
    key = KEYS[make_key](seed)
    assert assert_hand_rule(dropout, dropout_backward, x, key, rate=rate, seed=seed) <= 1e-10


@pytest.mark.parametrize("make_key", sorted(KEYS))
def test_manual_mode_uses_the_hand_rule(make_key):
    key = KEYS[make_key](3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32)
    y, pullback = jax.vjp(lambda x: dropout(x, key, rate=0.4, grad="manual"), x)
    np.testing.assert_array_equal(y, dropout(x, key, rate=0.4))
    np.testing.assert_array_equal(pullback(dy)[0], dropout_backward(dy, x, key, rate=0.4)[0])
    assert dropout_backward(dy, x, key, rate=0.4)[1] is None


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_same_key_same_mask_other_key_other_mask(grad):
    x = jnp.ones((64, 64))
    first = dropout(x, jax.random.key(7), rate=0.5, grad=grad)
    np.testing.assert_array_equal(first, dropout(x, jax.random.key(7), rate=0.5, grad=grad))
    np.testing.assert_array_equal(first, jax.jit(lambda x, k: dropout(x, k, rate=0.5, grad=grad))(x, jax.random.key(7)))
    assert not np.array_equal(first, dropout(x, jax.random.key(8), rate=0.5, grad=grad))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_keep_fraction_and_expectation(rate):
    """Over 10⁶ elements the kept fraction is 1 − rate and the mean stays 1, each within 5 σ."""
    n = 1_000_000
    y = np.asarray(dropout(jnp.ones((1000, 1000)), jax.random.key(0), rate=rate))
    kept = y != 0
    keep = 1 - rate
    assert abs(kept.mean() - keep) < 5 * math.sqrt(keep * rate / n)
    np.testing.assert_allclose(y[kept], 1 / keep, rtol=1e-6)  # kept values scaled by 1 / (1 − rate)
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(rate / keep / n)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_rate_zero_is_the_identity(grad):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    assert dropout(x, jax.random.key(0), rate=0, grad=grad) is x
    assert dropout(x, jax.random.key(0), rate=0.0, grad=grad) is x
    g = jax.grad(lambda x: jnp.sum(jnp.sin(dropout(x, jax.random.key(0), rate=0, grad=grad))))(x)
    np.testing.assert_array_equal(g, jnp.cos(x))


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_nan_propagates(grad):
    """NaN stays NaN, kept or dropped (a product with the mask, as PyTorch's)."""
    x = jnp.full((50,), jnp.nan).at[::2].set(1.0)
    y = np.asarray(dropout(x, jax.random.key(1), rate=0.5, grad=grad))
    assert np.all(np.isnan(y[1::2]))
    assert np.all(np.isfinite(y[::2])) and np.any(y[::2] == 0) and np.any(y[::2] == 2)


@pytest.mark.parametrize("rate", [-0.1, 1, 1.0, 1.5, math.nan, math.inf, "0.5", None, True])
def test_bad_rates(rate):
    with pytest.raises(ValueError, match=r"rate must be a real number in \[0, 1\).*got"):
        dropout(jnp.ones(3), jax.random.key(0), rate=rate)


@pytest.mark.parametrize("key", [
    0, jnp.ones(2), jnp.zeros((2, 2), jnp.uint32), jnp.zeros((), jnp.uint32), jnp.zeros(2, jnp.int32),
    jax.random.split(jax.random.key(0), 2),
], ids=["int", "float", "uint32-2d", "uint32-scalar", "int32", "two-keys"])
def test_bad_keys(key):
    with pytest.raises(TypeError, match=r"key must be a single PRNG key \(jax.random.key\(seed\) or"):
        dropout(jnp.ones(3), key, rate=0.5)


def test_bad_grad_mode():
    with pytest.raises(ValueError, match="grad must be one of"):
        dropout(jnp.ones(3), jax.random.key(0), rate=0.5, grad="hand")
