"""Every view of one convolution on the same inputs: agreement, timings, the notes' numbers.

    python experiments/conv_views.py --out runs/conv_views

Runs ``impl="lax"``, ``"explicit"``, ``"fft"`` and the Toeplitz matrix, prints
each one's distance from lax and its median time, then the lecture notes'
worked numbers; writes everything to ``DIR/conv_views.json``.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import pathlib

import jax
import numpy as np

from jaxcnn.lecture.views import compare_views, worked_numbers


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/conv_views", help="output directory")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="height = width of the input")
    parser.add_argument("--in-channels", type=int, default=4)
    parser.add_argument("--out-channels", type=int, default=8)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", default="SAME")
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.batch, args.size, args.size, args.in_channels)).astype(np.float32)
    w = rng.normal(size=(args.window, args.window, args.in_channels, args.out_channels)).astype(np.float32)
    options = dict(stride=args.stride, padding=args.padding, dilation=args.dilation)
    views = compare_views(x, w, repeats=args.repeats, **options)
    numbers = worked_numbers()

    print(f"x {x.shape}, w {w.shape}, {options}, float32, {jax.devices()[0].platform}")
    print(f"{'view':<10} {'max |y - y_lax|':>16} {'relative':>10} {'median ms':>10}")
    for name, result in views.items():
        print(f"{name:<10} {result['max_abs_diff']:>16.2e} {result['relative_diff']:>10.2e} "
              f"{1e3 * result['median_seconds']:>10.3f}")
    print("\nworked numbers from the notes:")
    for description, value in numbers.items():
        print(f"  {description}: {value}")

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "conv_views.json"
    record = {"x_shape": list(x.shape), "w_shape": list(w.shape), "options": options,
              "device": jax.devices()[0].platform, "views": views, "worked_numbers": numbers}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
