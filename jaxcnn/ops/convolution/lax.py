"""``impl="lax"``: the convolution and both halves of its hand rule as ``lax.conv_general_dilated``.

.. math::
   \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}),\\, \\mathrm{rot}_{180}(w)^{T},\\,
              \\text{pad } (lo', hi'),\\, \\text{dilation } d)

   \\bar{w}[t, i, o] = \\sum_{n, p} x_{pad}[n, p·s + t·d, i] \\; \\bar{y}[n, p, o]

(docs/derivations.md#conv-input-gradient). ``dilate_s`` inserts ``s − 1`` zeros between entries of ``ȳ``
(``lhs_dilation``); ``w̄`` is a correlation of the padded ``x`` with the stride-dilated
``ȳ`` in which the batch is the contracted axis (``batch_group_count`` keeps groups apart).
"""

from __future__ import annotations

from jax import lax

from jaxcnn.ops import patches as patches_lib
from jaxcnn.ops.convolution.config import (
    ConvConfig,
    dimension_numbers,
    input_grad_padding,
    kernel_grad_padding,
    transpose_kernel,
)


def _swap_abort_rows(x_shape, window, config: ConvConfig):
    """Per spatial dimension, 1 where the input gradient's convolution has the shape XLA:CPU's operand
    swap aborts on (``f = s = 2``, ``d = 1``, zero padding; see :func:`input_grad`), else 0."""
    pairs = input_grad_padding(x_shape, window, config)
    return [int(f == s == 2 and d == 1 and pair == (0, 0))
            for f, s, d, pair in zip(window, config.stride, config.dilation, pairs)]


def forward(x, w, config: ConvConfig):
    """``y = corr(x_pad, w)`` with stride, dilation and groups (XLA's convolution).

    Under ``jax.grad`` JAX derives ``x̄`` as the lhs-dilated convolution of :func:`input_grad`, without
    its guard; where that convolution has the shape XLA:CPU aborts on, ``x`` gets one more zero row at
    the end of that dimension and the convolution's own high padding loses the row the stride would not
    reach anyway (``hi − r``, ``r = (n + lo + hi − d(f − 1) − 1) mod s``). ``y`` is unchanged; the
    derived input gradient then has padding ``(0, 1)`` and the extra row is cut off by ``pad``'s
    transpose.
    """
    rank = w.ndim - 2
    window = w.shape[:rank]
    extra = _swap_abort_rows(x.shape, window, config)
    if any(extra):
        spatial = x.shape[1:-1]
        pairs = tuple((lo, hi - e * ((n + lo + hi - d * (f - 1) - 1) % s))
                      for (lo, hi), e, n, f, s, d in zip(config.pairs, extra, spatial, window,
                                                         config.stride, config.dilation))
        x = patches_lib.pad_spatial(x, [(0, e) for e in extra])
        config = config._replace(pairs=pairs)
    return lax.conv_general_dilated(
        x, w, window_strides=config.stride, padding=config.pairs,
        rhs_dilation=config.dilation, dimension_numbers=dimension_numbers(rank),
        feature_group_count=config.groups,
    )


def input_grad(dy, x_shape, w, config: ConvConfig):
    """``x̄ = corr(dilate_s(ȳ), rot180(w)ᵀ)`` with ``lhs_dilation = s`` and the padding of
    :func:`~jaxcnn.ops.convolution.input_grad_padding`.

    XLA:CPU's algebraic simplifier aborts the process when it swaps the operands
    of such a convolution (a dimension of ``ȳ`` smaller than the kernel) while
    another dimension has ``f = s = 2``, ``d = 1`` and zero padding: it keeps that
    dimension's window as a "group" dimension and builds an invalid convolution
    (the same happens to ``jax.grad`` of ``lax.conv_general_dilated``). Such a
    dimension is computed with one more row of padding and the extra output row is
    cropped, which keeps the simplifier off that path.
    """
    rank = w.ndim - 2
    window = w.shape[:rank]
    pairs = input_grad_padding(x_shape, window, config)
    extra = _swap_abort_rows(x_shape, window, config)
    dx = lax.conv_general_dilated(
        dy, transpose_kernel(w, config.groups), window_strides=(1,) * rank,
        padding=[(lo, hi + e) for (lo, hi), e in zip(pairs, extra)], lhs_dilation=config.stride,
        rhs_dilation=config.dilation, dimension_numbers=dimension_numbers(rank), feature_group_count=config.groups,
    )
    return patches_lib.pad_spatial(dx, [(0, -e) for e in extra]) if any(extra) else dx


def kernel_grad(dy, x, w_shape, config: ConvConfig):
    """``w̄ = corr(x_pad, dilate_s(ȳ))`` over the batch: the batch is the contracted axis."""
    rank = len(w_shape) - 2
    spatial = dimension_numbers(rank)[1][:-2]
    return lax.conv_general_dilated(
        x, dy, window_strides=config.dilation, padding=kernel_grad_padding(x.shape, w_shape[:rank], config),
        rhs_dilation=config.stride, batch_group_count=config.groups,
        dimension_numbers=("C" + spatial + "N", "I" + spatial + "O", spatial + "NC"),
    )
