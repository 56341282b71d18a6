"""Proofs for jaxcnn.ops.linear: the hand rule == jax.grad, shapes checked."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxcnn import dense, dense_backward
from oracles import assert_close, vjp


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# ----------------------------------------------------------------------- dense


@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.booleans(), st.integers(0, 999))
@pytest.mark.slow
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
