"""Sliding windows as plain arrays: the window-sum view of convolution.

A window op reads, for every output position ``p`` and window offset ``t``, the
padded input at ``p·s + t·d`` (docs/derivations.md#conv-forward: y(i) = Σ_k w(k)·x(i + k)). Gathering
those reads gives a *patches* array; scattering them back is its transpose.
Only padding, strided slicing, reshapes and sums are used here (no ``lax.conv*``),
so the explicit convolution and the pooling rules are built from this module.
"""

from __future__ import annotations

import itertools
from typing import Sequence, Tuple

import jax.numpy as jnp
from jax import lax

Pairs = Tuple[Tuple[int, int], ...]


def pad_spatial(x, pairs, interior: Sequence[int] | None = None, value=0.0):
    """Pads (negative amounts crop) and dilates the spatial axes of ``x``.

    Args:
      x: ``(batch, *spatial, channels)``.
      pairs: one ``(lo, hi)`` per spatial axis; negative values remove entries.
      interior: zeros inserted between neighbouring entries (stride dilation
        ``s − 1``); default none.
      value: the fill value (``-inf`` for max pooling).

    Returns:
      ``(batch, *spatial', channels)`` with ``n' = lo + hi + n + (n − 1)·interior``.
    """
    interior = interior or (0,) * len(pairs)
    config = [(0, 0, 0)] + [(lo, hi, i) for (lo, hi), i in zip(pairs, interior)] + [(0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def window_offsets(window: Sequence[int]):
    """Window offsets ``t`` in row-major order (the order ``jax.grad`` ties follow)."""
    return list(itertools.product(*(range(f) for f in window)))


def _strided_slice(x_padded, offset, out, stride, dilation):
    starts = [0] + [t * d for t, d in zip(offset, dilation)] + [0]
    limits = (
        [x_padded.shape[0]]
        + [t * d + (m - 1) * s + 1 for t, d, m, s in zip(offset, dilation, out, stride)]
        + [x_padded.shape[-1]]
    )
    return lax.slice(x_padded, starts, limits, [1, *stride, 1])


def window_slices(x_padded, window, out, stride, dilation):
    """One strided slice per window offset: ``V_k[n, p, c] = x_pad[n, p·s + t_k·d, c]``.

    The unstacked form of :func:`extract_patches` (a list of ``prod(window)``
    arrays of shape ``(batch, *out, channels)``, offsets in row-major order), for
    consumers that combine the offsets elementwise or one matmul at a time and
    so never need the stacked copy.
    """
    return [_strided_slice(x_padded, t, out, stride, dilation) for t in window_offsets(window)]


def extract_patches(x_padded, window, out, stride, dilation):
    """Gathers every window of an already padded input.

    .. math::
       P[n, p, k, c] = x_{pad}[n, p·s + t_k·d, c]

    Args:
      x_padded: ``(batch, *padded_spatial, channels)``.
      window, out, stride, dilation: per-dimension ints (``out`` from
        :func:`jaxcnn.ops.padding.output_spatial`).

    Returns:
      ``(batch, *out, prod(window), channels)``, offsets in row-major order.
    """
    return jnp.stack(window_slices(x_padded, window, out, stride, dilation), axis=-2)


def fold_patches(patches, padded_spatial, window, stride, dilation):
    """Transpose of :func:`extract_patches`: scatter-adds windows back in place.

    .. math::
       x̄_{pad}[n, p·s + t_k·d, c] \\mathrel{+}= P̄[n, p, k, c]

    Each offset's slab is dilated by the stride and shifted by ``t·d`` with one
    pad, then the slabs are summed.

    Args:
      patches: ``(batch, *out, prod(window), channels)``.
      padded_spatial: spatial shape of the padded input the patches came from.

    Returns:
      ``(batch, *padded_spatial, channels)``.
    """
    out = patches.shape[1:-2]
    total = None
    for k, offset in enumerate(window_offsets(window)):
        pairs = []
        for t, d, m, s, n in zip(offset, dilation, out, stride, padded_spatial):
            lo = t * d
            pairs.append((lo, n - lo - ((m - 1) * s + 1)))
        slab = pad_spatial(patches[..., k, :], pairs, interior=[s - 1 for s in stride])
        total = slab if total is None else total + slab
    return total


def map_batch_chunks(fn, chunk: int, *arrays):
    """``fn`` on consecutive batch chunks of ``arrays`` (zero-padded to whole chunks), stacked.

    A ``lax.map``: one chunk's temporaries (its patches, its Winograd tiles) stay in
    cache between the ops that make and use them, where the whole batch's would not.

    Returns:
      ``fn``'s outputs with a leading chunk axis, ``(⌈batch / chunk⌉, ...)``.
    """
    batch = arrays[0].shape[0]
    if chunk >= batch:
        return fn(*arrays)[None]
    count = -(-batch // chunk)
    pad = lambda a: jnp.pad(a, [(0, count * chunk - batch)] + [(0, 0)] * (a.ndim - 1))
    chunks = [pad(a).reshape(count, chunk, *a.shape[1:]) for a in arrays]
    return lax.map(lambda parts: fn(*parts), chunks)
