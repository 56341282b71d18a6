"""Benchmark: conv impls, train steps per model × gradient mode × impl, PyTorch as a peer.

    python experiments/benchmark.py --out runs/bench            # full run (several minutes)
    python experiments/benchmark.py --out runs/bench --quick    # small shapes, seconds

One process; warm-up (compilation) excluded; candidates timed in interleaved
rounds; medians; ratios computed within the run. Writes ``DIR/benchmark.json``
and ``DIR/benchmark.png`` and prints the tables. PyTorch (optional ``bench``
extra, ``pip install torch==2.13.0``) runs the same networks eagerly on the CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp

from jaxcnn import bench, models
from jaxcnn.conv import IMPLS, conv

MODES = ("autodiff", "manual", "backprop")
CONV_SHAPES = {  # name: (input (N excluded), kernel window, out channels)
    "lecture/classic conv1 28x28x1->32": ((28, 28, 1), (3, 3), 32),
    "lecture/classic conv2 26x26x32->64": ((26, 26, 32), (3, 3), 64),
    "cifar 32x32x3->64": ((32, 32, 3), (3, 3), 64),
    "cifar 16x16x64->128": ((16, 16, 64), (3, 3), 128),
    "1-D 256x16->32": ((256, 16), (5,), 32),
}
QUICK_SHAPES = {"quick 12x12x4->8": ((12, 12, 4), (3, 3), 8), "quick 1-D 32x4->8": ((32, 4), (5,), 8)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmark", help="output directory")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and batch, for smoke tests")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    return parser.parse_args(argv)


def conv_table(shapes, batch, repeats):
    rows = []
    for name, (spatial, window, out_channels) in shapes.items():
        x = jax.random.normal(jax.random.PRNGKey(0), (batch, *spatial))
        w = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (*window, spatial[-1], out_channels))
        candidates = {}
        for impl in IMPLS:
            forward = jax.jit(lambda x, w, impl=impl: conv(x, w, impl=impl))
            candidates[(impl, "forward")] = lambda f=forward: f(x, w)
            for grad in ("autodiff", "manual"):
                loss = lambda x, w, impl=impl, grad=grad: jnp.sum(conv(x, w, impl=impl, grad=grad) ** 2)
                both = jax.jit(jax.grad(loss, argnums=(0, 1)))
                candidates[(impl, f"fwd+bwd {grad}")] = lambda f=both: f(x, w)
        medians = bench.interleaved_medians(candidates, repeats)
        reference = medians[("lax", "fwd+bwd autodiff")]
        for (impl, what), seconds in medians.items():
            rows.append(dict(shape=name, impl=impl, what=what, ms=1e3 * seconds, vs_lax_autodiff=reference / seconds))
    return rows


def jax_train_steps(model_names, batch, repeats, matmul_rate):
    rows = []
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, 28, 28, 1))
    labels = jnp.arange(batch) % 10
    for name in model_names:
        candidates, compile_seconds, flops = {}, {}, 0.0
        for impl in IMPLS:
            model = models.get_model(name, impl=impl)
            _, params = model.init(jax.random.PRNGKey(0), (-1, 28, 28, 1))
            flops = flops or bench.train_step_flops(model, params, x)
            for mode in MODES:
                run, seconds = bench.compiled_train_step(model, params, x, labels, mode=mode)
                candidates[(impl, mode)], compile_seconds[(impl, mode)] = run, seconds
        medians = bench.interleaved_medians(candidates, repeats)
        for (impl, mode), seconds in medians.items():
            rows.append(dict(
                model=name, impl=impl, grad=mode, images_per_second=batch / seconds,
                vs_autodiff_same_impl=medians[(impl, "autodiff")] / seconds,
                matmul_fraction=flops / seconds / matmul_rate, compile_seconds=compile_seconds[(impl, mode)],
            ))
    return rows


def torch_train_steps(model_names, batch, repeats):
    import torch  # optional peer: pip install torch==2.13.0

    torch.manual_seed(0)
    nn = torch.nn
    nets = {
        "classic": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(12 * 12 * 64, 128), nn.ReLU(), nn.Linear(128, 10)),
        "lecture": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.Flatten(), nn.Linear(24 * 24 * 64, 400), nn.ReLU(), nn.Linear(400, 10)),
    }
    x, labels = torch.randn(batch, 1, 28, 28), torch.arange(batch) % 10
    rates = {}
    for name in model_names:
        net = nets[name]()
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)

        def step():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), labels).backward()
            optimizer.step()

        step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        rates[name] = batch / sorted(times)[len(times) // 2]
    return rates, torch.__version__, torch.get_num_threads()


def plot(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4))
    axes = figure.add_subplot(1, 1, 1)
    labels = [f"{r['model']}\n{r['impl']}/{r['grad']}" for r in rows]
    axes.bar(range(len(rows)), [r["images_per_second"] for r in rows], color="tab:blue")
    for index, row in enumerate(rows):
        if "torch_images_per_second" in row:
            axes.axhline(row["torch_images_per_second"], color="tab:red", lw=0.8)
    axes.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
    axes.set_ylabel("train step images/s (red: PyTorch eager)")
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch = 8 if args.quick else args.batch
    model_names = ("classic",) if args.quick else ("classic", "lecture")
    matmul_rate = bench.matmul_flops_per_second(256 if args.quick else 1024, args.repeats)
    print(f"device {jax.devices()[0].device_kind}, {platform.processor() or platform.machine()}, jax {jax.__version__}")
    print(f"float32 matmul rate: {matmul_rate / 1e9:.1f} GFLOP/s")

    conv_rows = conv_table(QUICK_SHAPES if args.quick else CONV_SHAPES, batch, args.repeats)
    print(f"\n{'shape':36s} {'impl':9s} {'what':18s} {'ms':>9s} {'×lax-autodiff f+b':>18s}")
    for r in conv_rows:
        print(f"{r['shape']:36s} {r['impl']:9s} {r['what']:18s} {r['ms']:9.2f} {r['vs_lax_autodiff']:18.2f}")

    step_rows = jax_train_steps(model_names, batch, args.repeats, matmul_rate)
    torch_info = None
    if not args.no_torch:
        rates, version, threads = torch_train_steps(model_names, batch, args.repeats)
        torch_info = dict(version=version, threads=threads, images_per_second=rates)
        for r in step_rows:
            r["torch_images_per_second"] = rates[r["model"]]
            r["vs_torch"] = r["images_per_second"] / rates[r["model"]]
    print(f"\n{'model':8s} {'impl':9s} {'grad':9s} {'img/s':>8s} {'×autodiff':>10s} {'×torch':>7s} {'matmul%':>8s} {'compile s':>10s}")
    for r in step_rows:
        vs_torch = f"{r['vs_torch']:7.2f}" if "vs_torch" in r else "      -"
        print(f"{r['model']:8s} {r['impl']:9s} {r['grad']:9s} {r['images_per_second']:8.1f} "
              f"{r['vs_autodiff_same_impl']:10.2f} {vs_torch} {100 * r['matmul_fraction']:7.1f}% {r['compile_seconds']:10.2f}")
    if torch_info:
        print(f"PyTorch {torch_info['version']} eager, {torch_info['threads']} threads: "
              + ", ".join(f"{k} {v:.1f} img/s" for k, v in torch_info["images_per_second"].items()))

    result = dict(batch=batch, jax=jax.__version__, device=str(jax.devices()[0]), matmul_flops=matmul_rate,
                  conv=conv_rows, train_steps=step_rows, torch=torch_info)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    plot(step_rows, out / "benchmark.png")
    print(f"\nwrote {out / 'benchmark.json'} and {out / 'benchmark.png'}")


if __name__ == "__main__":
    main()
