"""Losses on logits with integer labels, each beside its fused hand rule (seed 000)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import manual
from jaxcnn.activations import log_softmax, softmax


def check_labels(logits, labels):
    """Validates ``logits`` ``(batch, classes)`` against integer ``labels`` ``(batch,)``.

    Concrete labels are also range-checked (``0 <= label < classes``); under
    ``jit`` only shapes and dtypes can be checked.
    """
    if jnp.ndim(logits) != 2:
        raise ValueError(f"logits must have shape (batch, classes), got shape {jnp.shape(logits)}")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {jnp.result_type(labels)}")
    if tuple(jnp.shape(labels)) != (jnp.shape(logits)[0],):
        raise ValueError(
            f"labels must have shape (batch,) = ({jnp.shape(logits)[0]},), got {jnp.shape(labels)}"
        )
    if not isinstance(labels, jax.core.Tracer) and jnp.size(labels):
        values = np.asarray(labels)
        classes = jnp.shape(logits)[1]
        if values.min() < 0 or values.max() >= classes:
            raise ValueError(
                f"labels must lie in [0, {classes}) for {classes} classes, got values in "
                f"[{values.min()}, {values.max()}]"
            )


def _one_hot(labels, classes, dtype):
    return (labels[:, None] == jnp.arange(classes)[None, :]).astype(dtype)


def _cross_entropy(logits, labels):
    picked = jnp.take_along_axis(log_softmax(logits), labels[:, None], axis=1)
    return -jnp.mean(picked)


def softmax_cross_entropy_backward(logits, labels, dloss=1.0):
    """Fused hand rule of :func:`softmax_cross_entropy`.

    .. math::
       \\frac{\\partial L}{\\partial z} = \\frac{\\mathrm{softmax}(z) - \\mathrm{onehot}(y)}{N}

    Args:
      logits: ``(batch, classes)``; labels: ``(batch,)`` ints; dloss: scalar.

    Returns:
      ``dlogits`` ``(batch, classes)``.
    """
    probs = softmax(logits)
    onehot = _one_hot(labels, logits.shape[1], probs.dtype)
    return (probs - onehot) * (dloss / logits.shape[0])


_manual_cross_entropy = manual.hand_rule(
    _cross_entropy, lambda dloss, logits, labels: (softmax_cross_entropy_backward(logits, labels, dloss), None)
)


def softmax_cross_entropy(logits, labels, *, grad="autodiff"):
    """Mean categorical cross-entropy of softmax probabilities.

    .. math::
       L = -\\frac{1}{N} \\sum_n \\log \\mathrm{softmax}(z_n)_{y_n}

    Args:
      logits: ``(batch, classes)``.
      labels: ``(batch,)`` integer classes.
      grad: ``"autodiff"`` or ``"manual"``.

    Returns:
      A scalar.
    """
    manual.check_grad(grad)
    check_labels(logits, labels)
    return (_manual_cross_entropy if grad == "manual" else _cross_entropy)(logits, labels)


def _binary_terms(logits, labels):
    probs = softmax(logits)
    onehot = _one_hot(labels, logits.shape[1], probs.dtype)
    return probs, onehot


def _binary_cross_entropy(logits, labels):
    probs, onehot = _binary_terms(logits, labels)
    per_class = onehot * log_softmax(logits) + (1 - onehot) * jnp.log1p(-probs)
    return -jnp.mean(jnp.sum(per_class, axis=1))


def softmax_binary_cross_entropy_backward(logits, labels, dloss=1.0):
    """Hand rule of :func:`softmax_binary_cross_entropy`: chain through the softmax.

    .. math::
       g_i = \\frac{\\partial L_n}{\\partial \\hat{y}_i} = -\\frac{y_i}{\\hat{y}_i} + \\frac{1 - y_i}{1 - \\hat{y}_i},
       \\qquad
       \\frac{\\partial L}{\\partial z_i} = \\frac{1}{N} \\hat{y}_i \\Big(g_i - \\sum_j g_j \\hat{y}_j\\Big)

    Args:
      logits: ``(batch, classes)``; labels: ``(batch,)`` ints; dloss: scalar.

    Returns:
      ``dlogits`` ``(batch, classes)``.
    """
    probs, onehot = _binary_terms(logits, labels)
    g = -onehot / probs + (1 - onehot) / (1 - probs)
    inner = jnp.sum(g * probs, axis=1, keepdims=True)
    return probs * (g - inner) * (dloss / logits.shape[0])


_manual_binary = manual.hand_rule(
    _binary_cross_entropy,
    lambda dloss, logits, labels: (softmax_binary_cross_entropy_backward(logits, labels, dloss), None),
)


def softmax_binary_cross_entropy(logits, labels, *, grad="autodiff"):
    """The notes' per-class binary cross-entropy on softmax outputs (seed 000).

    .. math::
       L = -\\frac{1}{N} \\sum_n \\sum_i \\big[y_i \\log \\hat{y}_i + (1 - y_i) \\log(1 - \\hat{y}_i)\\big],
       \\qquad \\hat{y} = \\mathrm{softmax}(z_n)

    ``L = 0`` when ``ŷ`` is exactly the one-hot label, ``L > 0`` otherwise.

    Args:
      logits: ``(batch, classes)``; labels: ``(batch,)`` integer classes.
      grad: ``"autodiff"`` or ``"manual"``.
    """
    manual.check_grad(grad)
    check_labels(logits, labels)
    return (_manual_binary if grad == "manual" else _binary_cross_entropy)(logits, labels)


HAND_RULES = {
    softmax_cross_entropy: softmax_cross_entropy_backward,
    softmax_binary_cross_entropy: softmax_binary_cross_entropy_backward,
}
