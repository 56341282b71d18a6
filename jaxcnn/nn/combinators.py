"""Combinators: layers made of layers (stax's ``serial``, ``parallel``, ``FanOut``, ``FanInSum``,
``FanInConcat``, and ``residual``).

Each combinator's ``backward`` follows the chain rule over the graph it builds. Where a value
feeds several paths (``FanOut``, the identity shortcut of ``residual``), its cotangent is the sum
of the cotangents of every path — "x̄ = ȳ · ∂y/∂x, summed over every path" (docs/derivations.md#chain-rule). Where
several values are summed (``FanInSum``), each receives the output's cotangent unchanged; where
they are concatenated (``FanInConcat``), each receives its slice of it.

Params (and state) of a combinator are lists with one entry per sub-layer (``()`` for layers
without parameters). A combinator needs state or a key when any of its sub-layers does; the
key of sub-layer ``i`` is ``fold_in(key, i)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcnn.nn.protocol import (
    Layer, apply_with_state, forward_with_state, init_with_state, needs_of, sub_key,
)


def _check_layers(name, layers):
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"{name} expects one or more Layer values, got {layers!r}")


def _states(state, count: int):
    """The sub-layers' states; ``()`` stands for "no state" in every sub-layer."""
    if isinstance(state, tuple) and not state:
        return [()] * count
    if not isinstance(state, (list, tuple)) or len(state) != count:
        raise ValueError(f"state must hold one entry per sub-layer ({count}), got {type(state).__name__} "
                         f"of length {len(state) if isinstance(state, (list, tuple)) else '-'}: use the state "
                         "from jaxcnn.layers.init_with_state(model, key, input_shape)")
    return state


def _with_state(layers, name, sub_layers, init, run_ws, forward_ws, plain_init, apply, forward, backward):
    """A combinator :class:`Layer`; the ``*_with_state`` functions only where a sub-layer needs them."""
    needs = needs_of(layers)
    if not needs:
        return Layer(plain_init, apply, forward, backward, name, sub_layers)
    return Layer(plain_init, apply, forward, backward, name, sub_layers, init, run_ws, forward_ws, needs)


def serial(*layers):
    """Composes layers in order; params, state and residuals are lists, one entry per layer.

    Backward runs the layers' rules in reverse: ``dx_i = backward_i(dx_{i+1})`` (docs/derivations.md#chain-rule).
    """
    _check_layers("serial", layers)

    def init_fun(key, input_shape):
        params = []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            input_shape, layer_params = layer.init(layer_key, input_shape)
            params.append(layer_params)
        return input_shape, params

    def init_ws(key, input_shape):
        params, states = [], []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            input_shape, layer_params, layer_state = init_with_state(layer, layer_key, input_shape)
            params.append(layer_params)
            states.append(layer_state)
        return input_shape, params, states

    def apply_fun(params, x, *, grad="autodiff"):
        for layer, layer_params in zip(layers, params):
            x = layer.apply(layer_params, x, grad=grad)
        return x

    def apply_ws(params, state, x, *, key=None, train=False, grad="autodiff"):
        new_state = []
        for i, (layer, layer_params, layer_state) in enumerate(zip(layers, params, _states(state, len(layers)))):
            x, layer_state = apply_with_state(layer, layer_params, layer_state, x, key=sub_key(key, i),
                                              train=train, grad=grad)
            new_state.append(layer_state)
        return x, new_state

    def forward_fun(params, x):
        residuals = []
        for layer, layer_params in zip(layers, params):
            x, residual = layer.forward(layer_params, x)
            residuals.append(residual)
        return x, residuals

    def forward_ws(params, state, x, *, key=None, train=False):
        residuals, new_state = [], []
        for i, (layer, layer_params, layer_state) in enumerate(zip(layers, params, _states(state, len(layers)))):
            x, residual, layer_state = forward_with_state(layer, layer_params, layer_state, x,
                                                          key=sub_key(key, i), train=train)
            residuals.append(residual)
            new_state.append(layer_state)
        return x, residuals, new_state

    def backward_fun(params, residuals, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return grads, dy

    return _with_state(layers, "serial", tuple(layers), init_ws, apply_ws, forward_ws,
                       init_fun, apply_fun, forward_fun, backward_fun)


def parallel(*layers):
    """Applies ``layers[i]`` to the ``i``-th element of a tuple input; returns the tuple of outputs.

    ``input_shape`` is a tuple of shapes, one per layer. Backward: each layer's rule on its own
    cotangent, ``dx_i = backward_i(dy_i)``.
    """
    _check_layers("parallel", layers)

    def _check_inputs(xs):
        if not isinstance(xs, (tuple, list)) or len(xs) != len(layers):
            raise ValueError(f"parallel of {len(layers)} layers expects a tuple of {len(layers)} inputs, "
                             f"got {type(xs).__name__}{'' if not isinstance(xs, (tuple, list)) else len(xs)}")

    def init_fun(key, input_shapes):
        _check_inputs(input_shapes)
        out = [layer.init(k, shape) for layer, k, shape in zip(layers, jax.random.split(key, len(layers)), input_shapes)]
        return tuple(shape for shape, _ in out), [params for _, params in out]

    def init_ws(key, input_shapes):
        _check_inputs(input_shapes)
        out = [init_with_state(layer, k, shape)
               for layer, k, shape in zip(layers, jax.random.split(key, len(layers)), input_shapes)]
        return tuple(o[0] for o in out), [o[1] for o in out], [o[2] for o in out]

    def apply_fun(params, xs, *, grad="autodiff"):
        _check_inputs(xs)
        return tuple(layer.apply(p, x, grad=grad) for layer, p, x in zip(layers, params, xs))

    def apply_ws(params, state, xs, *, key=None, train=False, grad="autodiff"):
        _check_inputs(xs)
        out = [apply_with_state(layer, p, s, x, key=sub_key(key, i), train=train, grad=grad)
               for i, (layer, p, s, x) in enumerate(zip(layers, params, _states(state, len(layers)), xs))]
        return tuple(y for y, _ in out), [s for _, s in out]

    def forward_fun(params, xs):
        _check_inputs(xs)
        out = [layer.forward(p, x) for layer, p, x in zip(layers, params, xs)]
        return tuple(y for y, _ in out), [r for _, r in out]

    def forward_ws(params, state, xs, *, key=None, train=False):
        _check_inputs(xs)
        out = [forward_with_state(layer, p, s, x, key=sub_key(key, i), train=train)
               for i, (layer, p, s, x) in enumerate(zip(layers, params, _states(state, len(layers)), xs))]
        return tuple(o[0] for o in out), [o[1] for o in out], [o[2] for o in out]

    def backward_fun(params, residuals, dys):
        out = [layer.backward(p, r, dy) for layer, p, r, dy in zip(layers, params, residuals, dys)]
        return [g for g, _ in out], tuple(dx for _, dx in out)

    name = "parallel(" + ", ".join(layer.name for layer in layers) + ")"
    return _with_state(layers, name, (), init_ws, apply_ws, forward_ws, init_fun, apply_fun, forward_fun,
                       backward_fun)


def _plain(name, init_fun, apply_fun, backward_fun):
    """A parameter-free combinator whose residual is its input."""
    return Layer(init_fun, lambda params, x, *, grad="autodiff": apply_fun(x),
                 lambda params, x: (apply_fun(x), x), lambda params, x, dy: ((), backward_fun(x, dy)), name)


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

