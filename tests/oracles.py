"""Trusted references shared by the tests: autodiff VJPs and a comparison helper."""

import jax
import jax.numpy as jnp
import numpy as np


def vjp(fn, primals, cotangent):
    """``jax.vjp`` of ``fn`` at ``primals`` applied to ``cotangent`` (the oracle)."""
    _, pullback = jax.vjp(fn, *primals)
    return pullback(cotangent)


def assert_close(actual, expected, *, rtol, err_msg=""):
    """Relative agreement measured against the expected array's scale.

    ``|a − e| <= rtol · max(1, max|e|)`` elementwise: "≤ rtol of the gradient's scale".
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, err_msg)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=err_msg)


def conv_arrays(x_shape, w_shape, seed, dtype):
    """Seeded normal ``x``, ``w`` and bias ``b`` for a convolution case."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=w_shape), dtype)
    b = jnp.asarray(rng.normal(size=w_shape[-1:]), dtype)
    return x, w, b
