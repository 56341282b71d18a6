"""``loss_and_grad`` in three modes: autodiff, hand rules under autodiff, explicit backprop."""

from __future__ import annotations

import jax

from jaxcnn.losses import HAND_RULES, softmax_cross_entropy

MODES = ("autodiff", "manual", "backprop")


def _check(mode, loss):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "autodiff" and loss not in HAND_RULES:
        names = [fn.__name__ for fn in HAND_RULES]
        raise ValueError(
            f"mode={mode!r} needs a loss with a hand rule, one of {names}; got {loss!r} "
            "(any loss(logits, labels) works with mode='autodiff')"
        )


def backprop(model, params, x, labels, loss=softmax_cross_entropy):
    """An explicit reverse sweep, with no ``jax.grad``, ``jax.vjp`` or ``custom_vjp``.

    ``model.forward`` caches residuals layer by layer, the loss's hand rule gives
    ``∂L/∂logits``, and ``model.backward`` walks the layers in reverse
    (seed 002: x̄ = ȳ · ∂y/∂x, summed over every path).

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``.
    """
    logits, residuals = model.forward(params, x)
    value = loss(logits, labels)
    grads, _ = model.backward(params, residuals, HAND_RULES[loss](logits, labels))
    return value, grads


def loss_and_grad(model, params, x, labels, *, mode="autodiff", loss=softmax_cross_entropy):
    """Loss of ``model`` on a batch and its gradient with respect to ``params``.

    Args:
      model: a :class:`jaxcnn.layers.Layer` (usually from ``serial``).
      params: its params pytree.
      x: ``(batch, *input_shape)``; labels: ``(batch,)`` ints.
      mode: ``"autodiff"`` (``jax.value_and_grad`` through the plain ops),
        ``"manual"`` (the same, every op's VJP being its hand rule) or
        ``"backprop"`` (:func:`backprop`).
      loss: ``loss(logits, labels)``; ``manual``/``backprop`` need one of
        ``losses.HAND_RULES``.

    Returns:
      ``(loss, grads)``; ``grads`` has the params' pytree structure. All three
      modes can be wrapped in ``jax.jit``.
    """
    _check(mode, loss)
    if mode == "backprop":
        return backprop(model, params, x, labels, loss)
    grad = mode

    def objective(p):
        if grad == "manual":
            return loss(model.apply(p, x, grad=grad), labels, grad=grad)
        return loss(model.apply(p, x), labels)

    return jax.value_and_grad(objective)(params)
