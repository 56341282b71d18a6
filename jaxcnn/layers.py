"""Layers as quadruples of pure functions, composed with :func:`serial` (stax-style).

Every layer is a :class:`Layer` of four pure functions:

- ``init(key, input_shape) -> (output_shape, params)``
- ``apply(params, x, *, grad="autodiff") -> y``
- ``forward(params, x) -> (y, residuals)``: the plain forward, caching what the
  hand rule needs (the layer's input);
- ``backward(params, residuals, dy) -> (dparams, dx)``: the hand-derived rule.

Shapes are channels-last, ``(batch, *spatial, channels)``; ``input_shape`` may use
any placeholder (e.g. ``-1``) for the batch. Layers without parameters use ``()``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxcnn import padding as padding_lib
from jaxcnn.activations import relu, relu_backward
from jaxcnn.conv import IMPLS, conv, conv_backward, conv_config
from jaxcnn.dense import dense, dense_backward
from jaxcnn.pool import avg_pool, avg_pool_backward, max_pool, max_pool_backward

INITS = ("he", "glorot")


class Layer(NamedTuple):
    """A layer: ``init``, ``apply``, ``forward``, ``backward``, a display name, and
    (for :func:`serial`) the layers it composes."""

    init: Callable
    apply: Callable
    forward: Callable
    backward: Callable
    name: str = "layer"
    layers: tuple = ()


def _check_init(scheme: str) -> str:
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    return scheme


def _normal_init(key, shape, fan_in: int, fan_out: int, scheme: str, dtype=jnp.float32):
    """He: std = sqrt(2 / fan_in) (before ReLU); Glorot: std = sqrt(2 / (fan_in + fan_out))."""
    _check_init(scheme)
    std = math.sqrt(2.0 / fan_in) if scheme == "he" else math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, shape, dtype)


def _check_rank(input_shape, ranks, layer: str):
    if len(input_shape) not in ranks:
        raise ValueError(
            f"{layer} expects input_shape with {sorted(ranks)} dims (batch, ..., channels), "
            f"got {tuple(input_shape)}"
        )


def Conv(out_channels, window, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto", init="he"):
    """Convolution layer; params ``{"w": (*window, C_in // groups, out_channels), "b": (out_channels,)}``."""
    if not padding_lib.is_int(out_channels) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    _check_init(init)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), "Conv")
        rank = len(input_shape) - 2
        size = padding_lib.normalize_tuple(window, rank, "window")
        if not padding_lib.is_int(groups) or groups < 1 or input_shape[-1] % groups:
            raise ValueError(
                f"groups must be a positive int dividing the input channels {input_shape[-1]}, got {groups!r}"
            )
        w_shape = (*size, input_shape[-1] // groups, out_channels)
        config = conv_config((1, *input_shape[1:]), w_shape, **options)
        out = padding_lib.output_spatial(input_shape[1:-1], size, config.pairs, config.stride, config.dilation)
        fan_in = math.prod(size) * input_shape[-1] // groups
        w = _normal_init(key, w_shape, fan_in, math.prod(size) * out_channels, init)
        return (input_shape[0], *out, out_channels), {"w": w, "b": jnp.zeros((out_channels,), jnp.float32)}

    def apply_fun(params, x, *, grad="autodiff"):
        return conv(x, params["w"], params["b"], impl=impl, grad=grad, **options)

    def forward_fun(params, x):
        return apply_fun(params, x), x

    def backward_fun(params, x, dy):
        dx, dw, db = conv_backward(dy, x, params["w"], impl=impl, **options)
        return {"w": dw, "b": db}, dx

    return Layer(init_fun, apply_fun, forward_fun, backward_fun, f"Conv{window}x{out_channels}")


def Dense(out_features, *, init="he"):
    """Fully connected layer; params ``{"w": (in, out_features), "b": (out_features,)}``."""
    if not padding_lib.is_int(out_features) or out_features < 1:
        raise ValueError(f"out_features must be a positive int, got {out_features!r}")
    _check_init(init)

    def init_fun(key, input_shape):
        _check_rank(input_shape, (2,), "Dense")
        w = _normal_init(key, (input_shape[1], out_features), input_shape[1], out_features, init)
        return (input_shape[0], out_features), {"w": w, "b": jnp.zeros((out_features,), jnp.float32)}

    def apply_fun(params, x, *, grad="autodiff"):
        return dense(x, params["w"], params["b"], grad=grad)

    def backward_fun(params, x, dy):
        dx, dw, db = dense_backward(dy, x, params["w"])
        return {"w": dw, "b": db}, dx

    return Layer(init_fun, apply_fun, lambda params, x: (apply_fun(params, x), x), backward_fun,
                 f"Dense{out_features}")


def _stateless(name, init_fun, op, op_backward):
    """A parameter-free layer whose residual is its input."""

    def apply_fun(params, x, *, grad="autodiff"):
        return op(x, grad=grad)

    def backward_fun(params, x, dy):
        return (), op_backward(dy, x)

    return Layer(init_fun, apply_fun, lambda params, x: (op(x), x), backward_fun, name)


def Relu():
    """Elementwise ReLU; no parameters."""
    return _stateless("Relu", lambda key, shape: (tuple(shape), ()), relu, relu_backward)


def _pool_layer(name, op, op_backward, window, stride, padding, **extra):
    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), name)
        rank = len(input_shape) - 2
        size = padding_lib.normalize_tuple(window, rank, "window")
        steps = size if stride is None else padding_lib.normalize_tuple(stride, rank, "stride")
        pairs = padding_lib.normalize_padding(padding, input_shape[1:-1], size, steps, (1,) * rank)
        out = padding_lib.output_spatial(input_shape[1:-1], size, pairs, steps, (1,) * rank)
        return (input_shape[0], *out, input_shape[-1]), ()

    return _stateless(
        name, init_fun,
        lambda x, grad="autodiff": op(x, window, stride, padding, grad=grad, **extra),
        lambda dy, x: op_backward(dy, x, window, stride, padding, **extra),
    )


