"""Batch, layer and group normalisation, each with its hand-derived backward beside it.

Layout is channels-last: ``x`` is ``(batch, *spatial, channels)`` (rank >= 2; no spatial axes is
a dense activation), ``scale`` and ``offset`` are ``(channels,)``. Every norm computes, over its
set :math:`S` of :math:`m` elements sharing one statistic (biased variance, as PyTorch's
training mode normalises),

.. math::
   \\mu = \\tfrac1m \\sum_{S} x, \\quad \\sigma^2 = \\tfrac1m \\sum_{S} (x - \\mu)^2, \\quad
   \\hat{x} = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad y = \\gamma \\hat{x} + \\beta

with :math:`\\gamma` = ``scale`` and :math:`\\beta` = ``offset`` per channel. The sets differ:
batch norm — every axis but the channels (one statistic per channel); layer norm — the channel
axis (one per position); group norm — the spatial axes and one group of ``channels // groups``
channels (one per example and group, PyTorch ``GroupNorm``).

The backward, for all three, follows the chain through :math:`\\hat{x}`, :math:`\\sigma^2` and
:math:`\\mu`. With :math:`g = \\gamma \\bar{y}` and :math:`s = \\sqrt{\\sigma^2 + \\epsilon}`:

.. math::
   \\frac{\\partial L}{\\partial \\sigma^2} = -\\frac{1}{2 s^3} \\sum_S g\\,(x - \\mu), \\qquad
   \\frac{\\partial L}{\\partial \\mu} = -\\frac1s \\sum_S g
       + \\frac{\\partial L}{\\partial \\sigma^2} \\cdot \\frac{-2}{m} \\sum_S (x - \\mu)
       = -\\frac1s \\sum_S g

(the last sum is zero), and :math:`\\partial \\sigma^2 / \\partial x = 2(x - \\mu)/m`,
:math:`\\partial \\mu / \\partial x = 1/m`, so

.. math::
   \\bar{x} = \\frac{g}{s} + \\frac{\\partial L}{\\partial \\sigma^2} \\frac{2 (x - \\mu)}{m}
       + \\frac{\\partial L}{\\partial \\mu} \\frac1m
     = \\frac{1}{s\\,m} \\Big(m\\, g - \\sum_S g - \\hat{x} \\sum_S g\\, \\hat{x}\\Big),
   \\qquad \\bar{\\gamma} = \\sum \\bar{y}\\, \\hat{x}, \\quad \\bar{\\beta} = \\sum \\bar{y}

with :math:`\\bar{\\gamma}, \\bar{\\beta}` summed over every axis but the channels.
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp

from jaxcnn.ops.hand_rule import declare

__all__ = [
    "batch_moments", "batch_norm", "batch_norm_backward", "batch_norm_inference", "batch_norm_inference_backward",
    "layer_norm", "layer_norm_backward", "group_norm", "group_norm_backward",
]

# ------------------------------------------------------------------ validation


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
        raise ValueError(f"eps must be a finite real number > 0, got {eps!r}")
    return float(eps)


def _check_input(x):
    if jnp.ndim(x) < 2:
        raise ValueError(f"x must have shape (batch, *spatial, channels) with rank >= 2, got shape {jnp.shape(x)}")


def _check_per_channel(x, **arrays):
    channels = jnp.shape(x)[-1]
    for name, array in arrays.items():
        if tuple(jnp.shape(array)) != (channels,):
            raise ValueError(
                f"{name} must have shape (channels,) = ({channels},) for x of shape {jnp.shape(x)}, "
                f"got shape {jnp.shape(array)}"
            )


def _check_groups(x, groups):
    channels = jnp.shape(x)[-1]
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1 or channels % groups:
        raise ValueError(
            f"groups must be a positive integer dividing channels={channels}, got {groups!r}"
        )
    return int(groups)


def _check(x, scale, offset, eps):
    _check_input(x)
    _check_per_channel(x, scale=scale, offset=offset)
    return _check_eps(eps)


# ------------------------------------------------------------ the shared math


def _moments(x, axes):
    """Mean and biased variance over ``axes`` (kept), two-pass."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)


