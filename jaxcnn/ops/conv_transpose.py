"""N-d transposed convolution: the adjoint of :func:`jaxcnn.ops.conv.conv` in its input.

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
``hi' = d(f−1) − hi + op`` (:func:`jaxcnn.ops.conv.input_grad_padding`;
``op`` is ``output_padding``). Layout: ``y`` is ``(batch, *spatial_y, out_channels)``,
the result ``(batch, *spatial_x, in_channels)`` with ``spatial_x`` from
:func:`jaxcnn.ops.padding.conv_transpose_output_size`. Two impls: ``"lax"``
(``lax.conv_general_dilated`` with ``lhs_dilation``) and ``"explicit"`` (one GEMM
and col2im, no ``lax.conv*`` on its forward or backward path).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import patches as patches_lib
from jaxcnn.ops.conv import (
    MAX_PATCH_ELEMENTS,
    ConvConfig,
    _dims,
    _lax_forward,
    _patch_matrix,
    _platform,
    conv_config,
    input_grad_padding,
    kernel_grad_padding,
    transpose_kernel,
)

CONCRETE_IMPLS = ("lax", "explicit")
IMPLS = (*CONCRETE_IMPLS, "auto")


# ---------------------------------------------------------------- arguments


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def _check_operands(y_shape, w_shape, groups):
    rank = len(w_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "w must have shape (*window, in_channels // groups, out_channels) with 1-3 "
            f"spatial dims, got shape {tuple(w_shape)}"
        )
    if len(y_shape) != rank + 2:
        raise ValueError(
            f"y must have shape (batch, *spatial, out_channels) with {rank} spatial dims to "
            f"match w of shape {tuple(w_shape)}, got y of shape {tuple(y_shape)}"
        )
    if y_shape[-1] != w_shape[-1]:
        raise ValueError(
            f"channel mismatch: y has {y_shape[-1]} channels, but w's out_channels "
            f"(w.shape[-1]) is {w_shape[-1]}; w of shape {tuple(w_shape)}"
        )
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if w_shape[-1] % groups:
        raise ValueError(f"groups={groups} must divide y's channels (w's out_channels, {w_shape[-1]})")


def transpose_config(y_shape, w_shape, *, stride, padding, output_padding, dilation, groups):
    """Validates the operands and returns ``(x_shape, config)`` of the conv being transposed.

    Args:
      y_shape: ``(batch, *spatial_y, out_channels)``; w_shape: ``(*window, C_in // groups, C_out)``;
      the rest as in :func:`conv_transpose`.

    Returns:
      ``x_shape = (batch, *spatial_x, in_channels)``, the result's shape, and the
      forward conv's :class:`~jaxcnn.ops.conv.ConvConfig` for an input of that shape.

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


def resolve_impl(impl: str, y_shape, w_shape, config: ConvConfig, platform: str) -> str:
    """The concrete impl behind ``impl`` (``"auto"`` decided at trace time, like conv's).

    ``"auto"`` follows :func:`jaxcnn.ops.conv.resolve_impl`'s table restricted to
    the two impls a transposed convolution has: ``"lax"`` off the CPU, for
    depthwise kernels (``groups == C_in > 1``) and when the explicit impl's
    patch matrix ``N·∏n_y·∏f·C_in`` (the GEMM's output, folded by col2im) would
    exceed :data:`jaxcnn.ops.conv.MAX_PATCH_ELEMENTS`; ``"explicit"`` otherwise.
    The forward here is conv's input gradient and the backward is conv's forward
    plus its weight gradient, so conv's fwd+bwd measurements carry over.
    """
    if impl != "auto":
        return impl
    rank = len(w_shape) - 2
    in_channels = w_shape[-2] * config.groups
    patch_elements = y_shape[0] * math.prod(y_shape[1:-1]) * math.prod(w_shape[:rank]) * in_channels
    depthwise = 1 < config.groups == in_channels
    if platform != "cpu" or patch_elements > MAX_PATCH_ELEMENTS or depthwise:
        return "lax"
    return "explicit"


def _check_bias(b, in_channels: int):
    if b is not None and tuple(jnp.shape(b)) != (in_channels,):
        raise ValueError(
            f"b must have shape ({in_channels},) (in_channels = w.shape[-2] * groups), got {jnp.shape(b)}")


# ------------------------------------------------------------------ lax impl


def _lax_transpose(y, x_shape, w, config: ConvConfig):
    """``corr(dilate_s(y), rot180(w)ᵀ)`` with ``lhs_dilation = s`` (conv's input-gradient rule).

    XLA:CPU's algebraic simplifier aborts the process when it swaps the operands
    of such a convolution (a dimension of ``y`` smaller than the kernel) while
    another dimension has ``f = s = 2``, ``d = 1`` and zero padding: it keeps that
    dimension's window as a "group" dimension and builds an invalid convolution
    (the same happens to ``jax.grad`` of ``lax.conv_general_dilated``). Such a
    dimension is computed with one more row of padding and the extra output row is
    cropped, which keeps the simplifier off that path.
    """
    rank = w.ndim - 2
    window = w.shape[:rank]
    pairs = input_grad_padding(x_shape, window, config)
    extra = [int(f == s == 2 and d == 1 and pair == (0, 0))
             for f, s, d, pair in zip(window, config.stride, config.dilation, pairs)]
    z = lax.conv_general_dilated(
        y, transpose_kernel(w, config.groups), window_strides=(1,) * rank,
        padding=[(lo, hi + e) for (lo, hi), e in zip(pairs, extra)], lhs_dilation=config.stride,
        rhs_dilation=config.dilation, dimension_numbers=_dims(rank), feature_group_count=config.groups,
    )
    return patches_lib.pad_spatial(z, [(0, -e) for e in extra]) if any(extra) else z


def _lax_backward(dz, y, w, config: ConvConfig):
    """``(ȳ, w̄)``: the forward conv of ``z̄``, and conv's weight-gradient rule with
    ``x := z̄`` and ``ȳ := y`` (a correlation of the padded ``z̄`` with the
    stride-dilated ``y``, the batch contracted; docs/derivations.md#conv-weight-gradient)."""
    rank = w.ndim - 2
    spatial = _dims(rank)[1][:-2]
    dw = lax.conv_general_dilated(
        dz, y, window_strides=config.dilation, padding=kernel_grad_padding(dz.shape, w.shape[:rank], config),
        rhs_dilation=config.stride, batch_group_count=config.groups,
        dimension_numbers=("C" + spatial + "N", "I" + spatial + "O", spatial + "NC"),
    )
    return _lax_forward(dz, w, config), dw


# ------------------------------------------------------------- explicit impl


def _explicit_transpose(y, x_shape, w, config: ConvConfig):
    """One GEMM and col2im: conv's explicit input-gradient rule.

    .. math::
       \\bar{P} = Y W^{T}, \\qquad
       z_{pad}[n, q, i] = \\sum_{(p, k):\\, p·s + t_k·d = q} \\bar{P}[(n, p), k, i]

    with ``Y = y.reshape(M, C_out)``, ``W = w.reshape(K·C_in, C_out)`` (per group
    otherwise), and ``z`` the padded result with ``(lo, hi)`` cropped off.
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    y_matrix = y.reshape(-1, cout)
    if groups == 1:
        patches = y_matrix @ w.reshape(-1, cout).T
    else:
        kernel = w.reshape(-1, cin_g, groups, cout // groups)
        patches = jnp.einsum("mgo,kigo->mkgi", y_matrix.reshape(-1, groups, cout // groups), kernel)
    patches = patches.reshape(*y.shape[:-1], math.prod(window), groups * cin_g)
    padded = padding_lib.padded_spatial(x_shape[1:-1], config.pairs)
    z_padded = patches_lib.fold_patches(patches, padded, window, config.stride, config.dilation)
    return patches_lib.pad_spatial(z_padded, [(-lo, -hi) for lo, hi in config.pairs])


def _explicit_backward(dz, y, w, config: ConvConfig):
    """``(ȳ, w̄)`` from one patch matrix ``P`` of ``z̄`` (im2col) and two GEMMs.

    .. math::
       \\bar{Y} = P W, \\qquad \\bar{W} = P^{T} Y

    (``ȳ`` is conv's explicit forward of ``z̄``; ``w̄`` conv's explicit weight rule
    with ``x := z̄`` and ``ȳ := y``.)
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    patches, _ = _patch_matrix(dz, window, config)
    y_matrix = y.reshape(-1, cout)
    if groups == 1:
        matrix = patches.reshape(patches.shape[0], -1)
        dy, dw = matrix @ w.reshape(-1, cout), matrix.T @ y_matrix
    else:
        grouped = patches.reshape(*patches.shape[:2], groups, cin_g)
        dy = jnp.einsum("mkgi,kigo->mgo", grouped, w.reshape(-1, cin_g, groups, cout // groups))
        dw = jnp.einsum("mkgi,mgo->kigo", grouped, y_matrix.reshape(-1, groups, cout // groups))
    return dy.reshape(y.shape), dw.reshape(w.shape)


_FORWARD = {"lax": _lax_transpose, "explicit": _explicit_transpose}
_BACKWARD = {"lax": _lax_backward, "explicit": _explicit_backward}


# ---------------------------------------------------------------- public ops


def _forward(y, w, b, *, impl: str, x_shape, config: ConvConfig):
    z = _FORWARD[impl](y, x_shape, w, config)
    return z if b is None else z + b.astype(z.dtype)


def _backward(dz, y, w, b, *, impl: str, x_shape, config: ConvConfig):
    dy, dw = _BACKWARD[impl](dz, y, w, config)
    db = None if b is None else jnp.sum(dz, axis=tuple(range(dz.ndim - 1))).astype(b.dtype)
    return dy, dw, db


_manual_conv_transpose = manual.hand_rule(_forward, _backward)


def conv_transpose(y, w, b=None, *, stride=1, padding="VALID", output_padding=0, dilation=1, groups=1,
                   impl="auto", grad="autodiff"):
    """Transposed convolution: the adjoint of :func:`~jaxcnn.ops.conv.conv` in ``x``.

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
      impl: ``"lax"``, ``"explicit"`` (patches, GEMMs and col2im only) or ``"auto"``
        (:func:`resolve_impl`).
      grad: ``"autodiff"`` or ``"manual"`` (:func:`conv_transpose_backward` as the VJP).

    Returns:
      ``(batch, *spatial_x, in_channels)``.
    """
    _check_impl(impl)
    manual.check_grad(grad)
    x_shape, config = transpose_config(jnp.shape(y), jnp.shape(w), stride=stride, padding=padding,
                                       output_padding=output_padding, dilation=dilation, groups=groups)
    _check_bias(b, x_shape[-1])
    impl = resolve_impl(impl, jnp.shape(y), jnp.shape(w), config, _platform(y))
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
    _check_impl(impl)
    x_shape, config = transpose_config(jnp.shape(y), jnp.shape(w), stride=stride, padding=padding,
                                       output_padding=output_padding, dilation=dilation, groups=groups)
    if tuple(jnp.shape(dx)) != x_shape:
        raise ValueError(f"dx must have the transposed conv's output shape {x_shape}, got {tuple(jnp.shape(dx))}")
    impl = resolve_impl(impl, jnp.shape(y), jnp.shape(w), config, _platform(y))
    dy, dw = _BACKWARD[impl](dx, y, w, config)
    return dy, dw, jnp.sum(dx, axis=tuple(range(dx.ndim - 1)))
