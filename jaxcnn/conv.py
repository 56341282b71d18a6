"""N-d convolution (cross-correlation), each impl beside its hand-derived backward.

Layout: ``x`` is ``(batch, *spatial, in_channels)``, ``w`` is
``(*window, in_channels // groups, out_channels)``, ``b`` is ``(out_channels,)``,
``y`` is ``(batch, *out_spatial, out_channels)``; spatial rank 1, 2 or 3.

.. math::
   y[n, p, o] = b[o] + \\sum_{t, i} x_{pad}[n, p·s + t·d, g(o)·C_g + i] \\; w[t, i, o]

(seed 003's window sum y(i) = Σ_k w(k)·x(i + k), seed 002's multi-channel
y_{i,t} = Σ_j Σ_τ W_{i,j,τ} x_{j,t+τ}). Three impls compute it: ``"lax"`` with
``lax.conv_general_dilated``, ``"explicit"`` with patches and one einsum, and
``"fft"`` with the convolution theorem (seed 000, :mod:`jaxcnn.fft`).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import jax.numpy as jnp
from jax import lax

from jaxcnn import manual, padding as padding_lib, patches as patches_lib
from jaxcnn.fft import fft_backward, fft_forward

IMPLS = ("lax", "explicit", "fft")


class ConvConfig(NamedTuple):
    """Normalised, hashable convolution arguments (static under ``jit``)."""

    stride: Tuple[int, ...]
    pairs: Tuple[Tuple[int, int], ...]
    dilation: Tuple[int, ...]
    groups: int


# ---------------------------------------------------------------- arguments


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def conv_config(x_shape, w_shape, *, stride, padding, dilation, groups) -> ConvConfig:
    """Validates shapes and normalises the convolution arguments once.

    Raises:
      ValueError/TypeError naming the argument: wrong ranks, channel mismatch,
      ``groups`` not dividing the channels, stride/dilation < 1, bad padding, a
      window larger than the padded input.
    """
    rank = len(w_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "w must have shape (*window, in_channels // groups, out_channels) with 1-3 "
            f"spatial dims, got shape {tuple(w_shape)}"
        )
    if len(x_shape) != rank + 2:
        raise ValueError(
            f"x must have shape (batch, *spatial, channels) with {rank} spatial dims to "
            f"match w of shape {tuple(w_shape)}, got x of shape {tuple(x_shape)}"
        )
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    in_channels, out_channels = x_shape[-1], w_shape[-1]
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both x's channels ({in_channels}) and w's "
            f"out_channels ({out_channels})"
        )
    if w_shape[-2] * groups != in_channels:
        raise ValueError(
            f"channel mismatch: x has {in_channels} channels, so w.shape[-2] must be "
            f"in_channels // groups = {in_channels // groups}, got w of shape {tuple(w_shape)}"
        )
    window = tuple(w_shape[:rank])
    stride = padding_lib.normalize_tuple(stride, rank, "stride")
    dilation = padding_lib.normalize_tuple(dilation, rank, "dilation")
    pairs = padding_lib.normalize_padding(padding, x_shape[1:-1], window, stride, dilation)
    padding_lib.output_spatial(x_shape[1:-1], window, pairs, stride, dilation, name="kernel window")
    return ConvConfig(stride, pairs, dilation, int(groups))


def _check_bias(b, out_channels: int):
    if b is not None and tuple(jnp.shape(b)) != (out_channels,):
        raise ValueError(f"b must have shape ({out_channels},) (out_channels), got {jnp.shape(b)}")


def _dims(rank: int):
    spatial = "DHW"[-rank:] if rank > 1 else "W"
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


# ----------------------------------------------------- shared hand-rule pieces


def transpose_kernel(w, groups: int):
    """The kernel of the input gradient: rotated 180° in space, in/out swapped per group.

    .. math::
       w^{T}[t, o, g·C_g + i] = w[f - 1 - t, i, g·C_o + o]

    (seed 001: "K rotated 180°"; seed 002: x̄_j = Σ_i ȳ_i ⋆ W_ij swaps the roles
    of input and output channels.)

    Args:
      w: ``(*window, C_in // groups, C_out)``.

    Returns:
      ``(*window, C_out // groups, C_in)``.
    """
    rank = w.ndim - 2
    flipped = w[(slice(None, None, -1),) * rank]
    *window, cin_g, cout = w.shape
    grouped = flipped.reshape(*window, cin_g, groups, cout // groups)
    swapped = jnp.swapaxes(grouped, -1, -3)
    return swapped.reshape(*window, cout // groups, groups * cin_g)


def input_grad_padding(x_shape, window, config: ConvConfig):
    """Padding of the stride-dilated ``dy`` for the input gradient (may be negative).

    "Full" padding ``d(f−1)`` on each side, corrected for the forward padding and
    for the ``r`` trailing rows that the stride never reached:

    .. math::
       lo' = d(f-1) - lo, \\qquad hi' = d(f-1) - hi + r
    """
    result = []
    for n, f, pair, s, d in zip(x_shape[1:-1], window, config.pairs, config.stride, config.dilation):
        r = padding_lib.unreached(n, f, pair, s, d)
        result.append((d * (f - 1) - pair[0], d * (f - 1) - pair[1] + r))
    return tuple(result)


def kernel_grad_padding(x_shape, window, config: ConvConfig):
    """Forward padding with the unreached trailing rows removed (for ``dw``)."""
    return tuple(
        (lo, hi - padding_lib.unreached(n, f, (lo, hi), s, d))
        for n, f, (lo, hi), s, d in zip(x_shape[1:-1], window, config.pairs, config.stride, config.dilation)
    )


# ------------------------------------------------------------------ lax impl


def _lax_forward(x, w, config: ConvConfig):
    rank = w.ndim - 2
    return lax.conv_general_dilated(
        x, w, window_strides=config.stride, padding=config.pairs,
        rhs_dilation=config.dilation, dimension_numbers=_dims(rank),
        feature_group_count=config.groups,
    )


def _lax_backward(dy, x, w, config: ConvConfig):
    """Hand rule with ``lax.conv_general_dilated`` (seed 001, seed 002).

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}),\\, \\mathrm{rot}_{180}(w)^{T},\\,
                  \\text{pad } (lo', hi'),\\, \\text{dilation } d)

       \\bar{w}[t, i, o] = \\sum_{n, p} x_{pad}[n, p·s + t·d, i] \\; \\bar{y}[n, p, o]

    ``dilate_s`` inserts ``s − 1`` zeros between entries of ``ȳ`` (``lhs_dilation``);
    ``dw`` is a correlation of the padded ``x`` with the stride-dilated ``ȳ``
    where the batch is the contracted axis (``batch_group_count`` keeps groups apart).
    """
    rank = w.ndim - 2
    window = w.shape[:rank]
    dims = _dims(rank)
    dx = lax.conv_general_dilated(
        dy, transpose_kernel(w, config.groups), window_strides=(1,) * rank,
        padding=input_grad_padding(x.shape, window, config), lhs_dilation=config.stride,
        rhs_dilation=config.dilation, dimension_numbers=dims, feature_group_count=config.groups,
    )
    spatial = dims[1][:-2]
    dw = lax.conv_general_dilated(
        x, dy, window_strides=config.dilation, padding=kernel_grad_padding(x.shape, window, config),
        rhs_dilation=config.stride, batch_group_count=config.groups,
        dimension_numbers=("C" + spatial + "N", "I" + spatial + "O", spatial + "NC"),
    )
    return dx, dw


# ------------------------------------------------------------- explicit impl


def _explicit_forward(x, w, config: ConvConfig):
    """Window-sum view: gather every window, then one (grouped) matmul.

    .. math::
       y[n, p, g, o] = \\sum_{k, i} P[n, p, k, g, i] \\; w[k, i, g, o]
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    x_padded = patches_lib.pad_spatial(x, config.pairs)
    out = padding_lib.output_spatial(x.shape[1:-1], window, config.pairs, config.stride, config.dilation)
    patches = patches_lib.extract_patches(x_padded, window, out, config.stride, config.dilation)
    patches = patches.reshape(*patches.shape[:-2], -1, groups, cin_g)
    kernel = w.reshape(-1, cin_g, groups, cout // groups)
    y = jnp.einsum("...kgi,kigo->...go", patches, kernel)
    return y.reshape(*y.shape[:-2], cout)


def _explicit_backward(dy, x, w, config: ConvConfig):
    """Hand rule with the explicit window machinery only (seed 001, seed 002).

    .. math::
       \\bar{x} = \\mathrm{corr}_{explicit}(\\mathrm{dilate}_s(\\bar{y}),\\, \\mathrm{rot}_{180}(w)^{T},\\,
                  \\text{pad } (lo', hi'),\\, \\text{dilation } d)

       \\bar{w}[k, i, o] = \\sum_{n, p} P[n, p, k, i] \\; \\bar{y}[n, p, o]

    The stride dilation of ``ȳ`` and the (possibly negative) full padding are one
    pad; the correlation is :func:`_explicit_forward` itself with stride 1.
    ``dw`` contracts the forward's patches (``x`` padded, windows at ``p·s + t·d``)
    with ``ȳ`` over batch and positions.
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    dy_full = patches_lib.pad_spatial(
        dy, input_grad_padding(x.shape, window, config), interior=[s - 1 for s in config.stride]
    )
    inner = ConvConfig((1,) * rank, ((0, 0),) * rank, config.dilation, groups)
    dx = _explicit_forward(dy_full, transpose_kernel(w, groups), inner)

    x_padded = patches_lib.pad_spatial(x, config.pairs)
    out = dy.shape[1:-1]
    patches = patches_lib.extract_patches(x_padded, window, out, config.stride, config.dilation)
    patches = patches.reshape(*patches.shape[:-2], -1, groups, cin_g)
    dy_grouped = dy.reshape(*dy.shape[:-1], groups, cout // groups)
    dw = jnp.einsum("n...kgi,n...go->kigo", patches, dy_grouped)
    return dx, dw.reshape(*window, cin_g, cout)


_FORWARD = {"lax": _lax_forward, "explicit": _explicit_forward, "fft": fft_forward}
_BACKWARD = {"lax": _lax_backward, "explicit": _explicit_backward, "fft": fft_backward}


# ---------------------------------------------------------------- public ops


def _forward(x, w, b, *, impl: str, config: ConvConfig):
    y = _FORWARD[impl](x, w, config)
    return y if b is None else y + b.astype(y.dtype)


def _backward(dy, x, w, b, *, impl: str, config: ConvConfig):
    dx, dw = _BACKWARD[impl](dy, x, w, config)
    db = None if b is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1))).astype(b.dtype)
    return dx, dw, db


_manual_conv = manual.hand_rule(_forward, _backward)


def conv(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, impl="lax", grad="autodiff"):
    """N-d cross-correlation (the deep-learning "convolution").

    Args:
      x: ``(batch, *spatial, in_channels)``, spatial rank 1-3.
      w: ``(*window, in_channels // groups, out_channels)``.
      b: optional ``(out_channels,)`` bias.
      stride, dilation: int or per-dimension tuple, each >= 1.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or ``(lo, hi)`` pairs.
      groups: feature groups; divides in and out channels.
      impl: ``"lax"``, ``"explicit"`` or ``"fft"``.
      grad: ``"autodiff"`` (``jax.grad`` derives the gradient) or ``"manual"``
        (the hand rule :func:`conv_backward` is the VJP).

    Returns:
      ``(batch, *out_spatial, out_channels)`` with ``out`` given by
      :func:`jaxcnn.padding.conv_output_size`.
    """
    _check_impl(impl)
    manual.check_grad(grad)
    config = conv_config(jnp.shape(x), jnp.shape(w), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    _check_bias(b, jnp.shape(w)[-1])
    op = _manual_conv if grad == "manual" else _forward
    return op(x, w, b, impl=impl, config=config)


def conv_backward(dy, x, w, *, stride=1, padding="VALID", dilation=1, groups=1, impl="lax"):
    """The hand-derived gradient of :func:`conv` (seed 001, seed 002).

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}), \\mathrm{rot}_{180}(w)^{T}), \\quad
       \\bar{w} = \\mathrm{corr}(x_{pad}, \\mathrm{dilate}_s(\\bar{y})), \\quad
       \\bar{b} = \\sum_{n, p} \\bar{y}[n, p]

    with "full" padding ``d(f−1)`` corrected to ``(d(f−1) − lo, d(f−1) − hi + r)``.

    Args:
      dy: ``(batch, *out_spatial, out_channels)``, the output cotangent.
      x, w: the forward's input and kernel; other arguments as in :func:`conv`.

    Returns:
      ``(dx, dw, db)`` shaped like ``x``, ``w`` and ``(out_channels,)``.
    """
    _check_impl(impl)
    config = conv_config(jnp.shape(x), jnp.shape(w), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    expected = (x.shape[0], *padding_lib.output_spatial(
        x.shape[1:-1], w.shape[:-2], config.pairs, config.stride, config.dilation), w.shape[-1])
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the forward output's shape {expected}, got {tuple(dy.shape)}")
    dx, dw = _BACKWARD[impl](dy, x, w, config)
    return dx, dw, jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))
