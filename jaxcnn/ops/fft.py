"""Convolution through the convolution theorem (docs/derivations.md#convolution-theorem): û(ξ) = f̂(ξ)·ĝ(ξ).

A linear convolution of two finite signals equals the inverse transform of the
product of their zero-padded spectra, as long as the transform length ``L`` is
at least the length of the full result (no circular wrap-around). Every
correlation the convolution layer needs is written as such a product here:

- forward: cross-correlation with ``w`` = convolution with ``w`` rotated 180°;
- input gradient: convolution of the stride-dilated ``dy`` with ``w`` itself
  (= correlation with the rotated kernel, the "full" rule of docs/derivations.md#conv-input-gradient);
- kernel gradient: correlation of the padded ``x`` with the stride-dilated ``dy``.

Spatial axes are transformed with ``jnp.fft.rfftn``/``irfftn`` over the padded
input's length ``L = n + lo + hi`` (it is never exceeded by any of the three
results), channels are contracted with one einsum in the frequency domain, and
groups are an extra einsum axis. Arguments arrive normalised as a
:class:`jaxcnn.ops.convolution.ConvConfig` (``stride``, ``pairs``, ``dilation``, ``groups``);
this module reads those fields and imports nothing from :mod:`jaxcnn.ops.convolution`
(whose registry, :data:`jaxcnn.ops.convolution.REGISTRY`, names it ``"fft"``). The real FFT takes
float32 and float64 only (:data:`DTYPES`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import patches as patches_lib

#: The dtypes ``jnp.fft.rfftn`` transforms.
DTYPES = ("float32", "float64")


def dilate_kernel(w, dilation):
    """Inserts ``d − 1`` zeros between neighbouring kernel taps.

    Args:
      w: ``(*window, ...)`` whose leading ``len(dilation)`` axes are spatial.
      dilation: one int per spatial axis.

    Returns:
      ``(*dilated_window, ...)`` with ``f' = d(f − 1) + 1``.
    """
    rest = w.ndim - len(dilation)
    config = [(0, 0, d - 1) for d in dilation] + [(0, 0, 0)] * rest
    return lax.pad(w, jnp.zeros((), w.dtype), config)


def _spectrum(a, axes, lengths, *, rotate=False):
    """``rfftn`` of ``a`` (rotated 180° over ``axes`` if asked), zero-padded to ``lengths``."""
    if rotate:
        a = jnp.flip(a, axis=axes)
    return jnp.fft.rfftn(a, s=lengths, axes=axes)


def _inverse(spectrum, axes, lengths, starts, sizes, steps):
    """``irfftn`` back to ``lengths``, then the strided crop ``[start : start + (size−1)·step + 1 : step]``."""
    signal = jnp.fft.irfftn(spectrum, s=lengths, axes=axes)
    for axis, start, size, step in zip(axes, starts, sizes, steps):
        signal = lax.slice_in_dim(signal, start, start + (size - 1) * step + 1, step, axis)
    return signal


def _grouped(a, groups: int):
    """``(..., C) -> (..., groups, C // groups)``."""
    return a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)


