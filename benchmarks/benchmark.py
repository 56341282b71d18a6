"""Benchmark: conv impls, train steps per model × gradient mode × impl, PyTorch as a peer.

    python benchmarks/benchmark.py --out runs/bench            # full run (several minutes)
    python benchmarks/benchmark.py --out runs/bench --quick    # small shapes, seconds

One process; warm-up (compilation) excluded; candidates timed in interleaved
rounds (the PyTorch step in the same rounds as the JAX steps of its model);
medians; ratios computed within the run. ``impl="auto"`` is benchmarked like
the concrete impls; the conv table names what it resolved to. Two more tables:
the compile time of one train step against the whole-epoch ``lax.scan``, and
the default ``jaxcnn train`` path (``train_and_evaluate`` on the bundled digits,
its ``images_per_second`` from ``metrics.jsonl``). Writes ``DIR/benchmark.json``
and ``DIR/benchmark.png`` and prints the tables. PyTorch (optional ``bench``
extra, ``pip install torch==2.13.0``) runs the same networks eagerly on the CPU.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import pathlib
import platform
import statistics
import tempfile

import jax
import jax.numpy as jnp

import _timing as bench
from jaxcnn.nn import models
from jaxcnn.training import steps
from jaxcnn.training import loop as train
from jaxcnn.ops.convolution import IMPLS, conv, conv_config, resolve_impl, supported_impls

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
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and batch, impl=auto only, fewer compiles: a smoke test")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    return parser.parse_args(argv)


def conv_table(shapes, batch, repeats):
    rows = []
    for name, (spatial, window, out_channels) in shapes.items():
        x = jax.random.normal(jax.random.PRNGKey(0), (batch, *spatial))
        w = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (*window, spatial[-1], out_channels))
        candidates = {}
        config = conv_config(x.shape, w.shape, stride=1, padding="VALID", dilation=1, groups=1)
        for impl in (*supported_impls(w.shape, config), "auto"):  # winograd: 3×3 windows only
            forward = jax.jit(lambda x, w, impl=impl: conv(x, w, impl=impl))
            candidates[(impl, "forward")] = lambda f=forward: f(x, w)
            for grad in ("autodiff", "manual"):
                loss = lambda x, w, impl=impl, grad=grad: jnp.sum(conv(x, w, impl=impl, grad=grad) ** 2)
                both = jax.jit(jax.grad(loss, argnums=(0, 1)))
                candidates[(impl, f"fwd+bwd {grad}")] = lambda f=both: f(x, w)
        medians = bench.interleaved_medians(candidates, repeats)
        reference = medians[("lax", "fwd+bwd autodiff")]
        auto = resolve_impl("auto", x.shape, w.shape, config, jax.default_backend(), dtype=x.dtype)
        for (impl, what), seconds in medians.items():
            rows.append(dict(shape=name, impl=impl, what=what, ms=1e3 * seconds, vs_lax_autodiff=reference / seconds,
                             resolves_to=auto if impl == "auto" else impl))
    return rows


def jax_train_steps(model_names, batch, repeats, matmul_rate, peers=None, impls=IMPLS):
    """Train-step rows per model × impl × mode; ``peers`` (model -> step) are timed in the same rounds."""
    rows, peer_rates = [], {}
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, 28, 28, 1))
    labels = jnp.arange(batch) % 10
    for name in model_names:
        candidates, compile_seconds, flops = {}, {}, 0.0
        for impl in impls:
            model = models.get_model(name, impl=impl)
            _, params = model.init(jax.random.PRNGKey(0), (-1, 28, 28, 1))
            flops = flops or bench.train_step_flops(model, params, x)
            for mode in MODES:
                run, seconds = bench.compiled_train_step(model, params, x, labels, grad=mode)
                candidates[(impl, mode)], compile_seconds[(impl, mode)] = run, seconds
        if peers:
            candidates[("peer", name)] = peers[name]
        medians = bench.interleaved_medians(candidates, repeats)
        if peers:
            peer_rates[name] = batch / medians.pop(("peer", name))
        for (impl, mode), seconds in medians.items():
            rows.append(dict(
                model=name, impl=impl, grad=mode, images_per_second=batch / seconds,
                vs_autodiff_same_impl=medians[(impl, "autodiff")] / seconds,
                matmul_fraction=flops / seconds / matmul_rate, compile_seconds=compile_seconds[(impl, mode)],
            ))
    return rows, peer_rates


def epoch_compiles(model_names, batch, epoch_steps, modes=MODES):
    """Compile seconds of one step and of the whole-epoch scan (``epoch_steps`` batches), impl="auto"."""
    rows = []
    images = jax.random.normal(jax.random.PRNGKey(0), (batch * epoch_steps, 28, 28, 1))
    labels = jnp.arange(batch * epoch_steps) % 10
    for name in model_names:
        model = models.get_model(name)
        _, params = model.init(jax.random.PRNGKey(0), (-1, 28, 28, 1))
        unroll = steps.lax_conv_on_cpu(model, params, (batch, 28, 28, 1))
        for mode in modes:
            one = bench.epoch_compile_seconds(model, params, images, labels, grad=mode, batch_size=batch, chunk=1)
            epoch = bench.epoch_compile_seconds(model, params, images, labels, grad=mode, batch_size=batch,
                                                chunk=1 if unroll else epoch_steps, unroll=unroll)
            rows.append(dict(model=name, grad=mode, steps=epoch_steps, step_compile_seconds=one,
                             epoch_compile_seconds=epoch, ratio=epoch / one))
    return rows


def train_path(model_names, batch, epochs, train_limit=None, modes=MODES):
    """The default ``jaxcnn train`` path (impl="auto", whole-epoch scan) with Adam, no augmentation,
    on the 5,000 bundled digits, per gradient mode: the median over epochs of ``images_per_second``
    (``metrics.jsonl``; compilation excluded) and the compile seconds."""
    rows = []
    for name in model_names:
        for mode in modes:
            config = train.TrainConfig(model=name, dataset="mnist-sample", grad=mode, batch_size=batch,
                                       epochs=epochs, optimizer="adam", lr=1e-3, schedule="constant",
                                       augment="none", train_limit=train_limit, test_limit=1000)
            with tempfile.TemporaryDirectory() as workdir:
                history = train.train_and_evaluate(config, workdir, progress=False, log=lambda _: None).history
            rows.append(dict(
                model=name, grad=mode, steps=history[-1]["train_examples"] // batch,
                images_per_second=statistics.median(r["images_per_second"] for r in history),
                epoch_seconds=statistics.median(r["epoch_seconds"] for r in history),
                compile_seconds=history[0]["compile_seconds"]))
        autodiff = next(r for r in rows if r["model"] == name and r["grad"] == "autodiff")
        for r in rows:
            if r["model"] == name:
                r["vs_autodiff"] = r["images_per_second"] / autodiff["images_per_second"]
    return rows


def torch_train_steps(model_names, batch):
    """PyTorch eager Adam steps of the same networks: model -> zero-argument step."""
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
    steps = {}
    for name in model_names:
        net = nets[name]()
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)

        def step(net=net, optimizer=optimizer):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), labels).backward()
            optimizer.step()

        steps[name] = step
    return steps, torch.__version__, torch.get_num_threads()


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
    print(f"\n{'shape':36s} {'impl':15s} {'what':18s} {'ms':>9s} {'×lax-autodiff f+b':>18s}")
    for r in conv_rows:
        impl = r["impl"] if r["impl"] == r["resolves_to"] else f"{r['impl']}→{r['resolves_to']}"
        print(f"{r['shape']:36s} {impl:15s} {r['what']:18s} {r['ms']:9.2f} {r['vs_lax_autodiff']:18.2f}")

    torch_info, peers = None, None
    if not args.no_torch:
        peers, version, threads = torch_train_steps(model_names, batch)
    step_rows, rates = jax_train_steps(model_names, batch, args.repeats, matmul_rate, peers,
                                       impls=("auto",) if args.quick else IMPLS)
    if peers:
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

    compile_rows = epoch_compiles(model_names, batch, 4 if args.quick else 39,
                                  modes=("autodiff",) if args.quick else MODES)
    print(f"\n{'model':8s} {'grad':9s} {'step compile s':>15s} {'epoch-scan compile s':>21s} {'ratio':>6s}")
    for r in compile_rows:
        print(f"{r['model']:8s} {r['grad']:9s} {r['step_compile_seconds']:15.2f} "
              f"{r['epoch_compile_seconds']:21.2f} {r['ratio']:6.2f}")

    path_rows = train_path(model_names, batch, 1 if args.quick else 3, train_limit=200 if args.quick else None,
                           modes=("autodiff",) if args.quick else MODES)
    print(f"\njaxcnn train (impl=auto, whole-epoch scan, Adam, batch {batch}, mnist-sample; median over epochs):")
    print(f"{'model':8s} {'grad':9s} {'img/s':>8s} {'epoch s':>8s} {'×autodiff':>10s} {'×torch':>7s} {'compile s':>10s}")
    for r in path_rows:
        peer = torch_info["images_per_second"].get(r["model"]) if torch_info else None
        if peer:
            r["vs_torch"] = r["images_per_second"] / peer
        vs = f"{r['vs_torch']:7.2f}" if peer else "      -"
        print(f"{r['model']:8s} {r['grad']:9s} {r['images_per_second']:8.1f} {r['epoch_seconds']:8.2f} "
              f"{r['vs_autodiff']:10.2f} {vs} {r['compile_seconds']:10.2f}")

    result = dict(batch=batch, jax=jax.__version__, device=str(jax.devices()[0]), matmul_flops=matmul_rate,
                  conv=conv_rows, train_steps=step_rows, torch=torch_info, compile=compile_rows,
                  train_path=path_rows)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    plot(step_rows, out / "benchmark.png")
    print(f"\nwrote {out / 'benchmark.json'} and {out / 'benchmark.png'}")


if __name__ == "__main__":
    main()
