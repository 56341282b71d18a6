"""ReLU and softmax (seed 004: ReLU(x) = 0 for x ≤ 0, x for x > 0; seed 000: softmax)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxcnn import manual


def _relu(x):
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def relu_backward(dy, x):
    """Hand rule of :func:`relu`, subgradient 0 at 0 (as ``jax.grad``).

    .. math::
       \\bar{x} = \\bar{y} \\cdot [x > 0]

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return jnp.where(x > 0, dy, jnp.zeros_like(dy))


_manual_relu = manual.hand_rule(_relu, lambda dy, x: (relu_backward(dy, x),))


def relu(x, *, grad="autodiff"):
    """Rectified linear unit :math:`\\max(x, 0)`, elementwise, any shape."""
    manual.check_grad(grad)
    return (_manual_relu if grad == "manual" else _relu)(x)


def log_softmax(logits, axis=-1):
    """Numerically stable :math:`z_i - \\log \\sum_j e^{z_j}` along ``axis``.

    Args:
      logits: any shape; ``axis`` holds the classes.
    """
    shifted = logits - jnp.max(logits, axis=axis, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """:math:`\\hat{y}_i = e^{z_i} / \\sum_j e^{z_j}` along ``axis`` (seed 000)."""
    return jnp.exp(log_softmax(logits, axis=axis))
