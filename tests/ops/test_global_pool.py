"""Proofs for global average pooling: the hand rule == jax.vjp, the forward == the mean, PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn.ops.pool import global_avg_pool, global_avg_pool_backward
from jaxcnn.testing import assert_hand_rule

SHAPES = [(1, 5, 2), (3, 4, 1), (2, 3, 4, 3), (1, 1, 1, 2), (2, 2, 3, 2, 2)]


def _rule(dy, x):
    return (global_avg_pool_backward(dy, x),)


@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
@pytest.mark.slow
def test_hand_rule_equals_autodiff(shape, seed):
    x = np.random.default_rng(seed).normal(size=shape) * 5
    assert assert_hand_rule(global_avg_pool, _rule, x, seed=seed) <= 1e-10


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_is_the_spatial_mean_and_matches_torch(x64, shape, grad):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(len(shape)).normal(size=shape)
    y = global_avg_pool(jnp.asarray(x), grad=grad)
    assert y.shape == (shape[0], shape[-1])
    np.testing.assert_allclose(y, x.mean(axis=tuple(range(1, x.ndim - 1))), rtol=1e-13)
    pool = {1: torch.nn.functional.adaptive_avg_pool1d, 2: torch.nn.functional.adaptive_avg_pool2d,
            3: torch.nn.functional.adaptive_avg_pool3d}[x.ndim - 2]
    expected = pool(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))), 1).numpy()
    np.testing.assert_allclose(y, expected.reshape(shape[0], shape[-1]), rtol=1e-13)


def test_manual_mode_uses_the_hand_rule(x64):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 5)))
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5)))
    _, pullback = jax.vjp(lambda x: global_avg_pool(x, grad="manual"), x)
    np.testing.assert_array_equal(pullback(dy)[0], global_avg_pool_backward(dy, x))
    np.testing.assert_allclose(global_avg_pool_backward(dy, x)[:, 1, 2], dy / 12, rtol=1e-15)


@pytest.mark.slow
def test_grad_of_grad_through_the_hand_rule(x64):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 3, 2)))
    f = lambda x, grad: jnp.sum(jnp.sin(jax.grad(lambda x: jnp.sum(global_avg_pool(x, grad=grad) ** 3))(x)))
    np.testing.assert_allclose(jax.grad(f)(x, "manual"), jax.grad(f)(x, "autodiff"), rtol=1e-12)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 2, 2, 2, 2, 2)])
def test_bad_rank(shape):
    with pytest.raises(ValueError, match=r"x must have shape \(batch, \*spatial, channels\) with 1, 2 or 3 spatial"):
        global_avg_pool(jnp.ones(shape))


def test_bad_grad_mode():
    with pytest.raises(ValueError, match="grad must be one of"):
        global_avg_pool(jnp.ones((1, 2, 3)), grad="hand")
