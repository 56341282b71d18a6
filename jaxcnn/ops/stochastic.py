"""Inverted dropout, its hand rule beside it; the random mask comes from an explicit PRNG key.

During training each element is kept with probability :math:`1 - r` and scaled by
:math:`1 / (1 - r)`, so that :math:`\\mathbb{E}[y] = x` and evaluation needs no rescaling
(Srivastava et al. 2014, "inverted" as in PyTorch's ``nn.Dropout``). The mask is a pure function
of ``key`` and the shape: the backward recomputes it from the same key instead of storing it.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxcnn.ops.hand_rule import declare


def _check_rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"rate must be a real number in [0, 1) (the probability of dropping), got {rate!r}")
    return float(rate)


def _check_key(key):
    """A single PRNG key: ``jax.random.key(seed)`` (shape ``()``) or ``jax.random.PRNGKey(seed)`` (uint32)."""
    dtype = getattr(key, "dtype", None)
    shape = tuple(jnp.shape(key)) if dtype is not None else None
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == jnp.uint32 and shape is not None and len(shape) == 1:
        return
    described = f"{type(key).__name__} of dtype {dtype} and shape {shape}" if dtype is not None else repr(key)
    raise TypeError(f"key must be a single PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got {described}")


def _scaled_mask(x, key, rate):
    """:math:`m / (1 - r)` with :math:`m \\sim \\mathrm{Bernoulli}(1 - r)` per element, in ``x``'s dtype."""
    keep = jax.random.bernoulli(key, 1.0 - rate, jnp.shape(x))
    return keep.astype(x.dtype) / jnp.asarray(1.0 - rate, x.dtype)


def _dropout(x, key, *, rate):
    if rate == 0:
        return x
    return x * _scaled_mask(x, key, rate)  # a product, not a where: NaN stays NaN even when dropped


def dropout_backward(dy, x, key, *, rate):
    """Hand rule of :func:`dropout`: the same mask, recomputed from ``key``.

    .. math::
       \\bar{x} = \\bar{y} \\cdot \\frac{m}{1 - r}, \\qquad m \\sim \\mathrm{Bernoulli}(1 - r)
       \\text{ drawn from } \\texttt{key}

    Args:
      dy, x: arrays of the same shape (any); key: the forward's PRNG key; rate: the forward's.

    Returns:
      ``(dx, None)``: ``dx`` shaped like ``x``; the key has no cotangent.
    """
    if rate == 0:
        return dy, None
    return dy * _scaled_mask(x, key, rate), None


@declare(_dropout, dropout_backward)
def dropout(x, key, *, rate):
    """Inverted dropout: keep each element with probability ``1 - rate``, scaled by ``1 / (1 - rate)``.

    .. math::
       y = x \\cdot \\frac{m}{1 - r}, \\qquad m \\sim \\mathrm{Bernoulli}(1 - r), \\qquad
       \\mathbb{E}[y] = x

    The same ``key`` gives the same mask; ``rate=0`` keeps every element. Apply it in training
    only (evaluation is the identity).

    Args:
      x: any shape, floating point.
      key: a PRNG key, ``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``.
      rate: the probability of dropping an element, a real number in ``[0, 1)``.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`dropout_backward` as the VJP).

    Returns:
      ``y`` shaped like ``x``.
    """
    rate = _check_rate(rate)
    _check_key(key)
    return (x, key), {"rate": rate}
