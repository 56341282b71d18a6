"""A convolutional autoencoder (Conv + ConvTranspose) trained in the three gradient modes.

    python experiments/autoencoder.py --out runs/autoencoder

Encoder: Conv 3×3/2 (16) → ReLU → Conv 3×3/2 (4) → ReLU (28×28×1 → a 7×7×4 code, 196 numbers for
784 pixels); decoder:
ConvTranspose 3×3/2 (16) → ReLU → ConvTranspose 3×3/2 (1) → Sigmoid (back to 28×28×1). The loss
is :func:`jaxcnn.ops.losses.mean_squared_error` of the reconstruction against the input, whose
hand rule starts the explicit sweep in ``grad="backprop"``. The same init is trained with
``autodiff``, ``manual`` and ``backprop`` (Adam, full-batch epochs of the bundled 5,000 training
digits); the script writes ``reconstructions.png`` (originals above each mode's reconstructions
of the first test digits) and ``autoencoder.json`` (per-mode test MSE per epoch, seconds).
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.nn import layers as L
from jaxcnn.ops.losses import mean_squared_error
from jaxcnn.proof.gradients import MODES, loss_and_grad
from jaxcnn.training import data


def autoencoder():
    """The Conv/ConvTranspose autoencoder of this experiment (``SAME`` padding: 28 → 14 → 7 → 14 → 28)."""
    return L.serial(
        L.Conv(16, 3, stride=2, padding="SAME"), L.Relu(),
        L.Conv(4, 3, stride=2, padding="SAME"), L.Relu(),
        L.ConvTranspose(16, 3, stride=2, padding="SAME"), L.Relu(),
        L.ConvTranspose(1, 3, stride=2, padding="SAME"), L.Sigmoid(),
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/autoencoder", help="output directory")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N digits")
    parser.add_argument("--test-limit", type=int, default=1000, help="evaluate on the first N test digits")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_epoch(model, tx, mode, batch_size):
    """One jitted epoch: a ``lax.scan`` of Adam steps over shuffled batches; returns the mean loss."""

    def step(carry, x):
        params, opt_state = carry
        loss, grads, _ = loss_and_grad(model, params, x, x, grad=mode, loss=mean_squared_error)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def epoch(params, opt_state, images, key):
        steps = images.shape[0] // batch_size
        order = jax.random.permutation(key, images.shape[0])[: steps * batch_size]
        batches = images[order].reshape(steps, batch_size, *images.shape[1:])
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, jnp.mean(losses)

    return epoch


def plot(originals, reconstructions, path):
    """Originals in the first row, one row of reconstructions per mode (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = 1 + len(reconstructions), len(originals)
    fig = Figure(figsize=(1.1 * cols, 1.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (name, images) in enumerate([("original", originals), *reconstructions.items()]):
        for c in range(cols):
            axes[r, c].imshow(np.asarray(images[c, :, :, 0]), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, _ = data.load(data.SAMPLE_NAME, "train")
    test, _ = data.load(data.SAMPLE_NAME, "test")
    train = jnp.asarray(train[: args.train_limit])
    test = jnp.asarray(test[: args.test_limit])
    model = autoencoder()
    _, init = model.init(jax.random.key(args.seed), (-1, *train.shape[1:]))
    tx = optax.adam(args.lr)
    evaluate = jax.jit(lambda p, x: mean_squared_error(model.apply(p, x), x))
    record = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "train_examples": int(train.shape[0]),
              "test_examples": int(test.shape[0]), "modes": {}}
    reconstructions = {}
    for mode in MODES:
        epoch = make_epoch(model, tx, mode, args.batch_size)
        params, opt_state = init, tx.init(init)
        curve, start = [], time.perf_counter()
        for index in range(args.epochs):
            params, opt_state, train_loss = epoch(params, opt_state, train, jax.random.key(1000 + index))
            curve.append({"epoch": index + 1, "train_mse": float(train_loss), "test_mse": float(evaluate(params, test))})
        seconds = time.perf_counter() - start
        record["modes"][mode] = {"curve": curve, "test_mse": curve[-1]["test_mse"], "seconds": seconds,
                                 "params": params}
        reconstructions[mode] = model.apply(params, test[:10])
        print(f"{mode:9s} test MSE {curve[-1]['test_mse']:.5f} after {args.epochs} epochs ({seconds:.1f} s)")
    reference = record["modes"]["autodiff"]["params"]
    for mode in MODES:
        params = record["modes"][mode].pop("params")
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)))
        record["modes"][mode]["max_param_diff_vs_autodiff"] = diff
    plot(test[:10], reconstructions, out / "reconstructions.png")
    (out / "autoencoder.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'reconstructions.png'} and {out / 'autoencoder.json'}")


if __name__ == "__main__":
    main()
