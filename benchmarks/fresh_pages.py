"""Before/after of jaxcnn's allocator settings (jaxcnn.training.allocator) on a user's own jitted step.

    python benchmarks/fresh_pages.py --rounds 5          # about 4 minutes on a 2-core CPU

The settings apply per process (``jaxcnn.configure_process``, first thing), so each sample is a fresh subprocess: ``--rounds``
rounds, each running one subprocess per (model, setting) in alternation (JAXCNN_KEEP_FREED_MEMORY=0, then 1).
A subprocess compiles ``jax.jit`` of ``jaxcnn.loss_and_grad`` (the README's quick-start step; ``state=`` for
resnet) at batch 128 (resnet 125), warms it up twice and times ``--steps`` calls; it reports the median
ms/step and the minor page faults per step (``getrusage``): their mean (the table) and their median. The table gives the medians over rounds and the
ratio off/on (above 1: the settings make the step faster).
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
CHILD = r"""
import resource, statistics, sys, time
import jaxcnn
jaxcnn.configure_process(interrupt=False)  # the allocator setting, before jax is imported
import jax, jax.numpy as jnp
from jaxcnn.nn import models
name, steps = sys.argv[1], int(sys.argv[2])
model = models.get_model(name)
_, params, state = model.init_with_state(jax.random.PRNGKey(0), (-1, 28, 28, 1))
batch = 125 if name == "resnet" else 128
x = jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))
y = jnp.arange(batch) % 10
if state == ():
    step = jax.jit(lambda p: jaxcnn.loss_and_grad(model, p, x, y)[1])
    call = lambda: step(params)
else:
    step = jax.jit(lambda p, s: jaxcnn.loss_and_grad(model, p, x, y, state=s)[1])
    call = lambda: step(params, state)
for _ in range(2):
    jax.block_until_ready(call())
times, faults = [], []
for _ in range(steps):
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(times) * 1e3, statistics.mean(faults), statistics.median(faults),
      jaxcnn.training.allocator.applied)
"""


def sample(model: str, keep: str, steps: int):
    root = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, JAXCNN_KEEP_FREED_MEMORY=keep, JAX_PLATFORMS="cpu", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(steps)], env=env, capture_output=True, text=True,
                         check=True)
    ms, faults, median_faults, applied = out.stdout.split()
    assert applied == ("True" if keep == "1" else "False"), (keep, applied)
    return float(ms), float(faults), float(median_faults)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["classic", "lecture", "resnet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="write the samples as JSON here")
    args = parser.parse_args(argv)
    from _timing import cpu_model  # pylint: disable=import-outside-toplevel  # imports jax: not in the parent's start

    samples = {(m, k): [] for m in args.models for k in ("0", "1")}
    for _ in range(args.rounds):
        for model in args.models:
            for keep in ("0", "1"):
                samples[(model, keep)].append(sample(model, keep, args.steps))
    print(f"CPU {cpu_model()}; {args.rounds} rounds of alternating subprocesses, {args.steps} steps each; medians")
    print(f"{'model':8s} {'off ms/step':>12s} {'on ms/step':>11s} {'off/on':>7s} {'off faults':>11s} {'on faults':>10s}")
    rows = []
    for model in args.models:
        off, on = samples[(model, "0")], samples[(model, "1")]
        row = dict(model=model, off_ms=statistics.median(s[0] for s in off), on_ms=statistics.median(s[0] for s in on),
                   off_faults=statistics.median(s[1] for s in off), on_faults=statistics.median(s[1] for s in on),
                   off_median_faults=statistics.median(s[2] for s in off),
                   on_median_faults=statistics.median(s[2] for s in on))
        row["speedup"] = row["off_ms"] / row["on_ms"]
        rows.append(row)
        print(f"{model:8s} {row['off_ms']:12.1f} {row['on_ms']:11.1f} {row['speedup']:7.2f} "
              f"{row['off_faults']:11.0f} {row['on_faults']:10.0f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(cpu=cpu_model(), rows=rows, samples={f"{m}/{k}": v for (m, k), v in samples.items()}), f,
                      indent=1)
    return rows


if __name__ == "__main__":
    main()
