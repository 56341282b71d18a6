"""Layers as quadruples of pure functions, composed with :func:`serial` (stax-style).

Every layer is a :class:`Layer` of four pure functions (see :mod:`jaxcnn.nn.protocol`):

- ``init(key, input_shape) -> (output_shape, params)``
- ``apply(params, x, *, grad="autodiff") -> y``
- ``forward(params, x) -> (y, residuals)``: the plain forward, caching what the
  hand rule needs (the layer's input);
- ``backward(params, residuals, dy) -> (dparams, dx)``: the hand-derived rule.

``BatchNorm`` (running statistics) and ``Dropout`` (a key in training) add the
``*_with_state`` variants of :mod:`jaxcnn.nn.protocol`; the combinators (``serial``,
``parallel``, ``FanOut``, ``FanInSum``, ``FanInConcat``, ``residual``) live in
:mod:`jaxcnn.nn.combinators` and are re-exported here.

Shapes are channels-last, ``(batch, *spatial, channels)``; ``input_shape`` may use
any placeholder (e.g. ``-1``) for the batch. Layers without parameters use ``()``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxcnn.nn.combinators import FanInConcat, FanInSum, FanOut, Identity, parallel, residual, serial  # noqa: F401
from jaxcnn.nn.protocol import (  # noqa: F401
    Layer, apply_with_state, forward_with_state, init_with_state, stateful_layer,
)
from jaxcnn.ops import padding as padding_lib
from jaxcnn.nn.stateful import BatchNorm, Dropout  # noqa: F401
from jaxcnn.ops.activations import (
    elu, elu_backward, gelu, gelu_backward, leaky_relu, leaky_relu_backward, relu, relu_backward, sigmoid,
    sigmoid_backward, silu, silu_backward, softplus, softplus_backward, tanh, tanh_backward,
)
from jaxcnn.ops.conv import IMPLS, conv, conv_backward, conv_config, conv_forward
from jaxcnn.ops.conv_transpose import IMPLS as TRANSPOSE_IMPLS
from jaxcnn.ops.conv_transpose import conv_transpose, conv_transpose_backward, transpose_config
from jaxcnn.ops.dense import dense, dense_backward
from jaxcnn.ops.norms import group_norm, group_norm_backward, layer_norm, layer_norm_backward
from jaxcnn.ops.pool import (
    avg_pool, avg_pool_backward, global_avg_pool, global_avg_pool_backward, max_pool, max_pool_backward,
)

INITS = ("he", "glorot")


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


def Conv(out_channels, window, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto", init="he",
         bias=True):
    """Convolution layer; params ``{"w": (*window, C_in // groups, out_channels), "b": (out_channels,)}``.

    ``bias=False`` drops ``b`` (params ``{"w": ...}``), e.g. before a BatchNorm, whose mean
    subtraction cancels any bias: its gradient there is identically zero.
    """
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be True or False, got {bias!r}")
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
        params = {"w": w, "b": jnp.zeros((out_channels,), jnp.float32)} if bias else {"w": w}
        return (input_shape[0], *out, out_channels), params

    def apply_fun(params, x, *, grad="autodiff"):
        return conv(x, params["w"], params.get("b"), impl=impl, grad=grad, **options)

    def forward_fun(params, x):  # the explicit sweep's forward: the impl its hand rule resolves to
        return conv_forward(x, params["w"], params.get("b"), impl=impl, **options), x

    def backward_fun(params, x, dy):
        dx, dw, db = conv_backward(dy, x, params["w"], impl=impl, **options)
        return ({"w": dw, "b": db} if "b" in params else {"w": dw}), dx

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


def ConvTranspose(out_channels, window, *, stride=1, padding="VALID", output_padding=0, dilation=1, groups=1,
                  impl="auto", init="he"):
    """Transposed convolution layer (:func:`jaxcnn.ops.conv_transpose.conv_transpose`): the adjoint
    of a ``Conv`` from ``out_channels`` to the input's channels, upsampling by ``stride``.

    Params ``{"w": (*window, out_channels // groups, C_in), "b": (out_channels,)}``: ``w`` is the
    kernel of the forward conv this layer transposes (which maps ``out_channels`` to ``C_in``).
    """
    if not padding_lib.is_int(out_channels) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
    if impl not in TRANSPOSE_IMPLS:
        raise ValueError(f"impl must be one of {TRANSPOSE_IMPLS}, got {impl!r}")
    _check_init(init)
    options = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)

    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), "ConvTranspose")
        rank = len(input_shape) - 2
        size = padding_lib.normalize_tuple(window, rank, "window")
        if not padding_lib.is_int(groups) or groups < 1 or input_shape[-1] % groups or out_channels % groups:
            raise ValueError(f"groups must be a positive int dividing the input channels {input_shape[-1]} and "
                             f"out_channels {out_channels}, got {groups!r}")
        w_shape = (*size, out_channels // groups, input_shape[-1])
        x_shape, _ = transpose_config((1, *input_shape[1:]), w_shape, **options)
        fan_in = math.prod(size) * input_shape[-1] // groups
        w = _normal_init(key, w_shape, fan_in, math.prod(size) * out_channels // groups, init)
        return (input_shape[0], *x_shape[1:]), {"w": w, "b": jnp.zeros((out_channels,), jnp.float32)}

    def apply_fun(params, x, *, grad="autodiff"):
        return conv_transpose(x, params["w"], params["b"], impl=impl, grad=grad, **options)

    def backward_fun(params, x, dy):
        dx, dw, db = conv_transpose_backward(dy, x, params["w"], impl=impl, **options)
        return {"w": dw, "b": db}, dx

    return Layer(init_fun, apply_fun, lambda params, x: (apply_fun(params, x), x), backward_fun,
                 f"ConvTranspose{window}x{out_channels}")


def _activation(name, op, op_backward, **options):
    return _stateless(name, lambda key, shape: (tuple(shape), ()),
                      lambda x, grad="autodiff": op(x, grad=grad, **options),
                      lambda dy, x: op_backward(dy, x, **options))


def Tanh():
    """Elementwise tanh; no parameters."""
    return _activation("Tanh", tanh, tanh_backward)


def Sigmoid():
    """Elementwise logistic sigmoid; no parameters."""
    return _activation("Sigmoid", sigmoid, sigmoid_backward)


def LeakyRelu(negative_slope=0.01):
    """``x`` for ``x > 0``, ``negative_slope · x`` otherwise; no parameters."""
    leaky_relu(jnp.zeros(()), negative_slope)  # validates negative_slope now, not at the first call
    return _activation(f"LeakyRelu{negative_slope:g}", leaky_relu, leaky_relu_backward, negative_slope=negative_slope)


def Elu(alpha=1.0):
    """``x`` for ``x > 0``, ``alpha · (eˣ − 1)`` otherwise; no parameters."""
    elu(jnp.zeros(()), alpha)
    return _activation("Elu", elu, elu_backward, alpha=alpha)


def Gelu(approximate=False):
    """Gaussian error linear unit (exact, or the tanh approximation); no parameters."""
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate must be a bool, got {approximate!r}")
    return _activation("Gelu", gelu, gelu_backward, approximate=approximate)


def Softplus():
    """``log(1 + eˣ)``, computed stably; no parameters."""
    return _activation("Softplus", softplus, softplus_backward)


def Silu():
    """``x · sigmoid(x)`` (swish); no parameters."""
    return _activation("Silu", silu, silu_backward)


def GlobalAvgPool():
    """``(batch, *spatial, C) -> (batch, C)``, the mean over the spatial axes; no parameters."""

    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), "GlobalAvgPool")
        return (input_shape[0], input_shape[-1]), ()

    return _stateless("GlobalAvgPool", init_fun, global_avg_pool, global_avg_pool_backward)


def _norm_layer(name, op, op_backward, **options):
    def init_fun(key, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{name} expects input_shape (batch, ..., channels), got {tuple(input_shape)}")
        channels = input_shape[-1]
        groups = options.get("groups")
        if groups is not None and channels % groups:
            raise ValueError(f"groups={groups} must divide the input channels {channels}")
        return tuple(input_shape), {"scale": jnp.ones((channels,), jnp.float32),
                                    "offset": jnp.zeros((channels,), jnp.float32)}

    def apply_fun(params, x, *, grad="autodiff"):
        return op(x, params["scale"], params["offset"], grad=grad, **options)

    def backward_fun(params, x, dy):
        dx, dscale, doffset = op_backward(dy, x, params["scale"], params["offset"], **options)
        return {"scale": dscale, "offset": doffset}, dx

    return Layer(init_fun, apply_fun, lambda params, x: (apply_fun(params, x), x), backward_fun, name)


def LayerNorm(*, eps=1e-5):
    """Layer normalisation over the last axis (:func:`jaxcnn.ops.norms.layer_norm`);
    params ``{"scale": (C,), "offset": (C,)}``."""
    return _norm_layer("LayerNorm", layer_norm, layer_norm_backward, eps=eps)


def GroupNorm(groups, *, eps=1e-5):
    """Group normalisation over the spatial axes and each group of ``C / groups`` channels
    (:func:`jaxcnn.ops.norms.group_norm`); params ``{"scale": (C,), "offset": (C,)}``."""
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return _norm_layer(f"GroupNorm{groups}", group_norm, group_norm_backward, groups=groups, eps=eps)