def _kernel_grouped(w, groups: int):
    """``(*window, C_in/g, C_out) -> (*window, C_in/g, g, C_out/g)``."""
    return w.reshape(*w.shape[:-1], groups, w.shape[-1] // groups)


def fft_forward(x, w, config):
    """Cross-correlation as a product of spectra (docs/derivations.md#convolution-theorem), then crop and stride.

    With ``x_pad`` the padded input, ``w_d`` the dilated kernel (``f' = d(f−1)+1``)
    and ``ℱ`` the real FFT of length ``L = n + lo + hi`` per spatial axis:

    .. math::
       z = \\mathcal{F}^{-1}\\Big[\\sum_i \\mathcal{F}(x_{pad})[\\cdot, i] \\;
           \\mathcal{F}(\\mathrm{rot}_{180}\\, w_d)[\\cdot, i, o]\\Big], \\qquad
       y[p] = z[f' - 1 + p·s]

    ``z[f'−1+q] = Σ_u x_pad[q+u] w_d[u]`` is the stride-1 window sum; the full
    linear convolution has length ``L + f' − 1`` but only indices ``< L`` are kept,
    and none of those wraps around. Channels are contracted per group.

    Args:
      x: ``(batch, *spatial, C_in)``.
      w: ``(*window, C_in // groups, C_out)``.
      config: normalised ``stride``, ``pairs``, ``dilation``, ``groups``.

    Returns:
      ``(batch, *out_spatial, C_out)``.
    """
    rank, groups = w.ndim - 2, config.groups
    x_padded = patches_lib.pad_spatial(x, config.pairs)
    lengths = x_padded.shape[1:-1]
    w_dilated = dilate_kernel(w, config.dilation)
    window = w_dilated.shape[:rank]
    out = [(n - f) // s + 1 for n, f, s in zip(lengths, window, config.stride)]
    x_hat = _grouped(_spectrum(x_padded, tuple(range(1, rank + 1)), lengths), groups)
    w_hat = _kernel_grouped(_spectrum(w_dilated, tuple(range(rank)), lengths, rotate=True), groups)
    y_hat = jnp.einsum("n...gi,...igo->n...go", x_hat, w_hat)
    y_hat = y_hat.reshape(*y_hat.shape[:-2], w.shape[-1])
    y = _inverse(y_hat, tuple(range(1, rank + 1)), lengths, [f - 1 for f in window], out, config.stride)
    return y.astype(jnp.result_type(x, w))


def fft_backward(dy, x, w, config):
    """Hand rule for :func:`fft_forward`, both gradients as products of spectra.

    With ``dy_s`` the stride-dilated cotangent (``s − 1`` zeros between entries,
    length ``M = (m − 1)s + 1``) and the same ``L = n + lo + hi``:

    .. math::
       \\bar{x}_{pad} = \\mathcal{F}^{-1}\\Big[\\sum_o \\mathcal{F}(\\bar{y}_s)[\\cdot, o] \\;
           \\mathcal{F}(w_d)[\\cdot, i, o]\\Big], \\qquad \\bar{x} = \\bar{x}_{pad}[lo : lo + n]

       \\bar{w}[t, i, o] = \\mathcal{F}^{-1}\\Big[\\sum_b \\mathcal{F}(x_{pad})[b, \\cdot, i] \\;
           \\mathcal{F}(\\mathrm{rot}_{180}\\, \\bar{y}_s)[b, \\cdot, o]\\Big][M - 1 + t·d]

    The first line is the true convolution ``ȳ_s ∗ w_d``, i.e. the correlation of
    the fully padded ``ȳ_s`` with the kernel rotated 180° and transposed
    in/out (docs/derivations.md#conv-input-gradient: "full padding, K rotated 180°",
    ``x̄_j = Σ_i ȳ_i ⋆ W_ij``); its length ``M + f' − 1 <= L``, so nothing wraps,
    and the crop drops the forward padding and the rows the stride never reached.
    The second is the correlation of ``x_pad`` with ``ȳ_s`` read at the dilated
    taps ``t·d``, contracted over the batch (the convolution theorem once more).

    Args:
      dy: ``(batch, *out_spatial, C_out)``.
      x: ``(batch, *spatial, C_in)``; w: ``(*window, C_in // groups, C_out)``.
      config: as for :func:`fft_forward`.

    Returns:
      ``(dx, dw)`` shaped like ``x`` and ``w``.
    """
    return fft_input_grad(dy, x.shape, w, config).astype(x.dtype), fft_kernel_grad(dy, x, w.shape, config).astype(w.dtype)


def _strided_spectrum(dy, config, lengths, *, rotate=False):
    """Spectrum of the stride-dilated ``dy`` (``s − 1`` zeros between entries), grouped."""
    rank = dy.ndim - 2
    dy_strided = patches_lib.pad_spatial(dy, ((0, 0),) * rank, interior=[s - 1 for s in config.stride])
    spectrum = _spectrum(dy_strided, tuple(range(1, rank + 1)), lengths, rotate=rotate)
    return _grouped(spectrum, config.groups), dy_strided.shape[1:-1]


def fft_input_grad(dy, x_shape, w, config):
    """``x̄``, the first line of :func:`fft_backward`: ``ȳ_s ∗ w_d`` cropped to ``x``'s shape.

    Returns:
      ``(batch, *spatial, C_in)`` for ``x_shape = (batch, *spatial, C_in)``.
    """
    rank, groups = w.ndim - 2, config.groups
    lengths = padding_lib.padded_spatial(x_shape[1:-1], config.pairs)
    dy_hat, _ = _strided_spectrum(dy, config, lengths)
    w_hat = _kernel_grouped(_spectrum(dilate_kernel(w, config.dilation), tuple(range(rank)), lengths), groups)
    dx_hat = jnp.einsum("n...go,...igo->n...gi", dy_hat, w_hat)
    dx_hat = dx_hat.reshape(*dx_hat.shape[:-2], x_shape[-1])
    starts = [lo for lo, _ in config.pairs]
    return _inverse(dx_hat, tuple(range(1, rank + 1)), lengths, starts, x_shape[1:-1], (1,) * rank)


def fft_kernel_grad(dy, x, w_shape, config):
    """``w̄``, the second line of :func:`fft_backward`: ``x_pad ⋆ ȳ_s`` read at the taps ``t·d``.

    Returns:
      ``w_shape = (*window, C_in // groups, C_out)``.
    """
    rank = len(w_shape) - 2
    spatial_axes = tuple(range(1, rank + 1))
    x_padded = patches_lib.pad_spatial(x, config.pairs)
    lengths = x_padded.shape[1:-1]
    x_hat = _grouped(_spectrum(x_padded, spatial_axes, lengths), config.groups)
    dy_rotated_hat, strided = _strided_spectrum(dy, config, lengths, rotate=True)
    dw_hat = jnp.einsum("n...gi,n...go->...igo", x_hat, dy_rotated_hat)
    dw_hat = dw_hat.reshape(*dw_hat.shape[:-3], w_shape[-2], w_shape[-1])
    starts = [m - 1 for m in strided]
    return _inverse(dw_hat, tuple(range(rank)), lengths, starts, w_shape[:rank], config.dilation)
