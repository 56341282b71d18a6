"""Hand-made 3×3 filters (docs/derivations.md#a-hand-made-kernel) and the conv → ReLU → max-pool stages.

Before a network learns its filters, some can be designed by hand: the
vertical edge detector ``[[1, 0, −1]]·3`` (its window sum
``3·1 + 1·1 + 2·1 + 0 + 0 + 0 − 1 − 8 − 2 = −5``), its transpose for horizontal
edges, a 45° edge and a sharpening/contrast filter.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from jaxcnn.ops.activations import relu
from jaxcnn.ops.convolution import conv
from jaxcnn.ops.pool import max_pool

HAND_KERNELS = {
    "vertical edge": [[1, 0, -1], [1, 0, -1], [1, 0, -1]],
    "horizontal edge": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "45° edge": [[0, 1, 1], [-1, 0, 1], [-1, -1, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}


def kernel_bank(names: Sequence[str] | None = None):
    """Stacks hand-made filters into one conv kernel.

    Args:
      names: keys of :data:`HAND_KERNELS`; all of them by default.

    Returns:
      ``(3, 3, 1, len(names))`` float32, one output channel per filter.
    """
    names = list(HAND_KERNELS) if names is None else list(names)
    unknown = [name for name in names if name not in HAND_KERNELS]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty list of {tuple(HAND_KERNELS)}, got {names!r}")
    stacked = np.stack([np.asarray(HAND_KERNELS[name], np.float32) for name in names], axis=-1)
    return jnp.asarray(stacked[:, :, None, :])


def feature_stages(images, kernel, *, padding="SAME", pool: int = 2) -> dict:
    """A CNN's stages in order: convolution, detector (ReLU), pooling.

    Args:
      images: ``(batch, height, width, 1)``.
      kernel: ``(3, 3, 1, K)``, e.g. from :func:`kernel_bank`.
      padding: the convolution's padding; pool: max-pool window and stride.

    Returns:
      ``{"conv": (batch, h, w, K), "relu": same, "pool": (batch, h // pool, w // pool, K)}``.
    """
    feature_maps = conv(images, kernel, padding=padding)
    detected = relu(feature_maps)
    return {"conv": feature_maps, "relu": detected, "pool": max_pool(detected, pool)}