def _normalize(x, axes, eps):
    """``(x̂, 1/s)`` with statistics over ``axes``."""
    mean, var = _moments(x, axes)
    inv_std = 1 / jnp.sqrt(var + eps)
    return (x - mean) * inv_std, inv_std


def _normalized_backward(g, x_hat, inv_std, axes):
    """:math:`\\frac1s (g - \\overline{g} - \\hat{x}\\, \\overline{g \\hat{x}})`, means over ``axes``.

    The compact form :math:`\\frac{1}{s m}(m g - \\sum g - \\hat{x} \\sum g \\hat{x})` of the
    module's derivation, for :math:`g = \\gamma \\bar{y}`.
    """
    mean_g = jnp.mean(g, axis=axes, keepdims=True)
    mean_gx = jnp.mean(g * x_hat, axis=axes, keepdims=True)
    return inv_std * (g - mean_g - x_hat * mean_gx)


def _affine_grads(dy, x_hat):
    """``(dscale, doffset)``: :math:`\\sum \\bar{y} \\hat{x}` and :math:`\\sum \\bar{y}` over all but channels."""
    axes = tuple(range(dy.ndim - 1))
    return jnp.sum(dy * x_hat, axis=axes), jnp.sum(dy, axis=axes)


def _batch_axes(x):
    return tuple(range(jnp.ndim(x) - 1))


# ------------------------------------------------------------------ batch norm


def batch_moments(x):
    """Batch mean and biased variance per channel, over every axis but the last.

    What :func:`batch_norm` normalises with; the BatchNorm layer folds them into its running
    statistics.

    Args:
      x: ``(batch, *spatial, channels)``.

    Returns:
      ``(mean, var)``, each ``(channels,)``.
    """
    _check_input(x)
    mean, var = _moments(x, _batch_axes(x))
    return mean.reshape(-1), var.reshape(-1)


def _batch_norm(x, scale, offset, *, eps):
    x_hat, _ = _normalize(x, _batch_axes(x), eps)
    return x_hat * scale + offset


def batch_norm_backward(dy, x, scale, offset, *, eps=1e-5):
    """Hand rule of :func:`batch_norm` (training mode: the batch's own statistics).

    With :math:`m` = batch × spatial positions and :math:`s = \\sqrt{\\sigma^2 + \\epsilon}`
    per channel (the module docstring derives it through :math:`\\partial \\mu / \\partial x`
    and :math:`\\partial \\sigma^2 / \\partial x`):

    .. math::
       \\bar{x} = \\frac{\\gamma / s}{m} \\Big(m\\, \\bar{y} - \\sum \\bar{y}
           - \\hat{x} \\sum \\bar{y}\\, \\hat{x}\\Big), \\quad
       \\bar{\\gamma} = \\sum \\bar{y}\\, \\hat{x}, \\quad \\bar{\\beta} = \\sum \\bar{y}

    Args:
      dy, x: ``(batch, *spatial, channels)``; scale, offset: ``(channels,)``; eps: as the forward.

    Returns:
      ``(dx, dscale, doffset)`` shaped like ``x``, ``(channels,)``, ``(channels,)``.
    """
    del offset
    axes = _batch_axes(x)
    x_hat, inv_std = _normalize(x, axes, eps)
    dx = _normalized_backward(dy * scale, x_hat, inv_std, axes)
    return (dx, *_affine_grads(dy, x_hat))


