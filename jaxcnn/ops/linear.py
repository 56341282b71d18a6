"""Fully connected layer, z_i = w_i·x + b, and its hand rule (docs/derivations.md#dense)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxcnn.ops.hand_rule import declare


def _check(x, w, b):
    if jnp.ndim(x) != 2:
        raise ValueError(f"x must have shape (batch, in_features), got shape {jnp.shape(x)}")
    if jnp.ndim(w) != 2 or jnp.shape(w)[0] != jnp.shape(x)[1]:
        raise ValueError(
            f"w must have shape (in_features={jnp.shape(x)[1]}, out_features), got shape {jnp.shape(w)}"
        )
    if b is not None and tuple(jnp.shape(b)) != (jnp.shape(w)[1],):
        raise ValueError(f"b must have shape ({jnp.shape(w)[1]},) (out_features), got {jnp.shape(b)}")


def _forward(x, w, b):
    y = x @ w
    return y if b is None else y + b


def _backward(dy, x, w, b):
    dx, dw, db = dense_backward(dy, x, w)
    return dx, dw, None if b is None else db


@declare(_forward, _backward)
def dense(x, w, b=None):
    """Affine map :math:`y = x w + b`.

    Args:
      x: ``(batch, in_features)``.
      w: ``(in_features, out_features)``.
      b: optional ``(out_features,)``.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`dense_backward` as the VJP).

    Returns:
      ``(batch, out_features)``.
    """
    _check(x, w, b)
    return (x, w, b), {}


def dense_backward(dy, x, w):
    """Hand rule of :func:`dense`.

    .. math::
       \\bar{x} = \\bar{y} w^{T}, \\qquad \\bar{w} = x^{T} \\bar{y}, \\qquad
       \\bar{b} = \\sum_n \\bar{y}_n

    Args:
      dy: ``(batch, out_features)``; x: ``(batch, in_features)``;
      w: ``(in_features, out_features)``.

    Returns:
      ``(dx, dw, db)`` shaped like ``x``, ``w`` and ``(out_features,)``.
    """
    return dy @ w.T, x.T @ dy, jnp.sum(dy, axis=0)
