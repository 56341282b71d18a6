"""Layers as pure functions, composed with :func:`serial` (stax-style).

Every layer is a :class:`Layer` of the protocol of :mod:`jaxcnn.nn.protocol`
(``init_with_state``, ``apply_with_state``, ``forward_with_state``, ``backward``,
and the stateless face ``init``, ``apply``, ``forward`` derived from them). The
layers here keep no state and are built from plain functions with
:func:`jaxcnn.nn.protocol.stateless_layer`.

``BatchNorm`` (running statistics) and ``Dropout`` (a key in training) live in
:mod:`jaxcnn.nn.stateful`; the combinators (``serial``,
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
from jaxcnn.nn.protocol import Layer, stateless_layer  # noqa: F401
from jaxcnn.ops import padding as padding_lib
from jaxcnn.nn.stateful import BatchNorm, Dropout  # noqa: F401
from jaxcnn.ops.activations import elu, gelu, leaky_relu, mish, relu, sigmoid, silu, softplus, tanh
from jaxcnn.ops.convolution import IMPLS, conv, conv_backward, conv_config, conv_forward
from jaxcnn.ops.transposed_conv import IMPLS as TRANSPOSE_IMPLS
from jaxcnn.ops.transposed_conv import conv_transpose, conv_transpose_backward, transpose_config
from jaxcnn.ops.linear import dense
from jaxcnn.ops.hand_rule import Op
from jaxcnn.ops.norms import group_norm, layer_norm
from jaxcnn.ops.pool import avg_pool, global_avg_pool, max_pool

__all__ = [
    "check_input_shape", "layer_from_op", "op_layer", "Conv", "ConvTranspose", "Dense", "Flatten", "MaxPool",
    "AvgPool", "GlobalAvgPool", "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Gelu", "Softplus", "Silu", "Mish",
    "LayerNorm", "GroupNorm",
]

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


BATCH_PLACEHOLDERS = (-1, None)


def check_input_shape(input_shape, layer: str) -> tuple:
    """``input_shape`` as a tuple whose first entry is a batch placeholder (``-1`` or ``None``).

    A shape without one, e.g. ``(28, 28, 1)``, would be read as a batch of 28 one-dimensional
    inputs; the error says to write ``(-1, 28, 28, 1)``.
    """
    input_shape = tuple(input_shape)
    if not input_shape or input_shape[0] not in BATCH_PLACEHOLDERS:
        raise ValueError(
            f"{layer} expects input_shape (batch, *spatial, channels) starting with the batch placeholder -1 "
            f"(or None), e.g. (-1, 28, 28, 1) for 28×28 images with 1 channel; got {input_shape}")
    return input_shape


def _check_rank(input_shape, ranks, layer: str):
    input_shape = check_input_shape(input_shape, layer)
    if len(input_shape) not in ranks:
        raise ValueError(
            f"{layer} expects input_shape with {sorted(ranks)} dims (batch, ..., channels), "
            f"got {tuple(input_shape)}"
        )
    if len(input_shape) >= 3 and input_shape[1] in (1, 3) and min(input_shape[2:]) >= 8:
        raise ValueError(
            f"{layer} got input_shape {input_shape}, which looks channels-first ({input_shape[1]} channels before "
            f"{'×'.join(map(str, input_shape[2:]))}): jaxcnn is channels-last, (batch, *spatial, channels), "
            f"e.g. {(-1, *input_shape[2:], input_shape[1])}")


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

    return stateless_layer(f"Conv{window}x{out_channels}", init_fun, apply_fun, backward_fun, forward_fun)


def Dense(out_features, *, init="he"):
    """Fully connected layer; params ``{"w": (in, out_features), "b": (out_features,)}``."""
    if not padding_lib.is_int(out_features) or out_features < 1:
        raise ValueError(f"out_features must be a positive int, got {out_features!r}")
    _check_init(init)

    def init_fun(key, input_shape):
        _check_rank(input_shape, (2,), "Dense")
        w = _normal_init(key, (input_shape[1], out_features), input_shape[1], out_features, init)
        return (input_shape[0], out_features), {"w": w, "b": jnp.zeros((out_features,), jnp.float32)}

    return op_layer(dense, f"Dense{out_features}", init_fun, ("w", "b"))


def _check_op(op):
    if not isinstance(op, Op):
        raise TypeError(f"op must be a jaxcnn op with its hand rule (jaxcnn.ops.hand_rule.hand_rule(forward, "
                        f"backward) or declare), got {type(op).__name__} {op!r}")


def op_layer(op, name: str, init=None, params=(), args=(), **config) -> Layer:
    """The layer of a declared op (:func:`jaxcnn.ops.hand_rule.declare`): ``y = op(x, *params, **config)``.

    Its ``apply`` is the op (with its ``grad=`` switch), its ``forward`` the op's plain forward
    caching the input, its ``backward`` the op's hand rule, whose cotangents for the params arrays
    become ``dparams``: the layer is wired once, here, for every op.

    Args:
      op: a :class:`jaxcnn.ops.hand_rule.Op` whose first array is the layer's input.
      name: the display name.
      init: ``init(key, input_shape) -> (output_shape, params)``; default: the input's shape, no params.
      params: the names of the params dict's entries, in the op's argument order after ``x``.
      args, config: the op's static configuration, by position after the arrays and by name
        (``negative_slope=0.2``, ``window=2``, ...).
    """
    _check_op(op)
    names = tuple(params)
    init = (lambda key, input_shape: (tuple(input_shape), ())) if init is None else init

    def arrays(layer_params):
        return [layer_params[name] for name in names]

    def apply(layer_params, x, *, grad="autodiff"):
        return op(x, *arrays(layer_params), *args, grad=grad, **config)

    def forward(layer_params, x):
        inputs, static = op.arguments(x, *arrays(layer_params), *args, **config)
        return op.forward(*inputs, **static), x

    def backward(layer_params, x, dy):
        dx, *dparams = op.rule(dy, x, *arrays(layer_params), *args, **config)
        return (dict(zip(names, dparams)) if names else ()), dx

    return stateless_layer(name, init, apply, backward, forward)


def layer_from_op(op, *, name=None, init=None, params=()):
    """One call from a declared op to its layer's constructor: ``Mish = layer_from_op(mish)``.

    ``Mish()`` (or ``LeakyRelu(0.2)`` for an op with configuration) is then a layer in every
    gradient mode: the op's ``grad=`` switch in ``apply``, its hand rule in ``backward``. The
    configuration is checked when the layer is built.

    Args:
      op: a :class:`jaxcnn.ops.hand_rule.Op` (``declare``, or a user's ``hand_rule(forward, backward)``).
      name: the layers' display name (default: the op's name).
      init, params: as in :func:`op_layer`, for an op with params.

    Returns:
      ``make(*config_args, **config) -> Layer``.
    """
    _check_op(op)
    label = name or "".join(part.capitalize() for part in op.name.strip("_").split("_"))

    def make(*args, **config):
        if not params:
            op.arguments(jnp.zeros((1, 1)), *args, **config)  # the configuration is checked now
        return op_layer(op, label, init, params, args, **config)

    make.__name__ = make.__qualname__ = label
    make.__doc__ = f"The layer of :func:`{op.name}` (built by :func:`layer_from_op`): ``y = {op.name}(x, ...)``."
    return make


def Relu():
    """Elementwise ReLU; no parameters."""
    return op_layer(relu, "Relu")


def _pool_layer(name, op, window, stride, padding, **extra):
    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), name)
        rank = len(input_shape) - 2
        size = padding_lib.normalize_tuple(window, rank, "window")
        steps = size if stride is None else padding_lib.normalize_tuple(stride, rank, "stride")
        pairs = padding_lib.normalize_padding(padding, input_shape[1:-1], size, steps, (1,) * rank)
        out = padding_lib.output_spatial(input_shape[1:-1], size, pairs, steps, (1,) * rank)
        return (input_shape[0], *out, input_shape[-1]), ()

    return op_layer(op, name, init_fun, window=window, stride=stride, padding=padding, **extra)


def MaxPool(window, stride=None, padding="VALID"):
    """Max pooling (pads with −inf); ``stride=None`` means stride = window."""
    return _pool_layer("MaxPool", max_pool, window, stride, padding)


def AvgPool(window, stride=None, padding="VALID", count_include_pad=True):
    """Average pooling; ``stride=None`` means stride = window."""
    return _pool_layer("AvgPool", avg_pool, window, stride, padding,
                       count_include_pad=count_include_pad)


def Flatten():
    """``(batch, *dims) -> (batch, prod(dims))``; no parameters."""

    def init_fun(key, input_shape):
        return (input_shape[0], math.prod(input_shape[1:])), ()

    return stateless_layer("Flatten", init_fun, lambda params, x, *, grad="autodiff": x.reshape(x.shape[0], -1),
                           lambda params, x, dy: ((), dy.reshape(x.shape)))


def ConvTranspose(out_channels, window, *, stride=1, padding="VALID", output_padding=0, dilation=1, groups=1,
                  impl="auto", init="he"):
    """Transposed convolution layer (:func:`jaxcnn.ops.transposed_conv.conv_transpose`): the adjoint
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

    return stateless_layer(f"ConvTranspose{window}x{out_channels}", init_fun, apply_fun, backward_fun)


