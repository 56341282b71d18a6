"""``loss_and_grad`` in three modes: autodiff, hand rules under autodiff, explicit backprop."""

from __future__ import annotations

import jax

from jaxcnn.nn.protocol import apply_with_state, forward_with_state
from jaxcnn.ops.losses import HAND_RULES, softmax_cross_entropy

MODES = ("autodiff", "manual", "backprop")


def _check(mode, loss, model=None, state=None, key=None):
    needs = getattr(model, "needs", frozenset())
    if "state" in needs and state is None:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} keeps state (running statistics): pass state= "
            "(from jaxcnn.layers.init_with_state); loss_and_grad then returns (loss, grads, new_state)"
        )
    if "key" in needs and key is None:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} draws random numbers in training (dropout): pass key= "
            "(a jax.random key; derive one per step, e.g. jax.random.fold_in(key, step))"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "autodiff" and loss not in HAND_RULES:
        names = [fn.__name__ for fn in HAND_RULES]
        raise ValueError(
            f"mode={mode!r} needs a loss with a hand rule, one of {names}; got {loss!r} "
            "(any loss(logits, labels) works with mode='autodiff')"
        )


def backprop(model, params, x, labels, loss=softmax_cross_entropy, *, state=None, key=None):
    """An explicit reverse sweep, with no ``jax.grad``, ``jax.vjp`` or ``custom_vjp``.

    ``model.forward`` caches residuals layer by layer, the loss's hand rule gives
    ``∂L/∂logits``, and ``model.backward`` walks the layers in reverse
    (x̄ = ȳ · ∂y/∂x, summed over every path: docs/derivations.md#chain-rule). With ``state`` or ``key``
    the forward is ``forward_with_state`` in training mode.

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``; ``(loss, grads,
      new_state)`` when ``state`` is given.
    """
    value, grads, new_state, _ = _backprop(model, params, x, labels, loss, state=state, key=key)
    return (value, grads) if state is None else (value, grads, new_state)


def _backprop(model, params, x, labels, loss, *, state, key):
    """:func:`backprop` returning ``(loss, grads, new_state or None, logits)``."""
    new_state = None
    if state is None and key is None:
        logits, residuals = model.forward(params, x)
    else:
        logits, residuals, new_state = forward_with_state(model, params, () if state is None else state, x,
                                                          key=key, train=True)
    value = loss(logits, labels)
    grads, _ = model.backward(params, residuals, HAND_RULES[loss](logits, labels))
    return value, grads, None if state is None else new_state, logits


def loss_and_grad(model, params, x, labels, *, mode="autodiff", loss=softmax_cross_entropy, state=None, key=None):
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
      state: the model's state (``jaxcnn.layers.init_with_state``), required when
        the model keeps one (BatchNorm); the model then runs in training mode and
        the updated state is returned too.
      key: a PRNG key, required when the model draws random numbers (Dropout).

    Returns:
      ``(loss, grads)``, or ``(loss, grads, new_state)`` when ``state`` is given;
      ``grads`` has the params' pytree structure. All three modes can be wrapped
      in ``jax.jit``. :func:`loss_grad_and_logits` also returns the logits.
    """
    value, grads, new_state, _ = loss_grad_and_logits(model, params, x, labels, mode=mode, loss=loss,
                                                      state=state, key=key)
    return (value, grads) if state is None else (value, grads, new_state)


def loss_grad_and_logits(model, params, x, labels, *, mode="autodiff", loss=softmax_cross_entropy, state=None,
                         key=None):
    """:func:`loss_and_grad` that also returns the forward's logits: ``(loss, grads, new_state, logits)``.

    ``new_state`` is ``None`` when ``state`` is not given. Use it for anything
    computed from the training batch's logits (accuracy): a second
    ``model.apply`` in the same jitted step is *not* merged with the forward
    inside ``jax.value_and_grad`` by XLA's common-subexpression elimination
    under ``mode="autodiff"`` (the linearized forward is a different program), and
    cost a ResNet-20 training step about 40% (BENCHMARKS.md, "One forward per step").
    Arguments as in :func:`loss_and_grad`.
    """
    _check(mode, loss, model, state, key)
    if mode == "backprop":
        return _backprop(model, params, x, labels, loss, state=state, key=key)
    grad = mode
    start = () if state is None else state

    def objective(p):
        if state is None and key is None:
            logits = model.apply(p, x, grad=grad) if grad == "manual" else model.apply(p, x)
            new_state = None
        else:
            logits, new_state = apply_with_state(model, p, start, x, key=key, train=True, grad=grad)
        value = loss(logits, labels, grad=grad) if grad == "manual" else loss(logits, labels)
        return value, (new_state, logits)

    (value, (new_state, logits)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return value, grads, None if state is None else new_state, logits
