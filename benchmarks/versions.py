"""`jaxcnn train` throughput of two checkouts of jaxcnn, side by side.

    python benchmarks/versions.py --before ../jaxcnn-0.1 --after . --models classic lecture resnet \\
        --epochs 3 --rounds 3 --out runs/versions.json

Each checkout is a directory holding a ``jaxcnn`` package (a git worktree of another commit, say).
Every round runs, for every model, ``python -m jaxcnn train --model M --dataset mnist-sample
--epochs E --no-progress`` once with each checkout first on ``PYTHONPATH`` (the same Python, the
same jax), alternating which goes first, and reads the epochs' ``images_per_second`` from the run's
``metrics.jsonl`` (epoch 1 is left out: it includes the first calls' set-up). The figure of a
run is the median over its epochs; the table gives, per model, the median over the rounds of each
checkout and their ratio. Both checkouts compile into one temporary compilation cache of their own,
emptied before every run, so no run loads another's programs. Prints the CPU model and the load
average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: the timing helpers

from _timing import cpu_model  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=pathlib.Path, required=True, help="checkout holding the 'before' jaxcnn")
    parser.add_argument("--after", type=pathlib.Path, required=True, help="checkout holding the 'after' jaxcnn")
    parser.add_argument("--models", nargs="+", default=["classic", "lecture", "resnet"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (at least 2: epoch 1 is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further `jaxcnn train` flags for every run (after the others)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON file for every run's figures")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (epoch 1 is not timed), got {args.epochs}")
    for name in ("before", "after"):
        if not (getattr(args, name) / "jaxcnn" / "__init__.py").is_file():
            parser.error(f"--{name} must be a directory holding a jaxcnn package, got {getattr(args, name)}")
    return args


def run_once(checkout: pathlib.Path, model: str, epochs: int, extra: list, scratch: pathlib.Path) -> float:
    """One ``jaxcnn train`` run of ``checkout``; the median images per second of epochs 2 .. ``epochs``."""
    workdir = scratch / "run"
    cache = scratch / "xla"
    for path in (workdir, cache):
        shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()), JAXCNN_COMPILATION_CACHE=str(cache))
    command = [sys.executable, "-m", "jaxcnn", "train", "--model", model, "--dataset", "mnist-sample",
               "--epochs", str(epochs), "--no-progress", "--workdir", str(workdir), *extra]
    # from a neutral directory: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH
    done = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} (PYTHONPATH={checkout}) failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return statistics.median(r["images_per_second"] for r in records if r["epoch"] >= 2)


def main(argv=None):
    args = parse_args(argv)
    checkouts = {"before": args.before, "after": args.after}
    print(f"CPU {cpu_model()}; load average before {os.getloadavg()[0]:.2f}", flush=True)
    figures = {model: {name: [] for name in checkouts} for model in args.models}
    with tempfile.TemporaryDirectory(prefix="jaxcnn-versions-") as scratch:
        for round_index in range(args.rounds):
            for model in args.models:
                order = list(checkouts) if round_index % 2 == 0 else list(reversed(checkouts))
                for name in order:
                    value = run_once(checkouts[name], model, args.epochs, args.extra, pathlib.Path(scratch))
                    figures[model][name].append(value)
                    print(f"round {round_index + 1} {model} {name}: {value:.1f} img/s", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print("| model | before img/s | after img/s | after / before |")
    print("| --- | --- | --- | --- |")
    rows = {}
    for model, values in figures.items():
        before, after = (statistics.median(values[name]) for name in checkouts)
        rows[model] = {"before": before, "after": after, "ratio": after / before, "rounds": values}
        print(f"| {model} | {before:.1f} | {after:.1f} | {after / before:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cpu": cpu_model(), "epochs": args.epochs, "extra": args.extra,
                                        "before": str(args.before), "after": str(args.after), "models": rows},
                                       indent=1))


if __name__ == "__main__":
    main()
