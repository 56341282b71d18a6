"""Combinators: layers made of layers (stax's ``serial``, ``parallel``, ``FanOut``, ``FanInSum``,
``FanInConcat``, and ``residual``).

Each combinator's ``backward`` follows the chain rule over the graph it builds. Where a value
feeds several paths (``FanOut``, the identity shortcut of ``residual``), its cotangent is the sum
of the cotangents of every path — "x̄ = ȳ · ∂y/∂x, summed over every path" (docs/derivations.md#chain-rule). Where
several values are summed (``FanInSum``), each receives the output's cotangent unchanged; where
they are concatenated (``FanInConcat``), each receives its slice of it.

Params (and state) of a combinator are lists with one entry per sub-layer (``()`` for layers
without parameters); the state of a combinator none of whose layers keeps state is ``()``. A combinator needs state or a key when any of its sub-layers does; the
key of sub-layer ``i`` is ``fold_in(key, i)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcnn.nn.protocol import Layer, needs_of, stateless_layer, sub_key

__all__ = [
    "serial", "parallel", "residual", "FanOut", "FanInSum", "FanInConcat", "Identity",
]


def _check_layers(name, layers):
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"{name} expects one or more Layer values, got {layers!r}")


def _describe(layers) -> str:
    return ", ".join(layer.name for layer in layers)


def _entries(what: str, value, layers, name: str):
    """``value`` (params or state) as one entry per sub-layer, or a ``ValueError`` naming the layers.

    ``()`` stands for "no state" in every sub-layer, accepted for a state only when no sub-layer keeps one.
    """
    count = len(layers)
    if what == "state" and isinstance(value, tuple) and not value:
        keeping = [layer.name for layer in layers if "state" in layer.needs]
        if keeping:
            raise ValueError(f"{name} got no state, but its layer {keeping[0]} keeps state: pass the state "
                             "from model.init_with_state(key, input_shape)")
        return [()] * count
    if not isinstance(value, (list, tuple)) or len(value) != count:
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else type(value).__name__
        raise ValueError(f"{name} of {count} layers ({_describe(layers)}) expects {what} with one entry per "
                         f"layer, got {got}: use the {what} from this model's init_with_state(key, input_shape)")
    return value


def _pack(states):
    """The sub-layers' states, or ``()`` when none of them keeps any: a model without state has ``state = ()``."""
    states = list(states)
    return states if jax.tree_util.tree_leaves(states) else ()


def _combinator(layers, name, init, apply, forward, backward, sub_layers=()):
    return Layer(init, apply, forward, backward, name, sub_layers, needs_of(layers))


def serial(*layers):
    """Composes layers in order; params, state and residuals are lists, one entry per layer.

    Backward runs the layers' rules in reverse: ``dx_i = backward_i(dx_{i+1})`` (docs/derivations.md#chain-rule).
    """
    _check_layers("serial", layers)

    def init(key, input_shape):
        params, states = [], []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            input_shape, layer_params, layer_state = layer.init_with_state(layer_key, input_shape)
            params.append(layer_params)
            states.append(layer_state)
        return input_shape, params, _pack(states)

    def apply(params, state, x, *, key=None, train=False, grad="autodiff"):
        params, state = _entries("params", params, layers, "serial"), _entries("state", state, layers, "serial")
        new_state = []
        for i, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, layer_state = layer.apply_with_state(layer_params, layer_state, x, key=sub_key(key, i),
                                                    train=train, grad=grad)
            new_state.append(layer_state)
        return x, _pack(new_state)

    def forward(params, state, x, *, key=None, train=False):
        params, state = _entries("params", params, layers, "serial"), _entries("state", state, layers, "serial")
        residuals, new_state = [], []
        for i, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, residual, layer_state = layer.forward_with_state(layer_params, layer_state, x,
                                                                key=sub_key(key, i), train=train)
            residuals.append(residual)
            new_state.append(layer_state)
        return x, residuals, _pack(new_state)

    def backward(params, residuals, dy):
        params = _entries("params", params, layers, "serial")
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return grads, dy

    return _combinator(layers, "serial", init, apply, forward, backward, tuple(layers))


def parallel(*layers):
    """Applies ``layers[i]`` to the ``i``-th element of a tuple input; returns the tuple of outputs.

    ``input_shape`` is a tuple of shapes, one per layer. Backward: each layer's rule on its own
    cotangent, ``dx_i = backward_i(dy_i)``.
    """
    _check_layers("parallel", layers)
    name = "parallel(" + _describe(layers) + ")"

    def _check_inputs(xs):
        if not isinstance(xs, (tuple, list)) or len(xs) != len(layers):
            raise ValueError(f"parallel of {len(layers)} layers expects a tuple of {len(layers)} inputs, "
                             f"got {type(xs).__name__}{'' if not isinstance(xs, (tuple, list)) else len(xs)}")

    def init(key, input_shapes):
        _check_inputs(input_shapes)
        out = [layer.init_with_state(k, shape)
               for layer, k, shape in zip(layers, jax.random.split(key, len(layers)), input_shapes)]
        return tuple(o[0] for o in out), [o[1] for o in out], _pack(o[2] for o in out)

    def apply(params, state, xs, *, key=None, train=False, grad="autodiff"):
        _check_inputs(xs)
        params, state = _entries("params", params, layers, name), _entries("state", state, layers, name)
        out = [layer.apply_with_state(p, s, x, key=sub_key(key, i), train=train, grad=grad)
               for i, (layer, p, s, x) in enumerate(zip(layers, params, state, xs))]
        return tuple(y for y, _ in out), _pack(s for _, s in out)

    def forward(params, state, xs, *, key=None, train=False):
        _check_inputs(xs)
        params, state = _entries("params", params, layers, name), _entries("state", state, layers, name)
        out = [layer.forward_with_state(p, s, x, key=sub_key(key, i), train=train)
               for i, (layer, p, s, x) in enumerate(zip(layers, params, state, xs))]
        return tuple(o[0] for o in out), [o[1] for o in out], _pack(o[2] for o in out)

    def backward(params, residuals, dys):
        params = _entries("params", params, layers, name)
        out = [layer.backward(p, r, dy) for layer, p, r, dy in zip(layers, params, residuals, dys)]
        return [g for g, _ in out], tuple(dx for _, dx in out)

    return _combinator(layers, name, init, apply, forward, backward)


