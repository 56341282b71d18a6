"""Hand-made filters on real MNIST digits: conv → ReLU → max-pool, as in seed 004.

    python experiments/edge_detection.py --out runs/edges

Applies the vertical, horizontal and 45° edge filters and the sharpening filter
of :mod:`jaxcnn.lecture.kernels` to a few digits of the bundled MNIST sample and saves
one PNG grid (rows: each digit's conv, ReLU and pooled maps; columns: filters)
plus a JSON record of what was drawn.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import pathlib

import numpy as np

from jaxcnn.training import data
from jaxcnn.lecture.kernels import HAND_KERNELS, feature_stages, kernel_bank

STAGES = ("conv", "relu", "pool")
STAGE_TITLES = {"conv": "conv", "relu": "ReLU", "pool": "max-pool 2×2"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/edges", help="output directory")
    parser.add_argument("--digits", type=int, default=3, help="how many test digits to show")
    parser.add_argument("--dataset", default="mnist-sample")
    return parser.parse_args(argv)


def plot_stages(images, labels, kernel, stages, names, path):
    """Draws the grid and saves it as a PNG (matplotlib is imported here only, Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = 1 + len(STAGES) * len(images), 1 + len(names)
    fig = Figure(figsize=(1.6 * cols, 1.6 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].axis("off")
    for k, name in enumerate(names):
        taps = kernel[:, :, 0, k]
        axes[0, k + 1].imshow(taps, cmap="RdBu_r", vmin=-2, vmax=2)
        axes[0, k + 1].set_title(name, fontsize=8)
        for (i, j), value in np.ndenumerate(taps):
            color = "white" if abs(value) > 1.5 else "black"
            axes[0, k + 1].text(j, i, f"{value:g}", ha="center", va="center", fontsize=8, color=color)
    for d, (image, label) in enumerate(zip(images, labels)):
        for s, stage in enumerate(STAGES):
            row = 1 + len(STAGES) * d + s
            axes[row, 0].imshow(image[:, :, 0], cmap="gray")
            axes[row, 0].set_ylabel(f"digit {label}\n{STAGE_TITLES[stage]}", fontsize=8)
            for k in range(len(names)):
                maps = stages[stage][d, :, :, k]
                cmap = "RdBu_r" if stage == "conv" else "magma"
                limit = float(np.max(np.abs(maps))) or 1.0
                axes[row, k + 1].imshow(maps, cmap=cmap, vmin=-limit if stage == "conv" else 0, vmax=limit)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None):
    args = parse_args(argv)
    images, labels = data.load(args.dataset, "test")
    # one digit per class first, so the grid shows different shapes
    _, first = np.unique(labels, return_index=True)
    chosen = np.sort(first)[: args.digits]
    images, labels = images[chosen], labels[chosen]
    names = list(HAND_KERNELS)
    kernel = kernel_bank(names)
    stages = {key: np.asarray(value) for key, value in feature_stages(images, kernel).items()}

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "edge_detection.png"
    plot_stages(images, labels, np.asarray(kernel), stages, names, png)
    record = {
        "dataset": args.dataset, "indices": chosen.tolist(), "labels": labels.tolist(),
        "kernels": {name: HAND_KERNELS[name] for name in names},
        "shapes": {stage: list(stages[stage].shape) for stage in STAGES},
        "relu_active_fraction": {name: float(np.mean(stages["relu"][..., k] > 0)) for k, name in enumerate(names)},
    }
    (out / "edge_detection.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
