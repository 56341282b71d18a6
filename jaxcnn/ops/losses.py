"""Losses, each beside its fused hand rule: cross-entropies on logits with integer labels
(docs/derivations.md#softmax-cross-entropy), and the mean squared error of a reconstruction against its target."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops.hand_rule import declare
from jaxcnn.ops.activations import log_softmax, softmax

__all__ = [
    "softmax_cross_entropy", "softmax_cross_entropy_backward", "softmax_binary_cross_entropy",
    "softmax_binary_cross_entropy_backward", "mean_squared_error", "mean_squared_error_backward",
]


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


def _cross_entropy_rule(dloss, logits, labels):
    return softmax_cross_entropy_backward(logits, labels, dloss), None


@declare(_cross_entropy, _cross_entropy_rule)
def softmax_cross_entropy(logits, labels):
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
    check_labels(logits, labels)
    return (logits, labels), {}


def _log_complement(logits):
    """Stable :math:`\\log(1 - \\hat{y}_i) = \\log \\sum_{j \\ne i} e^{z_j} - \\log \\sum_j e^{z_j}`.

    Args:
      logits: ``(batch, classes)``.

    Returns:
      ``(batch, classes)``; finite even where ``ŷ_i`` rounds to 1.
    """
    classes = logits.shape[1]
    others = jnp.where(jnp.eye(classes, dtype=bool), -jnp.inf, logits[:, None, :])
    peak = jnp.max(logits, axis=1, keepdims=True)
    log_others = jnp.log(jnp.sum(jnp.exp(others - peak[:, :, None]), axis=2)) + peak
    log_total = jnp.log(jnp.sum(jnp.exp(logits - peak), axis=1, keepdims=True)) + peak
    return log_others - log_total


def _binary_cross_entropy(logits, labels):
    onehot = _one_hot(labels, logits.shape[1], logits.dtype)
    per_class = onehot * log_softmax(logits) + (1 - onehot) * _log_complement(logits)
    return -jnp.mean(jnp.sum(per_class, axis=1))


def softmax_binary_cross_entropy_backward(logits, labels, dloss=1.0):
    """Hand rule of :func:`softmax_binary_cross_entropy`: chain through the softmax.

    .. math::
       g_i = \\frac{\\partial L_n}{\\partial \\hat{y}_i} = -\\frac{y_i}{\\hat{y}_i} + \\frac{1 - y_i}{1 - \\hat{y}_i},
       \\qquad a_i = \\hat{y}_i g_i = -y_i + (1 - y_i) \\frac{\\hat{y}_i}{1 - \\hat{y}_i},

       \\frac{\\partial L}{\\partial z_k} = \\frac{1}{N} \\Big(a_k - \\hat{y}_k \\sum_i a_i\\Big)

    (the softmax Jacobian ``∂ŷ_i/∂z_k = ŷ_i(δ_ik − ŷ_k)``); the odds
    ``ŷ_i/(1 − ŷ_i)`` are computed in log space.

    Args:
      logits: ``(batch, classes)``; labels: ``(batch,)`` ints; dloss: scalar.

    Returns:
      ``dlogits`` ``(batch, classes)``.
    """
    log_probs = log_softmax(logits)
    onehot = _one_hot(labels, logits.shape[1], logits.dtype)
    odds = jnp.exp(log_probs - _log_complement(logits))
    a = -onehot + (1 - onehot) * odds
    dz = a - jnp.exp(log_probs) * jnp.sum(a, axis=1, keepdims=True)
    return dz * (dloss / logits.shape[0])


def _binary_rule(dloss, logits, labels):
    return softmax_binary_cross_entropy_backward(logits, labels, dloss), None


@declare(_binary_cross_entropy, _binary_rule)
def softmax_binary_cross_entropy(logits, labels):
    """The notes' per-class binary cross-entropy on softmax outputs.

    .. math::
       L = -\\frac{1}{N} \\sum_n \\sum_i \\big[y_i \\log \\hat{y}_i + (1 - y_i) \\log(1 - \\hat{y}_i)\\big],
       \\qquad \\hat{y} = \\mathrm{softmax}(z_n)

    ``L = 0`` when ``ŷ`` is exactly the one-hot label, ``L > 0`` otherwise.

    Args:
      logits: ``(batch, classes)``; labels: ``(batch,)`` integer classes.
      grad: ``"autodiff"`` or ``"manual"``.
    """
    check_labels(logits, labels)
    return (logits, labels), {}


def _check_target(prediction, target):
    if jnp.shape(prediction) != jnp.shape(target):
        raise ValueError(f"target must have the prediction's shape {jnp.shape(prediction)}, got {jnp.shape(target)}")
    if not jnp.issubdtype(jnp.result_type(target), jnp.floating):
        raise ValueError(f"target must be a floating-point array, got dtype {jnp.result_type(target)}")


def _squared_error(prediction, target):
    return jnp.mean(jnp.square(prediction - target))


def mean_squared_error_backward(prediction, target, dloss=1.0):
    """Hand rule of :func:`mean_squared_error`.

    .. math::
       \\frac{\\partial L}{\\partial \\hat{x}} = \\frac{2 (\\hat{x} - x)}{M}

    Args:
      prediction, target: arrays of one shape with ``M`` elements; dloss: scalar.

    Returns:
      ``dprediction`` shaped like ``prediction`` (the target gets no gradient).
    """
    return (prediction - target) * (2 * dloss / prediction.size)


def _squared_error_rule(dloss, prediction, target):
    return mean_squared_error_backward(prediction, target, dloss), None


@declare(_squared_error, _squared_error_rule)
def mean_squared_error(prediction, target):
    """Mean squared error over every element, e.g. of a reconstruction against its input.

    .. math::
       L = \\frac{1}{M} \\sum_i (\\hat{x}_i - x_i)^2

    Args:
      prediction: any shape, ``M`` elements; target: the same shape, floating point
        (passed where the other losses take ``labels``).
      grad: ``"autodiff"`` or ``"manual"`` (:func:`mean_squared_error_backward` as the VJP).

    Returns:
      A scalar.
    """
    _check_target(prediction, target)
    return (prediction, target), {}
