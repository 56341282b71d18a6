"""The Layer protocol: four pure functions, and three optional ones for state and randomness.

Every layer is a :class:`Layer`. The four functions every layer has:

- ``init(key, input_shape) -> (output_shape, params)``
- ``apply(params, x, *, grad="autodiff") -> y``
- ``forward(params, x) -> (y, residuals)``: the plain forward, caching what the hand rule needs;
- ``backward(params, residuals, dy) -> (dparams, dx)``: the hand-derived rule.

A layer that keeps state (BatchNorm's running statistics) or draws random numbers (Dropout) also
has the ``*_with_state`` variants, which thread a ``state`` pytree and take a PRNG ``key`` and a
``train`` flag (the design follows Haiku's ``transform_with_state``: state is a separate pytree
beside the params, never updated by the optimiser; the key is an argument, never stored):

- ``init_with_state(key, input_shape) -> (output_shape, params, state)``
- ``apply_with_state(params, state, x, *, key=None, train=False, grad="autodiff") -> (y, new_state)``
- ``forward_with_state(params, state, x, *, key=None, train=False) -> (y, residuals, new_state)``

``backward`` keeps its signature: whatever the hand rule needs (the batch statistics, the dropout
key) travels in the residuals. ``needs`` says what a layer or any layer inside it needs:
``"state"``, ``"key"``, both or neither. A layer without either leaves the three fields ``None``,
and the module functions :func:`init_with_state`, :func:`apply_with_state` and
:func:`forward_with_state` fall back to its plain functions with ``state = ()`` — so a stateless
model is exactly as short to write and use as before, and costs nothing extra.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax

NEEDS = ("state", "key")


class Layer(NamedTuple):
    """A layer: ``init``, ``apply``, ``forward``, ``backward``, a display name, the layers it
    composes in sequence (``serial``), and the optional state/randomness variants."""

    init: Callable
    apply: Callable
    forward: Callable
    backward: Callable
    name: str = "layer"
    layers: tuple = ()
    init_with_state: Optional[Callable] = None
    apply_with_state: Optional[Callable] = None
    forward_with_state: Optional[Callable] = None
    needs: frozenset = frozenset()


def init_with_state(layer: Layer, key, input_shape):
    """``(output_shape, params, state)`` of ``layer``; ``state = ()`` for a layer without state."""
    if layer.init_with_state is None:
        return (*layer.init(key, input_shape), ())
    return layer.init_with_state(key, input_shape)


def apply_with_state(layer: Layer, params, state, x, *, key=None, train=False, grad="autodiff"):
    """``(y, new_state)``: ``layer`` in training (``train=True``: batch statistics, dropout on with
    ``key``) or evaluation mode (running statistics, dropout off)."""
    if layer.apply_with_state is None:
        return layer.apply(params, x, grad=grad), state
    return layer.apply_with_state(params, state, x, key=key, train=train, grad=grad)


def forward_with_state(layer: Layer, params, state, x, *, key=None, train=False):
    """``(y, residuals, new_state)``: the plain forward of ``layer`` for the explicit sweep."""
    if layer.forward_with_state is None:
        y, residuals = layer.forward(params, x)
        return y, residuals, state
    return layer.forward_with_state(params, state, x, key=key, train=train)


def sub_key(key, index: int):
    """The key of the ``index``-th sub-layer: ``fold_in(key, index)``, or ``None`` without a key."""
    return None if key is None else jax.random.fold_in(key, index)


def needs_of(layers) -> frozenset:
    """The union of what ``layers`` need."""
    return frozenset().union(*(layer.needs for layer in layers))


def _refuse(name: str, needs: frozenset):
    what = " and ".join(sorted(needs))
    message = (
        f"{name} needs its {what} (it keeps running statistics or draws dropout masks): call "
        "jaxcnn.layers.apply_with_state(model, params, state, x, key=..., train=...) with the state from "
        "jaxcnn.layers.init_with_state, or pass state=/key= to jaxcnn.loss_and_grad"
    )

    def refuse(*args, **kwargs):
        raise ValueError(message)

    return refuse


def stateful_layer(name: str, needs, init_ws, apply_ws, forward_ws, backward) -> Layer:
    """A :class:`Layer` from its ``*_with_state`` functions. Its plain ``init`` drops the state;
    its plain ``apply`` and ``forward`` raise a ``ValueError`` that says how to call it."""
    needs = frozenset(needs)
    unknown = needs - set(NEEDS)
    if unknown:
        raise ValueError(f"needs must be a subset of {NEEDS}, got {sorted(unknown)}")

    def init_fun(key, input_shape):
        output_shape, params, _ = init_ws(key, input_shape)
        return output_shape, params

    refuse = _refuse(name, needs)
    return Layer(init_fun, refuse, refuse, backward, name, (), init_ws, apply_ws, forward_ws, needs)
