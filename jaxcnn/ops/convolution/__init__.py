"""N-d convolution (cross-correlation), each impl beside its hand-derived backward.

Layout: ``x`` is ``(batch, *spatial, in_channels)``, ``w`` is
``(*window, in_channels // groups, out_channels)``, ``b`` is ``(out_channels,)``,
``y`` is ``(batch, *out_spatial, out_channels)``; spatial rank 1, 2 or 3.

.. math::
   y[n, p, o] = b[o] + \\sum_{t, i} x_{pad}[n, p·s + t·d, g(o)·C_g + i] \\; w[t, i, o]

(docs/derivations.md#conv-forward: the window sum y(i) = Σ_k w(k)·x(i + k), the multi-channel
y_{i,t} = Σ_j Σ_τ W_{i,j,τ} x_{j,t+τ}). The impls, each a forward with the two
halves of its hand rule, are registered by name in :data:`REGISTRY`
(:mod:`~jaxcnn.ops.convolution.registry`): ``"lax"`` (:mod:`~jaxcnn.ops.convolution.lax`,
``lax.conv_general_dilated``), ``"explicit"`` (:mod:`~jaxcnn.ops.convolution.explicit`,
patches and GEMMs), ``"fft"`` (the convolution theorem, docs/derivations.md#convolution-theorem, :mod:`jaxcnn.ops.fft`),
``"winograd"`` (F(4×4, 3×3)/F(2×2, 3×3) tiles for 3-tap/3×3 kernels, stride 1, dilation 1;
:mod:`jaxcnn.ops.winograd`), ``"hybrid"`` (``lax``'s forward and input gradient,
im2col's kernel gradient) and ``"onednn"`` (oneDNN's three primitives as XLA FFI custom calls, float32 on
the CPU; :mod:`jaxcnn.ops.onednn`). ``"auto"`` picks one per backend, dtype, shape and pass by the table
:data:`AUTO` (:mod:`~jaxcnn.ops.convolution.policy`).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops.convolution.config import (
    ConvConfig,
    check_bias,
    conv_config,
    forward_only,
    input_grad_padding,
    kernel_grad_padding,
    operands_dtype,
    output_spatial,
    platform,
    transpose_kernel,
)
from jaxcnn.ops.convolution.explicit import PATCH_CHUNK_BYTES
from jaxcnn.ops.convolution.policy import (
    AUTO,
    CONCRETE_IMPLS,
    IMPLS,
    MAX_PATCH_ELEMENTS,
    TRANSPOSE_AUTO,
    Case,
    Policy,
    Rule,
    check_impl,
    pick,
    resolve_impl,
    use_policy,
    winograd_rule,
)
from jaxcnn.ops.convolution.registry import REGISTRY, Impl, check_runs, explicit_impl, hybrid_impl, supported_impls

__all__ = [
    # the op
    "conv", "conv_forward", "conv_backward", "conv_config", "ConvConfig", "forward_only",
    # the impls, and what their hand rules share
    "IMPLS", "CONCRETE_IMPLS", "REGISTRY", "Impl", "explicit_impl", "hybrid_impl", "supported_impls",
    "transpose_kernel", "input_grad_padding", "kernel_grad_padding", "PATCH_CHUNK_BYTES",
    # impl="auto"
    "AUTO", "TRANSPOSE_AUTO", "Policy", "Rule", "Case", "winograd_rule", "use_policy", "resolve_impl",
    "check_impl", "MAX_PATCH_ELEMENTS",
]


def _forward(x, w, b, *, impl: Impl, config: ConvConfig):
    y = impl.forward(x, w, config)
    return y if b is None else y + b.astype(y.dtype)


def _gradients(dy, x, w, impl: Impl, config: ConvConfig):
    """``(dx, dw)`` of the hand rule, in the operands' dtypes."""
    dw = impl.kernel_grad(dy, x, jnp.shape(w), config).astype(w.dtype)
    return impl.input_grad(dy, jnp.shape(x), w, config).astype(x.dtype), dw


def _backward(dy, x, w, b, *, impl: Impl, config: ConvConfig):
    dx, dw = _gradients(dy, x, w, impl, config)
    db = None if b is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1))).astype(b.dtype)
    return dx, dw, db


_manual_conv = manual.hand_rule(_forward, _backward)


