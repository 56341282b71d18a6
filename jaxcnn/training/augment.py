"""Random data augmentation for image batches, pure JAX (runs inside ``jit``).

Every function takes a PRNG ``key`` and images ``(batch, height, width,
channels)`` and returns a batch of the same shape and dtype, each image
transformed independently. Pixels that come from outside the image are 0 (the
MNIST background).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

AUGMENTS = ("none", "shift", "affine")


def check_augment(augment: str) -> str:
    """Validates an ``augment`` name: one of :data:`AUGMENTS`."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return augment


def random_shift(key, images, max_shift: int = 2):
    """Shifts each image by whole pixels, ``dx, dy`` uniform in ``[-max_shift, max_shift]``.

    Args:
      key: a PRNG key.
      images: ``(batch, height, width, channels)``.
      max_shift: largest shift in pixels, along each axis.

    Returns:
      ``(batch, height, width, channels)``: zero-padded by ``max_shift`` on every
      side, then cropped back at a random offset.
    """
    batch, height, width, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * max_shift + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def _sample(image, rows, cols):
    """Bilinear samples of ``image`` ``(H, W, C)`` at ``rows, cols`` ``(H, W)``; 0 outside."""
    return jax.vmap(
        lambda channel: ndimage.map_coordinates(channel, [rows, cols], order=1, mode="constant", cval=0.0),
        in_axes=-1, out_axes=-1,
    )(image)


def random_affine(key, images, *, max_shift: float = 2.0, max_rotation: float = 10.0, max_scale: float = 0.1):
    """A random rotation, scaling and translation per image (bilinear resampling).

    Output pixel ``p`` (relative to the image centre ``c``) reads the input at

    .. math::
       x = c + R(-\\theta) \\, (p - t) / s

    with :math:`\\theta \\sim U(\\pm \\text{max\\_rotation})` degrees,
    :math:`s \\sim U(1 \\pm \\text{max\\_scale})` and each component of
    :math:`t \\sim U(\\pm \\text{max\\_shift})` pixels.

    Args:
      key: a PRNG key.
      images: ``(batch, height, width, channels)``.

    Returns:
      ``(batch, height, width, channels)``.
    """
    batch, height, width, _ = images.shape
    angle_key, scale_key, shift_key = jax.random.split(key, 3)
    angles = jax.random.uniform(angle_key, (batch,), minval=-1.0, maxval=1.0) * math.radians(max_rotation)
    scales = 1.0 + jax.random.uniform(scale_key, (batch,), minval=-1.0, maxval=1.0) * max_scale
    shifts = jax.random.uniform(shift_key, (batch, 2), minval=-1.0, maxval=1.0) * max_shift
    centre = jnp.array([(height - 1) / 2, (width - 1) / 2], images.dtype)
    grid = jnp.stack(jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij"), axis=-1)
    grid = grid.astype(images.dtype) - centre

    def warp(image, angle, scale, shift):
        cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
        rel = grid - shift
        rows = centre[0] + cos * rel[..., 0] + sin * rel[..., 1]
        cols = centre[1] - sin * rel[..., 0] + cos * rel[..., 1]
        return _sample(image, rows, cols)

    return jax.vmap(warp)(images, angles, scales, shifts)


def augment_batch(augment: str, key, images):
    """Applies the augmentation named ``augment`` (:data:`AUGMENTS`) to ``images``."""
    if check_augment(augment) == "shift":
        return random_shift(key, images)
    if augment == "affine":
        return random_affine(key, images)
    return images
