"""Winograd against im2col, XLA's convolution and PyTorch on one 3×3 layer (float32, CPU).

    python benchmarks/winograd_bench.py --out runs/winograd_bench            # 26×26×32→64, batch 128
    python benchmarks/winograd_bench.py --layer cifar2 --rounds 30

Times the forward and the forward+backward (a VJP with a fixed cotangent, the hand
rule for every JAX impl) of ``impl="explicit"``, ``"lax"``, ``"winograd"`` with
F(4×4, 3×3) and with F(2×2, 3×3), ``jax.vjp`` of the explicit and F(4,3) forwards
(``fwd+bwd autodiff``), and PyTorch's ``conv2d`` in NCHW and in channels_last.
Everything is compiled first (compile seconds reported), then timed in
interleaved rounds (one call of each candidate per round), so load from other
processes hits every candidate alike; medians, speed-ups over ``explicit`` and
``lax`` (``×explicit`` > 1: faster; the autodiff rows against the hand-rule
rows) and the CPU model are printed and written to ``DIR/winograd_bench.json``.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp

from _timing import cpu_model
from jaxcnn.ops.hand_rule import hand_rule
from jaxcnn.ops.winograd import winograd_backward, winograd_forward
import _timing as bench

from jaxcnn.ops import convolution as conv_lib  # noqa: E402

LAYERS = {  # name: (H, W, C_in, C_out), 3×3 VALID
    "conv2": (26, 26, 32, 64),
    "conv1": (28, 28, 1, 32),
    "cifar1": (32, 32, 3, 64),
    "cifar2": (16, 16, 64, 128),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/winograd_bench", help="output directory")
    parser.add_argument("--layer", choices=LAYERS, default="conv2", help="layer shape (3×3, VALID)")
    parser.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split(",")),
                        help="H,W,C_in,C_out instead of --layer")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=21, help="interleaved timing rounds")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    return parser.parse_args(argv)


def jax_candidates(x, w, dy):
    """``(impl, what) -> zero-argument call`` and ``-> compile seconds`` for the JAX impls.

    ``fwd+bwd`` is the hand rule (``grad="manual"``; for the forced tiles the
    winograd pair wrapped by :func:`hand_rule`), ``fwd+bwd autodiff`` is
    ``jax.vjp`` of the forward itself, the default training path.
    """
    config = conv_lib.conv_config(x.shape, w.shape, stride=1, padding="VALID", dilation=1, groups=1)
    winograd = hand_rule(winograd_forward, winograd_backward)
    ops = {impl: (lambda x, w, impl=impl: conv_lib.conv(x, w, impl=impl, grad="manual"))
           for impl in ("explicit", "lax")}
    for tile in (4, 2):
        ops[f"winograd F({tile},3)"] = lambda x, w, tile=tile: winograd(x, w, config=config, tile=tile)
    programs = {}
    for name, op in ops.items():
        programs[(name, "forward")] = (op, (x, w))
        programs[(name, "fwd+bwd")] = (lambda x, w, dy, op=op: jax.vjp(op, x, w)[1](dy), (x, w, dy))
    for name, op in (("explicit", lambda x, w: conv_lib.conv(x, w, impl="explicit")),
                     ("winograd F(4,3)", lambda x, w: winograd_forward(x, w, config, tile=4))):
        programs[(name, "fwd+bwd autodiff")] = (lambda x, w, dy, op=op: jax.vjp(op, x, w)[1](dy), (x, w, dy))
    candidates, compile_seconds = {}, {}
    for key, (fn, args) in programs.items():
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        compile_seconds[key] = time.perf_counter() - start
        candidates[key] = lambda compiled=compiled, args=args: compiled(*args)
    return candidates, compile_seconds


def torch_candidates(x, w, dy):
    """PyTorch ``conv2d`` forward and forward+backward, NCHW and channels_last."""
    import torch  # optional peer: pip install torch==2.13.0

    import numpy as np

    nchw = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous()
    kernel = torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous()
    cotangent = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous()
    candidates = {}
    for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        xt = nchw.to(memory_format=memory_format).requires_grad_(True)
        wt = kernel.to(memory_format=memory_format).requires_grad_(True)
        dyt = cotangent.to(memory_format=memory_format)

        def forward(xt=xt, wt=wt):
            with torch.no_grad():
                torch.nn.functional.conv2d(xt, wt)

        def both(xt=xt, wt=wt, dyt=dyt):
            torch.autograd.grad(torch.nn.functional.conv2d(xt, wt), (xt, wt), dyt)

        candidates[(f"torch {layout}", "forward")] = forward
        candidates[(f"torch {layout}", "fwd+bwd")] = both
    return candidates, torch.__version__, torch.get_num_threads()


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    height, width, cin, cout = args.shape or LAYERS[args.layer]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (args.batch, height, width, cin), jnp.float32)
    w = jax.random.normal(keys[1], (3, 3, cin, cout), jnp.float32) / (3 * cin**0.5)
    dy = jax.random.normal(keys[2], (args.batch, height - 2, width - 2, cout), jnp.float32)
    candidates, compile_seconds = jax_candidates(x, w, dy)
    torch_info = None
    if not args.no_torch:
        peers, version, threads = torch_candidates(x, w, dy)
        candidates.update(peers)
        torch_info = dict(version=version, threads=threads)
    load_before = os.getloadavg()
    medians = bench.interleaved_medians(candidates, args.rounds)
    load_after = os.getloadavg()

    flops = 2 * args.batch * (height - 2) * (width - 2) * 9 * cin * cout  # direct forward
    rows = []
    for (name, what), seconds in medians.items():
        reference = medians[("explicit", "forward" if what == "forward" else "fwd+bwd")]
        rows.append(dict(impl=name, what=what, ms=1e3 * seconds, vs_explicit=reference / seconds,
                         vs_lax=medians[("lax", "forward" if what == "forward" else "fwd+bwd")] / seconds,
                         direct_gflops_per_second=(flops if what == "forward" else 3 * flops) / seconds / 1e9,
                         compile_seconds=compile_seconds.get((name, what))))
    header = dict(layer=f"{height}x{width}x{cin}->{cout} 3x3 VALID", batch=args.batch, rounds=args.rounds,
                  cpu=cpu_model(), cores=os.cpu_count(), jax=jax.__version__, torch=torch_info,
                  load_average_before=load_before, load_average_after=load_after)
    print(f"{header['layer']}, batch {args.batch}, float32, {args.rounds} interleaved rounds (medians)")
    print(f"CPU: {header['cpu']} ({header['cores']} cores), load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    if torch_info:
        print(f"PyTorch {torch_info['version']}, {torch_info['threads']} threads; jax {jax.__version__}")
    print(f"\n{'impl':20s} {'what':16s} {'ms':>8s} {'×explicit':>10s} {'×lax':>6s} {'direct GFLOP/s':>15s} "
          f"{'compile s':>10s}")
    for r in sorted(rows, key=lambda r: (r["what"], r["impl"])):
        compile_s = "-" if r["compile_seconds"] is None else f"{r['compile_seconds']:.2f}"
        print(f"{r['impl']:20s} {r['what']:16s} {r['ms']:8.2f} {r['vs_explicit']:10.2f} {r['vs_lax']:6.2f} "
              f"{r['direct_gflops_per_second']:15.1f} {compile_s:>10s}")
    path = out / "winograd_bench.json"
    path.write_text(json.dumps(dict(header, rows=rows), indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