def MaxPool(window, stride=None, padding="VALID"):
    """Max pooling (pads with −inf); ``stride=None`` means stride = window."""
    return _pool_layer("MaxPool", max_pool, max_pool_backward, window, stride, padding)


def AvgPool(window, stride=None, padding="VALID", count_include_pad=True):
    """Average pooling; ``stride=None`` means stride = window."""
    return _pool_layer("AvgPool", avg_pool, avg_pool_backward, window, stride, padding,
                       count_include_pad=count_include_pad)


def Flatten():
    """``(batch, *dims) -> (batch, prod(dims))``; no parameters."""

    def init_fun(key, input_shape):
        return (input_shape[0], math.prod(input_shape[1:])), ()

    return _stateless(
        "Flatten", init_fun,
        lambda x, grad="autodiff": x.reshape(x.shape[0], -1),
        lambda dy, x: dy.reshape(x.shape),
    )


def serial(*layers):
    """Composes layers in order; params and residuals are lists, one entry per layer."""
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"serial expects one or more Layer values, got {layers!r}")

    def init_fun(key, input_shape):
        params = []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            input_shape, layer_params = layer.init(layer_key, input_shape)
            params.append(layer_params)
        return input_shape, params

    def apply_fun(params, x, *, grad="autodiff"):
        for layer, layer_params in zip(layers, params):
            x = layer.apply(layer_params, x, grad=grad)
        return x

    def forward_fun(params, x):
        residuals = []
        for layer, layer_params in zip(layers, params):
            x, residual = layer.forward(layer_params, x)
            residuals.append(residual)
        return x, residuals

    def backward_fun(params, residuals, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return grads, dy

    return Layer(init_fun, apply_fun, forward_fun, backward_fun, "serial", tuple(layers))
