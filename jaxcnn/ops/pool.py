"""Max and average pooling, each with its hand-derived backward beside it.

Layout is channels-last: ``x`` is ``(batch, *spatial, channels)`` with one, two
or three spatial dimensions; pooling acts on each channel separately and has no
parameters (docs/derivations.md#max-pooling: window f = 2 and
stride s = 2 are hyperparameters, nothing is learned). ``stride=None`` means
stride = window, e.g. 2×2 stride 2. ``padding`` takes every form of
:func:`jaxcnn.ops.padding.normalize_padding`; max pooling pads with ``-inf`` and
average pooling with zeros.

Each op has ``grad="autodiff"`` (``lax.reduce_window``, differentiated by JAX)
and ``grad="manual"`` (the same forward whose VJP is ``<op>_backward``, written
with the explicit window machinery of :mod:`jaxcnn.patches`).

Non-overlapping windows (``stride == window``, no padding: e.g. 2×2
stride 2) take a fast path in both modes: the ``∏f`` window elements are
``∏f`` strided slices of ``x`` (:func:`jaxcnn.ops.patches.window_slices`), combined
elementwise, so XLA fuses the whole pool and its gradient into a few loops
instead of ``reduce_window`` and, under autodiff, ``select_and_scatter_add``.
Max pooling there selects the first maximal slice explicitly, so autodiff of
the fast forward routes each cotangent to the first maximum exactly as
autodiff of ``reduce_window`` does (the tie rule below).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops import patches
from jaxcnn.ops import padding as padding_lib

__all__ = [
    "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "global_avg_pool", "global_avg_pool_backward",
]

SPATIAL_RANKS = (1, 2, 3)


class PoolConfig(NamedTuple):
    """Normalised pooling arguments; ``out`` comes from ``padding.output_spatial``."""

    window: Tuple[int, ...]
    stride: Tuple[int, ...]
    pairs: padding_lib.Pairs
    out: Tuple[int, ...]

    @property
    def dilation(self) -> Tuple[int, ...]:
        return (1,) * len(self.window)


def _check_input(x) -> None:
    if jnp.ndim(x) - 2 not in SPATIAL_RANKS:
        raise ValueError(
            "x must have shape (batch, *spatial, channels) with 1, 2 or 3 spatial "
            f"dimensions (rank 3, 4 or 5), got shape {jnp.shape(x)}"
        )


def pool_config(x, window, stride=None, padding="VALID") -> PoolConfig:
    """Validates and normalises the arguments shared by every pooling function.

    Args:
      x: ``(batch, *spatial, channels)``.
      window: an int or one int per spatial dimension.
      stride: like ``window``; ``None`` means ``stride = window``.
      padding: any form accepted by :func:`jaxcnn.ops.padding.normalize_padding`.

    Raises:
      ValueError, TypeError: a bad argument, named in the message.
    """
    _check_input(x)
    spatial = jnp.shape(x)[1:-1]
    rank = len(spatial)
    window = padding_lib.normalize_tuple(window, rank, "window")
    stride = window if stride is None else padding_lib.normalize_tuple(stride, rank, "stride")
    dilation = (1,) * rank
    pairs = padding_lib.normalize_padding(padding, spatial, window, stride, dilation)
    out = padding_lib.output_spatial(spatial, window, pairs, stride, dilation)
    return PoolConfig(window, stride, pairs, out)


def _check_count_include_pad(count_include_pad) -> None:
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"count_include_pad must be True or False, got {count_include_pad!r}")


def _check_cotangent(dy, x, config: PoolConfig) -> None:
    expected = (jnp.shape(x)[0], *config.out, jnp.shape(x)[-1])
    if jnp.shape(dy) != expected:
        raise ValueError(f"dy must have the output shape {expected}, got shape {jnp.shape(dy)}")


def _reduce(x, init, reducer, config: PoolConfig):
    """``lax.reduce_window`` over the spatial axes with the normalised config.

    ``init`` stays a concrete NumPy scalar (never a traced value) so that
    ``reduce_window`` recognises the max/add monoid, which is what makes it
    differentiable under ``jit``.
    """
    return lax.reduce_window(
        x,
        np.asarray(init, x.dtype),
        reducer,
        (1, *config.window, 1),
        (1, *config.stride, 1),
        ((0, 0), *config.pairs, (0, 0)),
    )


def _is_tiling(config: PoolConfig) -> bool:
    """Whether the windows tile the input: ``stride == window`` and no padding."""
    return config.window == config.stride and all(pair == (0, 0) for pair in config.pairs)


def _tile_slices(x, config: PoolConfig):
    """The window elements of a tiling, one ``(batch, *out, channels)`` slice each.

    ``V_k[n, p, c] = x[n, p·f + t_k, c]`` (row-major offsets ``t_k``); rows past
    the last whole window are never read.
    """
    return patches.window_slices(x, config.window, config.out, config.stride, config.dilation)


def _first_max_picks(slices):
    """One boolean mask per slice: whether it holds the window's first maximum.

    .. math::
       \\mathrm{pick}_k = [V_k = \\max_j V_j] \\wedge \\neg \\bigvee_{j < k} \\mathrm{pick}_j
    """
    largest = slices[0]
    for value in slices[1:]:
        largest = jnp.maximum(largest, value)
    taken, picks = None, []
    for value in slices:
        pick = value == largest if taken is None else (value == largest) & ~taken
        picks.append(pick)
        taken = pick if taken is None else taken | pick
    return picks


def _untile(slabs, x, config: PoolConfig):
    """Transpose of :func:`_tile_slices`: interleaves one ``(batch, *out, channels)`` slab
    per window offset back into ``x``'s shape (the windows do not overlap, so no sums).

    .. math::
       \\bar{x}[n, p·f + t_k, c] = S_k[n, p, c], \\quad 0 \\text{ past the last whole window}
    """
    rank, window, out = len(config.window), config.window, config.out
    grid = jnp.stack(slabs, axis=-2).reshape(x.shape[0], *out, *window, x.shape[-1])
    order = [0, *(a for i in range(rank) for a in (1 + i, 1 + rank + i)), 1 + 2 * rank]
    tiled = jnp.transpose(grid, order).reshape(x.shape[0], *(o * f for o, f in zip(out, window)), x.shape[-1])
    leftover = [(0, n - o * f) for n, o, f in zip(x.shape[1:-1], out, window)]
    return patches.pad_spatial(tiled, leftover)


def _fold_and_crop(dpatches, x, config: PoolConfig):
    """Scatter-adds window cotangents onto the padded input, then drops the padding."""
    dx_padded = patches.fold_patches(
        dpatches, padding_lib.padded_spatial(x.shape[1:-1], config.pairs), config.window, config.stride, config.dilation
    )
    return patches.pad_spatial(dx_padded, [(-lo, -hi) for lo, hi in config.pairs])


# --------------------------------------------------------------------------- max


def _tiled_max(x, config: PoolConfig):
    """``y = V_{k*}``, the first maximal slice, as a chain of selects.

    Autodiff of a select sends ``ȳ`` only to the chosen branch, so ``jax.grad``
    of this forward routes each window's cotangent to its first maximum.
    """
    slices = _tile_slices(x, config)
    picks = _first_max_picks(slices)
    y = slices[-1]
    for value, pick in zip(slices[-2::-1], picks[-2::-1]):
        y = jnp.where(pick, value, y)
    return y


def _max_pool_forward(x, *, config: PoolConfig):
    if _is_tiling(config):
        return _tiled_max(x, config)
    return _reduce(x, -jnp.inf, lax.max, config)


def max_pool_backward(dy, x, window, stride=None, padding="VALID"):
    """Hand-derived VJP of :func:`max_pool`.

    Derived in docs/derivations.md#max-pooling: each window's cotangent goes to its maximum.

    Each window's cotangent is routed to exactly one element: the first maximal
    element of the ``-inf``-padded window in row-major window order, the element
    ``jax.grad`` of ``lax.reduce_window``-max selects (ties, e.g. windows of
    zeros after a ReLU, go to the earliest offset; a window whose maximum lies
    in the padding sends its cotangent nowhere).

    .. math::
       k^*(n, p, c) = \\min \\operatorname*{arg\\,max}_k P[n, p, k, c], \\qquad
       \\bar{x}_{pad}[n, p·s + t_k, c] \\mathrel{+}= [k = k^*(n, p, c)]\\; \\bar{y}[n, p, c]

    where ``P`` are the windows of the padded input
    (:func:`jaxcnn.ops.patches.extract_patches`); ``x̄`` is ``x̄_pad`` with the
    padding cropped off.

    Args:
      dy: ``(batch, *out, channels)``, the cotangent of ``max_pool(x, ...)``.
      x: ``(batch, *spatial, channels)``, the forward input.
      window, stride, padding: as in :func:`max_pool`.

    Returns:
      ``dx`` of shape ``(batch, *spatial, channels)``.
    """
    config = pool_config(x, window, stride, padding)
    _check_cotangent(dy, x, config)
    return _max_pool_backward(dy, x, config=config)[0]


def _max_pool_backward(dy, x, *, config: PoolConfig):
    if _is_tiling(config):
        picks = _first_max_picks(_tile_slices(x, config))
        return (_untile([jnp.where(pick, dy, jnp.zeros_like(dy)) for pick in picks], x, config),)
    x_padded = patches.pad_spatial(x, config.pairs, value=-jnp.inf)
    windows = patches.extract_patches(
        x_padded, config.window, config.out, config.stride, config.dilation
    )
    first_max = jnp.argmax(windows, axis=-2)
    chosen = jnp.arange(windows.shape[-2])[:, None] == first_max[..., None, :]
    return (_fold_and_crop(jnp.where(chosen, dy[..., None, :], 0), x, config),)


@manual.declare(_max_pool_forward, _max_pool_backward)
def max_pool(x, window, stride=None, padding="VALID"):
    """Max pooling over the spatial axes of a channels-last input.

    Example (docs/derivations.md#max-pooling): 2×2 stride 2 of ``[[1,3,2,1],[2,9,1,1],[1,3,2,3],[5,6,1,2]]``
    is ``[[9,2],[6,3]]``.

    .. math::
       y[n, p, c] = \\max_k x_{pad}[n, p·s + t_k, c], \\qquad x_{pad} = x
       \\text{ padded with } -\\infty

    Args:
      x: ``(batch, *spatial, channels)``, floating point, 1 to 3 spatial dims.
      window: an int or one int per spatial dimension.
      stride: like ``window``; ``None`` (default) means ``stride = window``.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or one ``(lo, hi)``
        pair per spatial dimension.
      grad: ``"autodiff"`` (JAX differentiates ``lax.reduce_window``) or
        ``"manual"`` (the VJP is :func:`max_pool_backward`).

    Returns:
      ``(batch, *out, channels)`` with ``out`` from :func:`jaxcnn.ops.padding.output_spatial`.
    """
    return (x,), {"config": pool_config(x, window, stride, padding)}


# --------------------------------------------------------------------------- average


def _divisor(x, config: PoolConfig, count_include_pad: bool):
    """``prod(window)``, or per window the number of non-padding elements.

    The count is the sum-pool of a ones array shaped like one example and
    channel, so it comes out as ``(1, *out, 1)`` and broadcasts against ``y``.
    It is at least 1: a window lying wholly in the padding averages to 0.
    """
    if count_include_pad:
        return math.prod(config.window)
    ones = jnp.ones((1, *jnp.shape(x)[1:-1], 1), x.dtype)
    return jnp.maximum(_reduce(ones, 0, lax.add, config), 1)


def _avg_pool_forward(x, *, config: PoolConfig, count_include_pad: bool):
    if _is_tiling(config):  # no padding: both divisors are prod(window)
        slices = _tile_slices(x, config)
        total = slices[0]
        for value in slices[1:]:
            total = total + value
        return total / math.prod(config.window)
    return _reduce(x, 0, lax.add, config) / _divisor(x, config, count_include_pad)


def avg_pool_backward(dy, x, window, stride=None, padding="VALID", count_include_pad=True):
    """Hand-derived VJP of :func:`avg_pool`.

    Derived in docs/derivations.md#average-pooling: each window's cotangent is shared evenly.

    Every element of a window receives the window's cotangent divided by the
    window's divisor; overlapping windows add up.

    .. math::
       \\bar{x}_{pad}[n, p·s + t_k, c] \\mathrel{+}= \\frac{\\bar{y}[n, p, c]}{D(p)},
       \\qquad k = 1, \\dots, \\textstyle\\prod_i f_i

    with ``D(p) = ∏ f_i`` when ``count_include_pad`` and otherwise the number
    of non-padding elements in window ``p`` (at least 1); ``x̄`` is ``x̄_pad``
    with the padding cropped off (:func:`jaxcnn.ops.patches.fold_patches`).

    Args:
      dy: ``(batch, *out, channels)``, the cotangent of ``avg_pool(x, ...)``.
      x: ``(batch, *spatial, channels)``, the forward input (only its shape is used).
      window, stride, padding, count_include_pad: as in :func:`avg_pool`.

    Returns:
      ``dx`` of shape ``(batch, *spatial, channels)``.
    """
    config = pool_config(x, window, stride, padding)
    _check_count_include_pad(count_include_pad)
    _check_cotangent(dy, x, config)
    return _avg_pool_backward(dy, x, config=config, count_include_pad=count_include_pad)[0]


def _avg_pool_backward(dy, x, *, config: PoolConfig, count_include_pad: bool):
    share = dy / _divisor(x, config, count_include_pad)
    if _is_tiling(config):
        return (_untile([share] * math.prod(config.window), x, config),)
    windows = jnp.broadcast_to(
        share[..., None, :], (*share.shape[:-1], math.prod(config.window), share.shape[-1])
    )
    return (_fold_and_crop(windows, x, config),)


@manual.declare(_avg_pool_forward, _avg_pool_backward)
def avg_pool(x, window, stride=None, padding="VALID", count_include_pad=True):
    """Average pooling over the spatial axes of a channels-last input.

    docs/derivations.md#average-pooling: the 4×4 example there gives
    ``[[3.75, 1.25], [3.75, 2]]`` with 2×2 stride 2.

    .. math::
       y[n, p, c] = \\frac{1}{D(p)} \\sum_k x_{pad}[n, p·s + t_k, c]

    with ``D(p) = ∏ f_i`` when ``count_include_pad`` (padding counts as zeros)
    and otherwise the number of non-padding elements in window ``p`` (at least
    1, so a window lying wholly in the padding gives 0).

    Args:
      x: ``(batch, *spatial, channels)``, floating point, 1 to 3 spatial dims.
      window: an int or one int per spatial dimension.
      stride: like ``window``; ``None`` (default) means ``stride = window``.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or one ``(lo, hi)``
        pair per spatial dimension.
      count_include_pad: whether padded positions count in the divisor.
      grad: ``"autodiff"`` or ``"manual"`` (the VJP is :func:`avg_pool_backward`).

    Returns:
      ``(batch, *out, channels)`` with ``out`` from :func:`jaxcnn.ops.padding.output_spatial`.
    """
    config = pool_config(x, window, stride, padding)
    _check_count_include_pad(count_include_pad)
    return (x,), {"config": config, "count_include_pad": count_include_pad}


# ---------------------------------------------------------------------- global average


def _global_avg_pool(x):
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def global_avg_pool_backward(dy, x):
    """Hand rule of :func:`global_avg_pool`: each position receives an equal share.

    .. math::
       \\bar{x}[n, p, c] = \\frac{\\bar{y}[n, c]}{P}, \\qquad P = \\textstyle\\prod_i n_i

    Args:
      dy: ``(batch, channels)``; x: ``(batch, *spatial, channels)`` (only its shape is used).

    Returns:
      ``dx`` of shape ``(batch, *spatial, channels)``.
    """
    spatial = jnp.shape(x)[1:-1]
    share = dy / math.prod(spatial)
    return jnp.broadcast_to(share.reshape(share.shape[0], *(1,) * len(spatial), share.shape[-1]), jnp.shape(x))


@manual.declare(_global_avg_pool, global_avg_pool_backward)
def global_avg_pool(x):
    """Global average pooling: the mean over every spatial position, one value per channel.

    .. math::
       y[n, c] = \\frac1P \\sum_p x[n, p, c], \\qquad P = \\textstyle\\prod_i n_i

    Args:
      x: ``(batch, *spatial, channels)``, 1 to 3 spatial dims.
      grad: ``"autodiff"`` or ``"manual"`` (the VJP is :func:`global_avg_pool_backward`).

    Returns:
      ``(batch, channels)``.
    """
    _check_input(x)
    return (x,), {}
