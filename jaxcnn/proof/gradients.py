"""``loss_and_grad`` in three modes: autodiff, hand rules under autodiff, explicit backprop."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcnn.nn.protocol import check_structure
from jaxcnn.ops.hand_rule import GRAD_MODES, Op
from jaxcnn.ops.losses import softmax_cross_entropy

MODES = (*GRAD_MODES, "backprop")  # the ops' two modes, and the explicit sweep


def _check(grad, loss, model, state, key):
    if "state" in model.needs and isinstance(state, tuple) and not state:
        raise ValueError(
            f"model {model.name!r} keeps state (running statistics): pass state= "
            "(from model.init_with_state(key, input_shape)); the new state comes back third")
    if "key" in model.needs and key is None:
        raise ValueError(
            f"model {model.name!r} draws random numbers in training (dropout): pass key= "
            "(a jax.random key; derive one per step, e.g. jax.random.fold_in(key, step))"
        )
    if grad not in MODES:
        raise ValueError(f"grad must be one of {MODES}, got {grad!r}")
    if grad != "autodiff" and not isinstance(loss, Op):
        raise ValueError(
            f"grad={grad!r} needs a loss with a hand rule: a jaxcnn op (softmax_cross_entropy, "
            "softmax_binary_cross_entropy, mean_squared_error, or your own from "
            f"jaxcnn.ops.hand_rule.hand_rule(forward, backward) or declare); got {loss!r} "
            "(any loss(logits, labels) works with grad='autodiff')"
        )


def backprop(model, params, x, labels, loss=softmax_cross_entropy, *, state=(), key=None):
    """An explicit reverse sweep, with no ``jax.grad``, ``jax.vjp`` or ``custom_vjp``.

    ``model.forward_with_state`` (training mode) caches residuals layer by layer, the loss's
    hand rule gives ``∂L/∂logits``, and ``model.backward`` walks the layers in reverse
    (x̄ = ȳ · ∂y/∂x, summed over every path: docs/derivations.md#chain-rule).

    Returns:
      ``(loss, grads, new_state)`` with ``grads`` shaped like ``params``.
    """
    value, grads, new_state, _ = _backprop(model, params, x, labels, loss, state=state, key=key)
    return value, grads, new_state


def _backprop(model, params, x, labels, loss, *, state, key):
    """:func:`backprop` returning ``(loss, grads, new_state, logits)``."""
    logits, residuals, new_state = model.forward_with_state(params, state, x, key=key, train=True)
    value = loss(logits, labels)
    dlogits = loss.rule(jnp.ones((), jnp.result_type(value)), logits, labels)[0]
    grads, _ = model.backward(params, residuals, dlogits)
    return value, grads, new_state, logits


def loss_and_grad(model, params, x, labels, *, grad="autodiff", loss=softmax_cross_entropy, state=(), key=None):
    """Loss of ``model`` on a batch, its gradient with respect to ``params``, and the new state.

    The model runs in training mode (batch statistics, dropout drawn from ``key``).

    Args:
      model: a :class:`jaxcnn.nn.protocol.Layer` (usually from ``serial``).
      params: its params pytree.
      x: ``(batch, *input_shape)``; labels: ``(batch,)`` ints.
      grad: the gradient mode (the same word as the ops' and layers' ``grad=`` and the
        ``jaxcnn`` command's ``--grad``): ``"autodiff"`` (``jax.value_and_grad`` through the plain ops),
        ``"manual"`` (the same, every op's VJP being its hand rule) or
        ``"backprop"`` (:func:`backprop`).
      loss: ``loss(logits, labels)``; ``manual``/``backprop`` need a loss with a
        hand rule (a :class:`jaxcnn.ops.hand_rule.Op`: the losses of
        :mod:`jaxcnn.ops.losses`, or a user's own from ``hand_rule``/``declare``).
      state: the model's state (``model.init_with_state``), required when the model
        keeps one (BatchNorm); ``()`` for a model without state.
      key: a PRNG key, required when the model draws random numbers (Dropout).

    Returns:
      ``(loss, grads, new_state)`` in every case: ``grads`` has the params' pytree
      structure, ``new_state`` the state's (``()`` for a model without state). All
      three modes can be wrapped in ``jax.jit``. :func:`loss_grad_and_logits` also
      returns the logits.
    """
    value, grads, new_state, _ = loss_grad_and_logits(model, params, x, labels, grad=grad, loss=loss,
                                                      state=state, key=key)
    return value, grads, new_state


def loss_grad_and_logits(model, params, x, labels, *, grad="autodiff", loss=softmax_cross_entropy, state=(),
                         key=None):
    """:func:`loss_and_grad` that also returns the forward's logits: ``(loss, grads, new_state, logits)``.

    Use it for anything computed from the training batch's logits (accuracy): a second
    ``model.apply`` in the same jitted step is *not* merged with the forward
    inside ``jax.value_and_grad`` by XLA's common-subexpression elimination
    under ``grad="autodiff"`` (the linearized forward is a different program), and
    cost a ResNet-20 training step about 40% (BENCHMARKS.md, "One forward per step").
    Arguments as in :func:`loss_and_grad`.
    """
    _check(grad, loss, model, state, key)
    if hasattr(x, "shape"):
        check_structure(model, params, state, x.shape)
    if grad == "backprop":
        return _backprop(model, params, x, labels, loss, state=state, key=key)

    def objective(p):
        logits, new_state = model.apply_with_state(p, state, x, key=key, train=True, grad=grad)
        value = loss(logits, labels, grad=grad) if isinstance(loss, Op) else loss(logits, labels)
        return value, (new_state, logits)

    (value, (new_state, logits)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return value, grads, new_state, logits