@declare(_batch_norm, batch_norm_backward)
def batch_norm(x, scale, offset, *, eps=1e-5):
    """Batch normalisation with the batch's statistics (training mode), channels-last.

    :math:`y = \\gamma (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon} + \\beta`, with :math:`\\mu` and the
    biased :math:`\\sigma^2` per channel over every other axis (:func:`batch_moments`).

    Args:
      x: ``(batch, *spatial, channels)``, rank >= 2.
      scale, offset: ``(channels,)``.
      eps: a real number > 0 added to the variance.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`batch_norm_backward` as the VJP).

    Returns:
      ``y`` shaped like ``x``.
    """
    return (x, scale, offset), {"eps": _check(x, scale, offset, eps)}


def _batch_norm_inference(x, mean, var, scale, offset, *, eps):
    return (x - mean) * (scale / jnp.sqrt(var + eps)) + offset


def batch_norm_inference_backward(dy, x, mean, var, scale, offset, *, eps=1e-5):
    """Hand rule of :func:`batch_norm_inference`: an affine map per channel.

    With :math:`s = \\sqrt{v + \\epsilon}` and sums over every axis but the channels:

    .. math::
       \\bar{x} = \\frac{\\gamma}{s} \\bar{y}, \\quad
       \\bar{\\mu} = -\\frac{\\gamma}{s} \\sum \\bar{y}, \\quad
       \\bar{v} = -\\frac{\\gamma}{2 s^3} \\sum \\bar{y} (x - \\mu), \\quad
       \\bar{\\gamma} = \\frac1s \\sum \\bar{y} (x - \\mu), \\quad \\bar{\\beta} = \\sum \\bar{y}

    Args:
      dy, x: ``(batch, *spatial, channels)``; mean, var, scale, offset: ``(channels,)``.

    Returns:
      ``(dx, dmean, dvar, dscale, doffset)`` shaped like ``x`` and four ``(channels,)``.
    """
    del offset
    axes = _batch_axes(x)
    inv_std = 1 / jnp.sqrt(var + eps)
    centred = x - mean
    sum_dy = jnp.sum(dy, axis=axes)
    sum_dy_centred = jnp.sum(dy * centred, axis=axes)
    return (
        dy * (scale * inv_std),
        -scale * inv_std * sum_dy,
        -0.5 * scale * inv_std**3 * sum_dy_centred,
        inv_std * sum_dy_centred,
        sum_dy,
    )


@declare(_batch_norm_inference, batch_norm_inference_backward)
def batch_norm_inference(x, mean, var, scale, offset, *, eps=1e-5):
    """Batch normalisation in evaluation mode: given (running) statistics, an affine map.

    :math:`y = \\gamma (x - \\mu) / \\sqrt{v + \\epsilon} + \\beta` per channel.

    Args:
      x: ``(batch, *spatial, channels)``, rank >= 2.
      mean, var: ``(channels,)``, the statistics (e.g. the running ones).
      scale, offset: ``(channels,)``.
      eps: a real number > 0 added to the variance.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`batch_norm_inference_backward` as the VJP).

    Returns:
      ``y`` shaped like ``x``.
    """
    eps = _check(x, scale, offset, eps)
    _check_per_channel(x, mean=mean, var=var)
    return (x, mean, var, scale, offset), {"eps": eps}


# ------------------------------------------------------------------ layer norm


def _layer_norm(x, scale, offset, *, eps):
    x_hat, _ = _normalize(x, (-1,), eps)
    return x_hat * scale + offset


def layer_norm_backward(dy, x, scale, offset, *, eps=1e-5):
    """Hand rule of :func:`layer_norm`; sums run over the channel axis (:math:`m` = channels).

    .. math::
       g = \\gamma \\bar{y}, \\quad
       \\bar{x} = \\frac{1}{s\\, m} \\Big(m\\, g - \\sum_c g - \\hat{x} \\sum_c g\\, \\hat{x}\\Big), \\quad
       \\bar{\\gamma} = \\sum_{\\text{positions}} \\bar{y}\\, \\hat{x}, \\quad
       \\bar{\\beta} = \\sum_{\\text{positions}} \\bar{y}

    (:math:`\\gamma` varies along the normalised axis, so it stays inside the sums.)

    Args:
      dy, x: ``(batch, *spatial, channels)``; scale, offset: ``(channels,)``.

    Returns:
      ``(dx, dscale, doffset)`` shaped like ``x``, ``(channels,)``, ``(channels,)``.
    """
    del offset
    x_hat, inv_std = _normalize(x, (-1,), eps)
    dx = _normalized_backward(dy * scale, x_hat, inv_std, (-1,))
    return (dx, *_affine_grads(dy, x_hat))


