"""The three gradient modes trained side by side, from the same init: how far apart do they drift?

    python experiments/compare_gradients.py --out runs/compare_gradients --dtype float32 float64

Trains one network (default: the classic net on the 5,000 bundled MNIST digits, AdamW with the
one-cycle schedule, 5 epochs of batch 125, no augmentation) with ``grad`` = autodiff, manual
and backprop: same init, same batches, only the order of the floating-point operations differs
(:func:`jaxcnn.training.compare.train_modes`). Writes, in ``--out``:

- ``compare-gradients-loss.png``: the training loss of every step, the three modes in one plot
  per dtype;
- ``compare-gradients-diff.png``: the largest parameter difference max|θ_autodiff − θ_mode|
  after each epoch, for manual and backprop, per dtype (log scale);
- ``compare-gradients.json``: every number drawn, and a summary.

``--quick`` is a small run for the tests (the sequence net, 200 digits, 2 epochs).
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import pathlib

from jaxcnn.training import compare
from jaxcnn.training.loop import TrainConfig

PREFIX = "compare-gradients"
COLORS = {"autodiff": "tab:blue", "manual": "tab:orange", "backprop": "tab:green"}
STYLES = {"float32": "-", "float64": "--"}
MARKERS = {"manual": "o", "backprop": "x"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/compare_gradients", help="output directory")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=compare.DTYPES,
                        help="one run per dtype (default float32; float64 is the contrast)")
    parser.add_argument("--model", default="classic")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=125)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--augment", default="none")
    parser.add_argument("--train-limit", type=int, help="train on this many digits (default all 5,000)")
    parser.add_argument("--test-limit", type=int, default=2000, help="test digits evaluated at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small run: sequence net, 200 digits, 2 epochs")
    return parser.parse_args(argv)


def config_of(args) -> TrainConfig:
    if args.quick:
        return TrainConfig(model="sequence", dataset=args.dataset, epochs=2, batch_size=50, train_limit=200,
                           test_limit=200, optimizer=args.optimizer, augment=args.augment, seed=args.seed)
    return TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                       train_limit=args.train_limit, test_limit=args.test_limit, optimizer=args.optimizer,
                       augment=args.augment, seed=args.seed)


def _figure(width, height, columns=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def plot_losses(results: dict, path: pathlib.Path) -> None:
    """One panel per dtype: the loss of every training step, one line per mode."""
    figure, axes = _figure(6 * len(results), 4, len(results))
    for ax, (dtype, result) in zip(axes, results.items()):
        steps = result["steps_per_epoch"]
        for mode in result["modes"]:
            losses = result["runs"][mode]["step_loss"]
            ax.plot([(i + 1) / steps for i in range(len(losses))], losses, STYLES[dtype], color=COLORS[mode],
                    label=mode, linewidth=1.5 if mode == "autodiff" else 0.8)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (per step)")
        ax.set_title(f"{result['config']['model']} net, {dtype}: the three modes overlap")
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def plot_differences(results: dict, path: pathlib.Path) -> None:
    """max |θ_autodiff − θ_mode| after each epoch, per mode and dtype, on a log scale."""
    figure, (ax,) = _figure(7, 4.5)
    for dtype, result in results.items():
        for mode, values in result["max_param_diff"].items():
            epochs = list(range(1, len(values)))  # epoch 0 is the shared init: difference 0
            ax.plot(epochs, values[1:], STYLES[dtype], marker=MARKERS.get(mode, "o"), color=COLORS[mode],
                    label=f"autodiff − {mode}, {dtype}")
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("max |θ_autodiff − θ_mode| over all parameters")
    ax.set_title("parameter drift between gradient modes")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def summary(results: dict) -> dict:
    """The numbers the README quotes, per dtype."""
    table = {}
    for dtype, result in results.items():
        modes = result["modes"]
        final = {mode: result["runs"][mode] for mode in modes}
        table[dtype] = {
            "final_max_param_diff": {mode: values[-1] for mode, values in result["max_param_diff"].items()},
            "final_max_param_rel_diff": {mode: values[-1] for mode, values in result["max_param_rel_diff"].items()},
            "epoch1_max_param_diff": {mode: values[1] for mode, values in result["max_param_diff"].items()},
            "final_epoch_loss": {mode: final[mode]["epoch_loss"][-1] for mode in modes},
            "max_step_loss_diff": {mode: max(abs(a - b) for a, b in zip(final[modes[0]]["step_loss"],
                                                                        final[mode]["step_loss"]))
                                   for mode in modes[1:]},
            "test_accuracy": {mode: final[mode]["test_accuracy"] for mode in modes},
            "seconds": result["seconds"],
        }
    return table


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = config_of(args)
    results = {dtype: compare.train_modes(config, dtype=dtype, log=print) for dtype in dict.fromkeys(args.dtype)}
    loss_png, diff_png, record = (out / f"{PREFIX}-loss.png", out / f"{PREFIX}-diff.png", out / f"{PREFIX}.json")
    plot_losses(results, loss_png)
    plot_differences(results, diff_png)
    record.write_text(json.dumps({"summary": summary(results), "results": results}, indent=1) + "\n")
    for dtype, numbers in summary(results).items():
        print(f"{dtype}: final max |Δθ| {numbers['final_max_param_diff']}, "
              f"test accuracy {numbers['test_accuracy']}, {numbers['seconds']:.0f} s")
    print(f"wrote {loss_png}, {diff_png} and {record}")


if __name__ == "__main__":
    main()