def Tanh():
    """Elementwise tanh; no parameters."""
    return op_layer(tanh, "Tanh")


def Sigmoid():
    """Elementwise logistic sigmoid; no parameters."""
    return op_layer(sigmoid, "Sigmoid")


def LeakyRelu(negative_slope=0.01):
    """``x`` for ``x > 0``, ``negative_slope · x`` otherwise; no parameters."""
    leaky_relu(jnp.zeros(()), negative_slope)  # validates negative_slope now, not at the first call
    return op_layer(leaky_relu, f"LeakyRelu{negative_slope:g}", negative_slope=negative_slope)


def Elu(alpha=1.0):
    """``x`` for ``x > 0``, ``alpha · (eˣ − 1)`` otherwise; no parameters."""
    elu(jnp.zeros(()), alpha)
    return op_layer(elu, "Elu", alpha=alpha)


def Gelu(approximate=False):
    """Gaussian error linear unit (exact, or the tanh approximation); no parameters."""
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate must be a bool, got {approximate!r}")
    return op_layer(gelu, "Gelu", approximate=approximate)


def Softplus():
    """``log(1 + eˣ)``, computed stably; no parameters."""
    return op_layer(softplus, "Softplus")


def Silu():
    """``x · sigmoid(x)`` (swish); no parameters."""
    return op_layer(silu, "Silu")


