"""The Layer protocol: four pure functions that thread a state, and a stateless face derived from them.

Every layer is a :class:`Layer` of four functions (the design follows Haiku's
``transform_with_state``: the state is a pytree beside the params, never seen by the optimiser;
the PRNG key is an argument, never stored):

- ``init_with_state(key, input_shape) -> (output_shape, params, state)``
- ``apply_with_state(params, state, x, *, key=None, train=False, grad="autodiff") -> (y, new_state)``
- ``forward_with_state(params, state, x, *, key=None, train=False) -> (y, residuals, new_state)``:
  the plain forward, caching what the hand rule needs (the explicit sweep);
- ``backward(params, residuals, dy) -> (dparams, dx)``: the hand-derived rule.

A layer without state has ``state = ()`` and passes it through untouched: at run time (under
``jit``) an empty pytree is nothing, so a stateless model costs what it would without the protocol.
``needs`` says what a layer or any layer inside it needs: ``"state"``, ``"key"``, both or neither.

For a model without state the stateless face is shorter, derived once here for every layer:

- ``model.init(key, input_shape) -> (output_shape, params)`` (the state dropped);
- ``model.apply(params, x, *, grad="autodiff") -> y``: evaluation mode (dropout off);
- ``model.forward(params, x) -> (y, residuals)``: evaluation mode.

``apply`` and ``forward`` refuse a model that keeps state (BatchNorm), with a message that says
how to call it. A layer author writes the four functions once, or, for a layer without state or
randomness, three plain ones through :func:`stateless_layer`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax

__all__ = [
    "Layer", "stateless_layer", "check_structure",
]

NEEDS = ("state", "key")


class Layer(NamedTuple):
    """A layer: the four functions of the protocol, a display name, the layers it composes in
    sequence (``serial``; used to name the layer a parameter belongs to), and what it ``needs``."""

    init_with_state: Callable
    apply_with_state: Callable
    forward_with_state: Callable
    backward: Callable
    name: str = "layer"
    layers: tuple = ()
    needs: frozenset = frozenset()

    def init(self, key, input_shape):
        """``(output_shape, params)``: :meth:`init_with_state` without the state."""
        output_shape, params, _ = self.init_with_state(key, input_shape)
        return output_shape, params

    def apply(self, params, x, *, grad="autodiff"):
        """``y``, the model in evaluation mode (dropout off), for a model that keeps no state.

        ``params`` are checked against the model (:func:`check_structure`, at trace time).
        """
        _refuse_state(self)
        if hasattr(x, "shape"):
            check_structure(self, params, (), x.shape)
        return self.apply_with_state(params, (), x, grad=grad)[0]

    def forward(self, params, x):
        """``(y, residuals)`` in evaluation mode, for a model that keeps no state."""
        _refuse_state(self)
        y, residuals, _ = self.forward_with_state(params, (), x)
        return y, residuals


def _keeper(layer: Layer) -> str:
    """The name of the first layer inside ``layer`` that keeps state."""
    for inner in layer.layers:
        if "state" in inner.needs:
            return _keeper(inner)
    return layer.name


def _refuse_state(layer: Layer):
    if "state" in layer.needs:
        raise ValueError(
            f"{_keeper(layer)} needs its state (it keeps running statistics): call "
            "model.apply_with_state(params, state, x, key=..., train=...) with the state from "
            "model.init_with_state(key, input_shape), or pass state= to jaxcnn.proof.gradients.loss_and_grad")


def check_needs(needs) -> frozenset:
    """``needs`` as a frozenset, a subset of :data:`NEEDS`."""
    needs = frozenset(needs)
    unknown = needs - set(NEEDS)
    if unknown:
        raise ValueError(f"needs must be a subset of {NEEDS}, got {sorted(unknown)}")
    return needs


def stateless_layer(name: str, init: Callable, apply: Callable, backward: Callable, forward: Callable = None,
                    *, layers: tuple = ()) -> Layer:
    """A :class:`Layer` from three (or four) plain functions of a layer without state or randomness.

    Args:
      init: ``init(key, input_shape) -> (output_shape, params)``.
      apply: ``apply(params, x, *, grad="autodiff") -> y``.
      backward: ``backward(params, residuals, dy) -> (dparams, dx)``.
      forward: ``forward(params, x) -> (y, residuals)``; default ``(apply(params, x), x)``.
    """
    forward = (lambda params, x: (apply(params, x), x)) if forward is None else forward

    def init_with_state(key, input_shape):
        return (*init(key, input_shape), ())

    def apply_with_state(params, state, x, *, key=None, train=False, grad="autodiff"):
        return apply(params, x, grad=grad), state

    def forward_with_state(params, state, x, *, key=None, train=False):
        return (*forward(params, x), state)

    return Layer(init_with_state, apply_with_state, forward_with_state, backward, name, layers)


def sub_key(key, index: int):
    """The key of the ``index``-th sub-layer: ``fold_in(key, index)``, or ``None`` without a key."""
    return None if key is None else jax.random.fold_in(key, index)


def needs_of(layers) -> frozenset:
    """The union of what ``layers`` need."""
    return frozenset().union(*(layer.needs for layer in layers))


def path_name(path) -> str:
    """A pytree path as text, e.g. ``6/b``."""
    return "/".join(str(getattr(entry, "key", getattr(entry, "idx", entry))) for entry in path)


def layer_at(model: Layer, path) -> str:
    """The name of the innermost layer of ``model`` that ``path`` (into its params) reaches."""
    layer = model
    for entry in path:
        index = getattr(entry, "idx", None)
        if index is None or not layer.layers or index >= len(layer.layers):
            break
        layer = layer.layers[index]
    return layer.name


def check_structure(model: Layer, params, state, input_shape) -> None:
    """Raises a ``ValueError`` naming the layer when ``params`` or ``state`` do not have the
    structure and shapes ``model.init_with_state`` gives for ``input_shape`` (traced with
    ``jax.eval_shape``: nothing is allocated). ``state = ()`` stands for a model without state.

    Args:
      input_shape: the input's shape; the batch dimension is replaced by a placeholder.
    """
    _, want_params, want_state = jax.eval_shape(
        lambda key: model.init_with_state(key, (-1, *tuple(input_shape)[1:])), jax.random.key(0))
    _compare(model, "params", params, want_params)
    if "state" in model.needs or jax.tree_util.tree_leaves(state):
        _compare(model, "state", state, want_state)


def _display(model: Layer) -> str:
    if not model.layers:
        return model.name
    names = ", ".join(layer.name for layer in model.layers[:4]) + (", ..." if len(model.layers) > 4 else "")
    return f"{model.name}({names})"


def _compare(model, what, given, wanted):
    given_leaves, given_tree = jax.tree_util.tree_flatten_with_path(given)
    wanted_leaves, wanted_tree = jax.tree_util.tree_flatten_with_path(wanted)
    if given_tree != wanted_tree:
        given_paths = {path_name(p) for p, _ in given_leaves}
        missing = [p for p, _ in wanted_leaves if path_name(p) not in given_paths]
        where = (f"; layer {layer_at(model, missing[0])} expects an entry {path_name(missing[0])}, which they lack"
                 if missing else "")
        raise ValueError(
            f"{what} do not fit model {_display(model)}: the model's {what} have {len(wanted_leaves)} arrays, "
            f"these have {len(given_leaves)}{where}. Use the {what} from this model's "
            "init_with_state(key, input_shape)")
    for (path, leaf), (_, want) in zip(given_leaves, wanted_leaves):
        if tuple(getattr(leaf, "shape", ())) != tuple(want.shape):
            raise ValueError(
                f"{what} do not fit model {_display(model)}: {what} entry {path_name(path)} of layer "
                f"{layer_at(model, path)} has shape {tuple(leaf.shape)}, expected {tuple(want.shape)}. "
                f"Use the {what} from this model's init_with_state(key, input_shape)")