def _resolved(x, w, b, impl, *, manual: bool, options, **operands):
    """``(impl, config)`` of a call: arguments checked, ``impl`` resolved and able to run them."""
    check_impl(impl)
    config = conv_config(jnp.shape(x), jnp.shape(w), **options)
    check_bias(b, jnp.shape(w)[-1])
    dtype = operands_dtype(x, w, *operands.values())
    case_of = lambda **passes: Case.of(jnp.shape(x), jnp.shape(w), config, platform(x), dtype, **passes)
    impl = pick(impl, case_of, manual=manual)
    check_runs(impl, jnp.shape(w), config, x=x, w=w, **operands)
    return impl, config


def conv(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto", grad="autodiff"):
    """N-d cross-correlation (the deep-learning "convolution").

    Args:
      x: ``(batch, *spatial, in_channels)``, spatial rank 1-3.
      w: ``(*window, in_channels // groups, out_channels)``.
      b: optional ``(out_channels,)`` bias.
      stride, dilation: int or per-dimension tuple, each >= 1.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or ``(lo, hi)`` pairs.
      groups: feature groups; divides in and out channels.
      impl: ``"lax"``, ``"explicit"``, ``"fft"`` (float32/float64), ``"winograd"`` (3 or 3×3
        windows, stride 1, dilation 1), ``"hybrid"`` (``lax``'s forward; its hand rule
        computes ``x̄`` with ``lax`` and ``w̄`` with im2col, so under ``grad="autodiff"``
        it is ``"lax"``), ``"onednn"`` (oneDNN's primitives for float32 on the CPU, ``"lax"``
        otherwise), ``"auto"`` (the table :data:`AUTO`, or the one set by
        :func:`use_policy`), a :class:`Policy`, or an :class:`Impl`. An impl that cannot
        run the convolution or its dtypes raises a ValueError naming those that can.
      grad: ``"autodiff"`` (``jax.grad`` derives the gradient) or ``"manual"``
        (the hand rule :func:`conv_backward` is the VJP).

    Returns:
      ``(batch, *out_spatial, out_channels)`` with ``out`` given by
      :func:`jaxcnn.ops.padding.conv_output_size`.
    """
    manual.check_grad(grad)
    impl, config = _resolved(x, w, b, impl, manual=grad == "manual", options=dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups))
    op = _manual_conv if grad == "manual" else _forward
    return op(x, w, b, impl=impl, config=config)


def conv_forward(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto"):
    """The plain forward that pairs with :func:`conv_backward`: :func:`conv` with ``impl`` resolved as for
    the hand rule, differentiated (if ever) by JAX, no ``custom_vjp``.

    It computes with the same ops as the forward of ``conv(..., grad="manual")``, so the explicit sweep
    (``grad="backprop"``), which calls it and then :func:`conv_backward`, runs what ``grad="manual"``
    runs: under ``impl="auto"`` ResNet's padded 16-channel layers get ``"hybrid"``'s forward (XLA's
    convolution) in both, where ``jax.grad``'s resolution would give im2col's. Arguments and result as in
    :func:`conv`.
    """
    impl, config = _resolved(x, w, b, impl, manual=True, options=dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups))
    return _forward(x, w, b, impl=impl, config=config)


def conv_backward(dy, x, w, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto"):
    """The hand-derived gradient of :func:`conv` (docs/derivations.md#conv-input-gradient).

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}), \\mathrm{rot}_{180}(w)^{T}), \\quad
       \\bar{w} = \\mathrm{corr}(x_{pad}, \\mathrm{dilate}_s(\\bar{y})), \\quad
       \\bar{b} = \\sum_{n, p} \\bar{y}[n, p]

    with "full" padding ``d(f−1)`` corrected to ``(d(f−1) − lo, d(f−1) − hi + r)``
    (:func:`input_grad_padding`); each impl computes the two halves its own way
    (:mod:`~jaxcnn.ops.convolution.lax`, :mod:`~jaxcnn.ops.convolution.explicit`, :mod:`jaxcnn.ops.fft`,
    :mod:`jaxcnn.ops.winograd`).

    Args:
      dy: ``(batch, *out_spatial, out_channels)``, the output cotangent.
      x, w: the forward's input and kernel; other arguments as in :func:`conv`.

    Returns:
      ``(dx, dw, db)`` shaped like ``x``, ``w`` and ``(out_channels,)``.
    """
    impl, config = _resolved(x, w, None, impl, manual=True, options=dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups), dy=dy)
    expected = (x.shape[0], *output_spatial(x.shape, w.shape[:-2], config), w.shape[-1])
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the forward output's shape {expected}, got {tuple(dy.shape)}")
    return (*_gradients(dy, x, w, impl, config), jnp.sum(dy, axis=tuple(range(dy.ndim - 1))))