Mish = layer_from_op(mish)


def GlobalAvgPool():
    """``(batch, *spatial, C) -> (batch, C)``, the mean over the spatial axes; no parameters."""

    def init_fun(key, input_shape):
        _check_rank(input_shape, (3, 4, 5), "GlobalAvgPool")
        return (input_shape[0], input_shape[-1]), ()

    return op_layer(global_avg_pool, "GlobalAvgPool", init_fun)


def _norm_layer(name, op, **options):
    def init_fun(key, input_shape):
        input_shape = check_input_shape(input_shape, name)
        if len(input_shape) < 2:
            raise ValueError(f"{name} expects input_shape (batch, ..., channels), got {tuple(input_shape)}")
        channels = input_shape[-1]
        groups = options.get("groups")
        if groups is not None and channels % groups:
            raise ValueError(f"groups={groups} must divide the input channels {channels}")
        return tuple(input_shape), {"scale": jnp.ones((channels,), jnp.float32),
                                    "offset": jnp.zeros((channels,), jnp.float32)}

    return op_layer(op, name, init_fun, ("scale", "offset"), **options)


def LayerNorm(*, eps=1e-5):
    """Layer normalisation over the last axis (:func:`jaxcnn.ops.norms.layer_norm`);
    params ``{"scale": (C,), "offset": (C,)}``."""
    return _norm_layer("LayerNorm", layer_norm, eps=eps)


def GroupNorm(groups, *, eps=1e-5):
    """Group normalisation over the spatial axes and each group of ``C / groups`` channels
    (:func:`jaxcnn.ops.norms.group_norm`); params ``{"scale": (C,), "offset": (C,)}``."""
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return _norm_layer(f"GroupNorm{groups}", group_norm, groups=groups, eps=eps)