@declare(_layer_norm, layer_norm_backward)
def layer_norm(x, scale, offset, *, eps=1e-5):
    """Layer normalisation over the channel (last) axis, one statistic per position.

    As ``torch.nn.functional.layer_norm(x, (channels,), scale, offset, eps)``.

    Args:
      x: ``(batch, *spatial, channels)``, rank >= 2.
      scale, offset: ``(channels,)``.
      eps: a real number > 0 added to the variance.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`layer_norm_backward` as the VJP).

    Returns:
      ``y`` shaped like ``x``.
    """
    return (x, scale, offset), {"eps": _check(x, scale, offset, eps)}


# ------------------------------------------------------------------ group norm


def _grouped(x, groups):
    """``x`` as ``(batch, *spatial, groups, channels // groups)`` and the axes of one statistic."""
    grouped = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
    return grouped, tuple(range(1, x.ndim - 1)) + (x.ndim,)


def _group_norm(x, scale, offset, *, groups, eps):
    grouped, axes = _grouped(x, groups)
    x_hat, _ = _normalize(grouped, axes, eps)
    return x_hat.reshape(x.shape) * scale + offset


def group_norm_backward(dy, x, scale, offset, *, groups, eps=1e-5):
    """Hand rule of :func:`group_norm`; sums run over one example's spatial positions and the
    ``channels // groups`` channels of one group (:math:`m` = spatial size × channels / groups).

    .. math::
       g = \\gamma \\bar{y}, \\quad
       \\bar{x} = \\frac{1}{s\\, m} \\Big(m\\, g - \\sum_{\\text{group}} g
           - \\hat{x} \\sum_{\\text{group}} g\\, \\hat{x}\\Big), \\quad
       \\bar{\\gamma} = \\sum \\bar{y}\\, \\hat{x}, \\quad \\bar{\\beta} = \\sum \\bar{y}

    Args:
      dy, x: ``(batch, *spatial, channels)``; scale, offset: ``(channels,)``; groups: as the forward.

    Returns:
      ``(dx, dscale, doffset)`` shaped like ``x``, ``(channels,)``, ``(channels,)``.
    """
    del offset
    grouped, axes = _grouped(x, groups)
    x_hat, inv_std = _normalize(grouped, axes, eps)
    g, _ = _grouped(dy * scale, groups)
    dx = _normalized_backward(g, x_hat, inv_std, axes).reshape(x.shape)
    return (dx, *_affine_grads(dy, x_hat.reshape(x.shape)))


@declare(_group_norm, group_norm_backward)
def group_norm(x, scale, offset, *, groups, eps=1e-5):
    """Group normalisation: per example, over the spatial axes and each group of channels.

    As ``torch.nn.functional.group_norm`` on the channels-first transpose: the channels split
    into ``groups`` consecutive groups of ``channels // groups``; ``groups=1`` normalises each
    example as a whole, ``groups=channels`` is instance normalisation.

    Args:
      x: ``(batch, *spatial, channels)``, rank >= 2.
      scale, offset: ``(channels,)``.
      groups: a positive integer dividing ``channels``.
      eps: a real number > 0 added to the variance.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`group_norm_backward` as the VJP).

    Returns:
      ``y`` shaped like ``x``.
    """
    eps = _check(x, scale, offset, eps)
    return (x, scale, offset), {"groups": _check_groups(x, groups), "eps": eps}
