"""PNG plots of a training run: learning curves and first-layer filters.

matplotlib is imported on first use, through its object-oriented API and the
Agg canvas only (no ``pyplot`` global state, no display needed).
"""

from __future__ import annotations

import math

import numpy as np

CURVES_FILE = "curves.png"
FILTERS_FILE = "filters.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_curves(records, path) -> None:
    """Loss and accuracy per epoch, train and test, side by side.

    Args:
      records: the run's metrics (``checkpoint.read_metrics``), each with
        ``epoch``, ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``.
      path: the PNG to write.
    """
    figure = _figure(10, 4)
    epochs = [r["epoch"] for r in records]
    for axis, metric, label in zip(figure.subplots(1, 2), ("loss", "accuracy"), ("cross-entropy", "accuracy")):
        for split, style in (("train", "o-"), ("test", "s-")):
            axis.plot(epochs, [r[f"{split}_{metric}"] for r in records], style, label=split, markersize=3)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.axes[0].set_yscale("log")
    figure.suptitle(f"best test accuracy {max(r['test_accuracy'] for r in records):.2%}")
    figure.tight_layout()
    figure.savefig(path)


def filter_tiles(w) -> np.ndarray:
    """A 2-D kernel ``(kh, kw, in_channels, out_channels)`` as ``out_channels`` image tiles.

    Each filter is scaled to [0, 1] on its own; one input channel gives grey
    tiles ``(out, kh, kw)``, three give RGB tiles ``(out, kh, kw, 3)``, any other
    count is averaged over the input channels.
    """
    w = np.asarray(w, np.float32)
    if w.ndim != 4:
        raise ValueError(f"w must be a 2-D kernel (kh, kw, in_channels, out_channels), got shape {w.shape}")
    tiles = np.moveaxis(w, -1, 0)
    tiles = tiles if tiles.shape[-1] == 3 else tiles.mean(axis=-1)
    low = tiles.min(axis=tuple(range(1, tiles.ndim)), keepdims=True)
    high = tiles.max(axis=tuple(range(1, tiles.ndim)), keepdims=True)
    return (tiles - low) / np.maximum(high - low, 1e-12)


def _columns(count: int) -> int:
    """A divisor of ``count`` between sqrt(count) and 2·sqrt(count) if any (32 → 8×4), else ceil(sqrt)."""
    root = math.sqrt(count)
    divisors = [d for d in range(math.ceil(root), int(2 * root) + 1) if count % d == 0]
    return divisors[0] if divisors else math.ceil(root)


def plot_filters(w, path, title: str = "first convolution layer") -> None:
    """The filters of a 2-D kernel ``(kh, kw, in_channels, out_channels)`` as an image grid."""
    tiles = filter_tiles(w)
    columns = _columns(len(tiles))
    rows = math.ceil(len(tiles) / columns)
    figure = _figure(1.1 * columns, 1.1 * rows + 0.4)
    for index, axis in enumerate(figure.subplots(rows, columns, squeeze=False).ravel()):
        axis.set_axis_off()
        if index < len(tiles):
            axis.imshow(tiles[index], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    figure.suptitle(f"{title}: {len(tiles)} filters {tiles.shape[1]}×{tiles.shape[2]}")
    figure.savefig(path)


def first_conv_kernel(params):
    """The ``w`` of the first layer with a 2-D kernel ``(kh, kw, in, out)``, or ``None``."""
    for layer_params in params:
        if isinstance(layer_params, dict) and np.ndim(layer_params.get("w")) == 4:
            return layer_params["w"]
    return None