def _plain(name, init_fun, apply_fun, backward_fun):
    """A parameter-free combinator whose residual is its input."""
    return stateless_layer(name, init_fun, lambda params, x, *, grad="autodiff": apply_fun(x),
                           lambda params, x, dy: ((), backward_fun(x, dy)))


def FanOut(num: int):
    """``x -> (x, ..., x)``, ``num`` copies. Backward: their cotangents summed (docs/derivations.md#chain-rule)."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    return _plain(
        f"FanOut{num}",
        lambda key, input_shape: (tuple([tuple(input_shape)] * num), ()),
        lambda x: (x,) * num,
        lambda x, dys: functools.reduce(jnp.add, dys),
    )


def _check_tuple(name, xs):
    if not isinstance(xs, (tuple, list)) or not xs:
        raise ValueError(f"{name} expects a non-empty tuple of inputs, got {type(xs).__name__}")


def FanInSum():
    """``(x_1, ..., x_n) -> Σ x_i`` (equal shapes). Backward: every ``x_i`` receives ``dy``."""

    def init_fun(key, input_shapes):
        _check_tuple("FanInSum", input_shapes)
        shapes = {tuple(shape[1:]) for shape in input_shapes}
        if len(shapes) != 1:
            raise ValueError(f"FanInSum needs inputs of one shape, got {[tuple(s) for s in input_shapes]}")
        return tuple(input_shapes[0]), ()

    def apply_fun(xs):
        _check_tuple("FanInSum", xs)
        return functools.reduce(jnp.add, xs)

    return _plain("FanInSum", init_fun, apply_fun, lambda xs, dy: tuple(dy for _ in xs))


def FanInConcat(axis: int = -1):
    """``(x_1, ..., x_n) -> concatenate(x_i, axis)``. Backward: each ``x_i`` receives its slice of ``dy``."""
    if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
        raise ValueError(f"axis must be a non-zero int (axis 0 is the batch), got {axis!r}")

    def init_fun(key, input_shapes):
        _check_tuple("FanInConcat", input_shapes)
        rank = len(input_shapes[0])
        if not -rank <= axis < rank or axis % rank == 0:
            raise ValueError(f"axis={axis} is out of range (or the batch axis) for inputs of rank {rank}")
        out = list(input_shapes[0])
        out[axis] = sum(shape[axis] for shape in input_shapes)
        return tuple(out), ()

    def apply_fun(xs):
        _check_tuple("FanInConcat", xs)
        return jnp.concatenate(xs, axis=axis)

    def backward_fun(xs, dy):
        bounds = [0]
        for x in xs:
            bounds.append(bounds[-1] + x.shape[axis])
        return tuple(jax.lax.slice_in_dim(dy, lo, hi, axis=axis % dy.ndim) for lo, hi in zip(bounds, bounds[1:]))

    return _plain("FanInConcat", init_fun, apply_fun, backward_fun)


def Identity():
    """``x -> x``; no parameters. Backward: ``dx = dy``."""
    return _plain("Identity", lambda key, input_shape: (tuple(input_shape), ()), lambda x: x, lambda x, dy: dy)


def residual(block, shortcut=None, *, name=None):
    """``y = block(x) + shortcut(x)``, the identity shortcut by default (He et al.'s residual branch).

    Built as ``serial(FanOut(2), parallel(block, shortcut), FanInSum())``, so its params (and state)
    are ``[(), [block_params, shortcut_params], ()]`` and its hand rule is the combinators':

    .. math::
       \\bar{x} = \\bar{x}_{\\text{block}}(\\bar{y}) + \\bar{x}_{\\text{shortcut}}(\\bar{y})

    (the cotangent summed over both paths, docs/derivations.md#chain-rule). ``name`` is the display name (default
    ``Residual(<block> + <shortcut>)``).
    """
    shortcut = Identity() if shortcut is None else shortcut
    for argument, value in (("block", block), ("shortcut", shortcut)):
        if not isinstance(value, Layer):
            raise TypeError(f"{argument} must be a Layer, got {value!r}")
    graph = serial(FanOut(2), parallel(block, shortcut), FanInSum())
    return graph._replace(name=name or f"Residual({block.name} + {shortcut.name})", layers=())

