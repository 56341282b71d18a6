"""N-d transposed convolution: the adjoint of :func:`jaxcnn.ops.convolution.conv` in its input.

For the forward convolution ``y = conv(x, w)`` with stride ``s``, padding
``(lo, hi)``, dilation ``d`` and groups ``g``, :func:`conv_transpose` is the
linear map ``Aᵀ`` with ``⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩`` for the
*same* kernel ``w`` of shape ``(*window, in_channels // groups, out_channels)``.
It is exactly the input gradient ``∂L/∂X`` of convolution (docs/derivations.md#conv-input-gradient:
"full padding" and the kernel rotated 180°; x̄_j = Σ_i ȳ_i ⋆ W_ij, the
roles of input and output channels swapped):

.. math::
   z[n, q, g·C_g + i] = \\sum_{t, o} \\mathrm{pad}_{(lo', hi')}(\\mathrm{dilate}_s(y))[n, q + t·d, o]
                        \\; w[f - 1 - t, i, o]
                      = \\mathrm{corr}(\\mathrm{dilate}_s(y),\\, \\mathrm{rot}_{180}(w)^{T})[n, q, g·C_g + i]

with ``o`` running over group ``g``'s output channels, ``dilate_s`` inserting
``s − 1`` zeros between entries and ``lo' = d(f−1) − lo``,
``hi' = d(f−1) − hi + op`` (:func:`jaxcnn.ops.convolution.input_grad_padding`;
``op`` is ``output_padding``). Layout: ``y`` is ``(batch, *spatial_y, out_channels)``,
the result ``(batch, *spatial_x, in_channels)`` with ``spatial_x`` from
:func:`jaxcnn.ops.padding.conv_transpose_output_size`.

It is built from conv's own pieces (:data:`jaxcnn.ops.convolution.REGISTRY`): its forward is
conv's input gradient, its hand rule conv's forward (``ȳ``) and conv's kernel gradient
(``w̄``). Of conv's impls, ``"lax"`` (``lax.conv_general_dilated`` with
``lhs_dilation``) and ``"explicit"`` (one GEMM and col2im, no ``lax.conv*`` on its
forward or backward path) are what ``"auto"`` picks; every other impl of conv's serves too.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops.convolution import (
    CONCRETE_IMPLS,
    IMPLS,
    TRANSPOSE_AUTO,
    Case,
    ConvConfig,
    Impl,
    check_bias,
    check_impl,
    check_runs,
    conv_config,
    pick,
    platform,
)
from jaxcnn.ops.convolution.config import check_groups, check_kernel_and_operand, operands_dtype
from jaxcnn.ops.convolution.policy import default_dtype


# ---------------------------------------------------------------- arguments

def _check_operands(y_shape, w_shape, groups):
    check_kernel_and_operand(w_shape, y_shape, "y")
    if y_shape[-1] != w_shape[-1]:
        raise ValueError(
            f"channel mismatch: y has {y_shape[-1]} channels, but w's out_channels "
            f"(w.shape[-1]) is {w_shape[-1]}; w of shape {tuple(w_shape)}"
        )
    check_groups(groups)
    if w_shape[-1] % groups:
        raise ValueError(f"groups={groups} must divide y's channels (w's out_channels, {w_shape[-1]})")


def transpose_config(y_shape, w_shape, *, stride, padding, output_padding, dilation, groups):
    """Validates the operands and returns ``(x_shape, config)`` of the conv being transposed.

    Args:
      y_shape: ``(batch, *spatial_y, out_channels)``; w_shape: ``(*window, C_in // groups, C_out)``;
      the rest as in :func:`conv_transpose`.

    Returns:
      ``x_shape = (batch, *spatial_x, in_channels)``, the result's shape, and the
      forward conv's :class:`~jaxcnn.ops.convolution.ConvConfig` for an input of that shape.

    Raises:
      ValueError/TypeError naming the argument: ranks of ``y`` and ``w``, ``y``'s
      channels not ``w.shape[-1]``, ``groups`` not dividing them, stride/dilation < 1,
      ``output_padding`` outside ``[0, stride)``, bad padding, an output size below 1.
    """
    _check_operands(y_shape, w_shape, groups)
    rank = len(w_shape) - 2
    window = tuple(w_shape[:rank])
    stride = padding_lib.normalize_tuple(stride, rank, "stride")
    dilation = padding_lib.normalize_tuple(dilation, rank, "dilation")
    output_padding = padding_lib.normalize_tuple(output_padding, rank, "output_padding", minimum=0)
    spatial = padding_lib.conv_transpose_output_spatial(
        y_shape[1:-1], window, padding, stride, dilation, output_padding)
    x_shape = (y_shape[0], *spatial, w_shape[-2] * groups)
    config = conv_config(x_shape, w_shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x_shape, config


def _case(y_shape, w_shape, config: ConvConfig, platform_name: str, dtype: str, **passes) -> Case:
    """The :class:`~jaxcnn.ops.convolution.Case` of the conv being transposed: its output is ``y``."""
    rank = len(w_shape) - 2
    return Case(y_shape[0], tuple(y_shape[1:-1]), tuple(w_shape[:rank]), w_shape[-2] * config.groups, config,
                platform_name, dtype, **passes)


def resolve_impl(impl, y_shape, w_shape, config: ConvConfig, platform: str, *, dtype=None) -> str:
    """The name of the impl behind ``impl`` (``"auto"`` decided at trace time by
    :data:`jaxcnn.ops.convolution.TRANSPOSE_AUTO`: ``"onednn"`` for float32 on the CPU where its extension is
    available, else conv's guards and ``"explicit"``; ``"lax"`` off the CPU).

    The forward here is conv's input gradient and the backward is conv's forward
    plus its weight gradient, so conv's fwd+bwd measurements carry over; the patch
    matrix that decides the size row is the one of ``y``'s conv, ``N·∏n_y·∏f·C_in``. ``dtype``, the
    operands' dtype, is read by a :class:`~jaxcnn.ops.convolution.Policy` passed as ``impl``;
    ``None`` = :func:`~jaxcnn.ops.convolution.policy.default_dtype`, that of arrays made without one.
    """
    dtype = default_dtype() if dtype is None else str(jnp.dtype(dtype))
    return _pick(impl, y_shape, w_shape, config, platform, dtype).name


def _pick(impl, y_shape, w_shape, config, platform_name, dtype: str) -> Impl:
    case_of = lambda **passes: _case(y_shape, w_shape, config, platform_name, dtype, **passes)
    return pick(impl, case_of, auto=TRANSPOSE_AUTO)


# ---------------------------------------------------------------- the op


def _forward(y, w, b, *, impl: Impl, x_shape, config: ConvConfig):
    """``z = Aᵀ y + b``: conv's input gradient of ``y``."""
    z = impl.input_grad(y, x_shape, w, config)
    return z if b is None else z + b.astype(z.dtype)


def _gradients(dz, y, w, impl: Impl, config: ConvConfig):
    """``(ȳ, w̄)``: conv's forward of ``z̄``, conv's kernel gradient with ``x := z̄``, ``ȳ := y``."""
    dy = impl.forward(dz, w, config).astype(y.dtype)
    return dy, impl.kernel_grad(y, dz, w.shape, config).astype(w.dtype)


def _backward(dz, y, w, b, *, impl: Impl, x_shape, config: ConvConfig):
    dy, dw = _gradients(dz, y, w, impl, config)
    db = None if b is None else jnp.sum(dz, axis=tuple(range(dz.ndim - 1))).astype(b.dtype)
    return dy, dw, db


_manual_conv_transpose = manual.hand_rule(_forward, _backward)


def conv_transpose(y, w, b=None, *, stride=1, padding="VALID", output_padding=0, dilation=1, groups=1,
                   impl="auto", grad="autodiff"):
    """Transposed convolution: the adjoint of :func:`~jaxcnn.ops.convolution.conv` in ``x``.

    .. math::
       \\langle \\mathrm{conv}(x, w), y \\rangle = \\langle x, \\mathrm{conv\\_transpose}(y, w) \\rangle,
       \\qquad
       \\mathrm{conv\\_transpose}(y, w) = \\mathrm{corr}(\\mathrm{pad}_{(lo', hi')}(\\mathrm{dilate}_s(y)),
       \\mathrm{rot}_{180}(w)^{T}) + b

    with ``lo' = d(f−1) − lo``, ``hi' = d(f−1) − hi + output_padding`` (the
    full padding of ∂L/∂Z, 180°-rotated kernel and channel swap of docs/derivations.md#conv-input-gradient).
    ``stride``, ``padding``, ``dilation`` and ``groups`` are those of the forward
    conv being transposed; it equals PyTorch's ``conv_transpose{1,2,3}d`` with the
    weight ``w`` permuted to ``(out_channels, in_channels // groups, *window)`` and
    symmetric padding.

    The result's spatial size is ``(n_y − 1)·s + d·(f − 1) + 1 − lo − hi + output_padding``
    (:func:`jaxcnn.ops.padding.conv_transpose_output_size`): the smallest input size
    the forward conv maps to ``n_y``, plus ``output_padding`` rows on the high side
    to pick a larger one. ``padding="SAME"`` gives ``s·n_y`` (as ``lax.conv_transpose``
    and Flax's ``ConvTranspose``), with the forward's SAME padding for that size,
    and takes no ``output_padding``.

    Args:
      y: ``(batch, *spatial_y, out_channels)``, spatial rank 1-3.
      w: ``(*window, in_channels // groups, out_channels)``, the forward conv's kernel.
      b: optional ``(in_channels,)`` bias.
      stride, dilation: int or per-dimension tuple, each >= 1.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or ``(lo, hi)`` pairs (the forward's).
      output_padding: int or per-dimension tuple, each in ``[0, stride)``; 0 with ``"SAME"``.
      groups: feature groups; divides ``out_channels``.
      impl: one of conv's impls (:data:`jaxcnn.ops.convolution.IMPLS`: ``"lax"``, ``"explicit"``,
        patches, GEMMs and col2im only, ``"fft"``, ``"winograd"``, ``"hybrid"``, ``"onednn"``), ``"auto"``
        (:func:`resolve_impl`), a :class:`~jaxcnn.ops.convolution.Policy` or an
        :class:`~jaxcnn.ops.convolution.Impl`; it runs that impl's input gradient forward and its
        forward and kernel gradient as the hand rule, and refuses what that impl refuses.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`conv_transpose_backward` as the VJP).

    Returns:
      ``(batch, *spatial_x, in_channels)``.
    """
    check_impl(impl)
    manual.check_grad(grad)
    x_shape, config = transpose_config(jnp.shape(y), jnp.shape(w), stride=stride, padding=padding,
                                       output_padding=output_padding, dilation=dilation, groups=groups)
    check_bias(b, x_shape[-1], "in_channels = w.shape[-2] * groups")
    impl = _pick(impl, jnp.shape(y), jnp.shape(w), config, platform(y), operands_dtype(y, w))
    check_runs(impl, jnp.shape(w), config, y=y, w=w)
    op = _manual_conv_transpose if grad == "manual" else _forward
    return op(y, w, b, impl=impl, x_shape=x_shape, config=config)


def conv_transpose_backward(dx, y, w, *, stride=1, padding="VALID", output_padding=0, dilation=1, groups=1,
                            impl="auto"):
    """The hand-derived gradient of :func:`conv_transpose` (docs/derivations.md#conv-input-gradient).

    For ``z = conv_transpose(y, w) + b = Aᵀy + b`` (``A`` the forward conv) and
    the cotangent ``z̄ = dx``: ``⟨z̄, Aᵀy⟩ = ⟨A z̄, y⟩``, so

    .. math::
       \\bar{y} = A\\bar{z} = \\mathrm{conv}(\\bar{z}, w), \\qquad
       \\bar{w}[t, i, o] = \\sum_{n, p} \\bar{z}_{pad}[n, p·s + t·d, g(o)·C_g + i] \\; y[n, p, o], \\qquad
       \\bar{b} = \\sum_{n, q} \\bar{z}[n, q]

    ``ȳ`` is the adjoint's adjoint, the forward conv of ``z̄``; ``w̄`` is conv's
    weight-gradient rule (∂L/∂K = corr(X, ∂L/∂Z), docs/derivations.md#conv-weight-gradient) with the roles
    swapped: ``z̄`` as the conv's input, ``y`` as its output cotangent.

    Args:
      dx: ``(batch, *spatial_x, in_channels)``, the cotangent of the result.
      y, w: the transposed conv's input and kernel; other arguments as in :func:`conv_transpose`.

    Returns:
      ``(dy, dw, db)`` shaped like ``y``, ``w`` and ``(in_channels,)``.
    """
    check_impl(impl)
    x_shape, config = transpose_config(jnp.shape(y), jnp.shape(w), stride=stride, padding=padding,
                                       output_padding=output_padding, dilation=dilation, groups=groups)
    if tuple(jnp.shape(dx)) != x_shape:
        raise ValueError(f"dx must have the transposed conv's output shape {x_shape}, got {tuple(jnp.shape(dx))}")
    impl = _pick(impl, jnp.shape(y), jnp.shape(w), config, platform(y), operands_dtype(dx, y, w))
    check_runs(impl, jnp.shape(w), config, dx=dx, y=y, w=w)
    return (*_gradients(dx, y, w, impl, config), jnp.sum(dx, axis=tuple(range(dx.ndim - 1))))
