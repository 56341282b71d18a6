"""Where the classic net's training step spends its time: layer by layer against PyTorch, and inside conv2.

    python benchmarks/layer_breakdown.py --grads autodiff manual --rounds 9 --out runs/layers.json

Times, in one interleaved run (medians over ``--rounds``, batch ``--batch``, float32, random data of the
net's shapes, the CPU model and the float32 matmul rate before and after printed with them):

- each layer of ``classic_net`` (conv1, ReLU, conv2, ReLU + 2×2 max pool, dense 9216→128 + ReLU, dense 128→10
  + softmax cross-entropy) as a forward and its VJP with a random cotangent, the way a training step runs it
  (the input gradient only where the step needs it: not for conv1), for every ``--grads`` mode, beside the
  same layer in PyTorch eager (``torch.nn.functional``, NCHW, ``backward`` with the same cotangent);
- the whole forward + backward of the loss (no optimiser) in jaxcnn and PyTorch;
- conv2 (26×26×32→64, 3×3) taken apart: building im2col's patch matrix, its three GEMMs (forward ``P W``,
  ``Ȳ Wᵀ`` for the input gradient, ``Pᵀ Ȳ`` for the kernel gradient, with the rate each runs at), and a
  candidate lever, the partial lowering (``--no-conv2-parts`` leaves this section out).

The partial lowering lowers only the last spatial axis (``Q[n, h, w, (j, c)] = x[n, h, w + j, c]``, 3× the
input instead of im2col's 9×), runs one GEMM against all three kernel rows
(``Z = Q·W'``, ``W'[(j, c), (i, o)] = w[i, j, c, o]``) and sums the rows' shifted outputs,
``y[n, h, w, o] = Σ_i Z[n, h + i, w, i, o]`` (``step_levers.partial_lowering``); it is timed forward alone and
under ``jax.grad`` here, and in the whole training chunk by ``step_levers.py --variants partial-lowering``.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import jaxcnn  # noqa: E402

jaxcnn.configure_process(interrupt=False)  # as the `jaxcnn` command runs: freed memory kept

import argparse
import json
import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops.convolution.explicit import patch_matrix
from jaxcnn.ops import losses
from jaxcnn.ops import pool as pool_lib
from jaxcnn.nn import models
from jaxcnn.proof.gradients import MODES, loss_and_grad
import _timing as bench
from peer_nets import oihw, torch_net  # benchmarks/ is the script's path
from step_levers import partial_lowering  # the lever's one definition

from jaxcnn.ops import convolution as conv_lib  # noqa: E402
from jaxcnn.ops import linear as dense_lib  # noqa: E402


def _vjp_call(function, arguments, cotangent):
    """A jitted call returning ``function``'s output and its VJP of ``cotangent`` w.r.t. every argument."""

    def forward_and_vjp(cotangent, *arguments):
        output, pullback = jax.vjp(function, *arguments)
        return output, pullback(cotangent)

    compiled = jax.jit(forward_and_vjp)
    return lambda: compiled(cotangent, *arguments)


def jax_layers(grad, arrays, rng):
    """name -> zero-argument callable, one per layer of the classic net, in mode ``grad``."""
    x0, w1, b1, a1, w2, b2, a2, h, wd, bd, h2, wo, bo, labels = arrays
    cot = lambda shape: jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    relu = jax.nn.relu
    return {
        "conv1 1→32": _vjp_call(lambda w, b: conv_lib.conv(x0, w, b, grad=grad), (w1, b1), cot(a1.shape)),
        "ReLU": _vjp_call(relu, (a1,), cot(a1.shape)),
        "conv2 32→64": _vjp_call(lambda x, w, b: conv_lib.conv(x, w, b, grad=grad), (a1, w2, b2), cot(a2.shape)),
        "ReLU + max pool": _vjp_call(lambda x: pool_lib.max_pool(relu(x), 2, grad=grad), (a2,),
                                     cot((a2.shape[0], 12, 12, 64))),
        "dense 9216→128 + ReLU": _vjp_call(lambda x, w, b: relu(dense_lib.dense(x, w, b, grad=grad)), (h, wd, bd),
                                           cot(h2.shape)),
        "dense 128→10 + loss": _vjp_call(
            lambda x, w, b: losses.softmax_cross_entropy(dense_lib.dense(x, w, b, grad=grad), labels),
            (h2, wo, bo), jnp.float32(1.0)),
    }


def torch_layers(arrays, rng):
    """The same layers in PyTorch eager, NCHW."""
    import torch  # pylint: disable=import-outside-toplevel
    functional = torch.nn.functional
    x0, w1, b1, a1, w2, b2, a2, h, wd, bd, h2, wo, bo, labels = (np.asarray(a) for a in arrays)
    nchw = lambda a: torch.tensor(a).permute(0, 3, 1, 2).contiguous()
    kernel = lambda w: torch.tensor(oihw(w)).requires_grad_()
    leaf = lambda a: torch.tensor(a).requires_grad_()
    tx0, tw1, tb1 = nchw(x0), kernel(w1), leaf(b1)
    ta1, tw2, tb2 = nchw(a1).requires_grad_(), kernel(w2), leaf(b2)
    ta2 = nchw(a2).requires_grad_()
    th, twd, tbd = leaf(h), leaf(np.ascontiguousarray(wd.T)), leaf(bd)
    th2, two, tbo, tlabels = leaf(h2), leaf(np.ascontiguousarray(wo.T)), leaf(bo), torch.tensor(labels).long()

    def timed(function):
        cotangent = torch.tensor(rng.standard_normal(tuple(function().shape), dtype=np.float32))

        def run():
            function().backward(cotangent)
        return run

    return {
        "conv1 1→32": timed(lambda: functional.conv2d(tx0, tw1, tb1)),
        "ReLU": timed(lambda: functional.relu(ta1)),
        "conv2 32→64": timed(lambda: functional.conv2d(ta1, tw2, tb2)),
        "ReLU + max pool": timed(lambda: functional.max_pool2d(functional.relu(ta2), 2)),
        "dense 9216→128 + ReLU": timed(lambda: functional.relu(functional.linear(th, twd, tbd))),
        "dense 128→10 + loss": timed(lambda: functional.cross_entropy(functional.linear(th2, two, tbo), tlabels)),
    }


def whole_steps(grads, batch, rng):
    """Forward + backward of the classic net's loss: jaxcnn per mode, PyTorch eager."""
    import torch  # pylint: disable=import-outside-toplevel
    x = jnp.asarray(rng.random((batch, 28, 28, 1), dtype=np.float32))
    labels = jnp.asarray(rng.integers(0, 10, batch))
    model = models.classic_net()
    _, params = model.init(jax.random.key(0), (-1, *x.shape[1:]))
    candidates = {}
    for grad in grads:
        step = jax.jit(lambda p, x, y, grad=grad: loss_and_grad(model, p, x, y, grad=grad))
        candidates[f"whole step, jaxcnn {grad}"] = lambda step=step: step(params, x, labels)
    net = torch_net("classic")
    tx = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    tlabels = torch.tensor(np.asarray(labels)).long()

    def torch_step():
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(tx), tlabels).backward()
    candidates["whole step, PyTorch"] = torch_step
    return candidates


def conv2_parts(a1, w2, a2, rng):
    """conv2 taken apart: the patch matrix, its three GEMMs, the partial lowering."""
    config = conv_lib.conv_config(a1.shape, w2.shape, stride=1, padding="VALID", dilation=1, groups=1)
    patches = jax.jit(lambda x: patch_matrix(x, (3, 3), config).reshape(-1, 288))
    p = patches(a1)
    w = w2.reshape(288, 64)
    dy = jnp.asarray(rng.standard_normal((p.shape[0], 64), dtype=np.float32))
    gemm = {"forward P·W": (jax.jit(lambda p, w: p @ w), (p, w)),
            "input grad Ȳ·Wᵀ": (jax.jit(lambda dy, w: dy @ w.T), (dy, w)),
            "kernel grad Pᵀ·Ȳ": (jax.jit(lambda p, dy: p.T @ dy), (p, dy))}
    candidates = {"im2col patch matrix (build)": lambda: patches(a1)}
    candidates.update({f"GEMM {name}": (lambda f=f, a=a: f(*a)) for name, (f, a) in gemm.items()})
    lowered = jax.jit(partial_lowering)
    explicit = jax.jit(lambda x, w: conv_lib.conv(x, w, impl="explicit"))
    candidates["forward, im2col"] = lambda: explicit(a1, w2)
    candidates["forward, partial lowering"] = lambda: lowered(a1, w2)
    cot = jnp.asarray(rng.standard_normal(a2.shape, dtype=np.float32))
    candidates["fwd+bwd (jax.grad), im2col"] = _vjp_call(lambda x, w: conv_lib.conv(x, w, impl="explicit"), (a1, w2), cot)
    candidates["fwd+bwd (jax.grad), partial lowering"] = _vjp_call(partial_lowering, (a1, w2), cot)
    flops = 2.0 * p.shape[0] * 288 * 64
    return candidates, {f"GEMM {name}": flops for name in gemm}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grads", nargs="+", choices=MODES[:2], default=["autodiff", "manual"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-conv2-parts", dest="conv2_parts", action="store_false")
    parser.add_argument("--out", type=pathlib.Path, help="write the medians and every round as JSON")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n = args.batch
    normal = lambda *shape, scale=1.0: jnp.asarray(scale * rng.standard_normal(shape, dtype=np.float32))
    arrays = (jnp.asarray(rng.random((n, 28, 28, 1), dtype=np.float32)), normal(3, 3, 1, 32, scale=0.3),
              normal(32, scale=0.1), jax.nn.relu(normal(n, 26, 26, 32)), normal(3, 3, 32, 64, scale=0.05),
              normal(64, scale=0.1), normal(n, 24, 24, 64), jax.nn.relu(normal(n, 9216)),
              normal(9216, 128, scale=0.01), normal(128, scale=0.1), jax.nn.relu(normal(n, 128)),
              normal(128, 10, scale=0.1), normal(10, scale=0.1), jnp.asarray(rng.integers(0, 10, n)))
    layer_names = list(jax_layers("autodiff", arrays, rng))
    candidates = {}
    for grad in args.grads:
        candidates.update({f"{name} | jaxcnn {grad}": f for name, f in jax_layers(grad, arrays, rng).items()})
    candidates.update({f"{name} | PyTorch": f for name, f in torch_layers(arrays, rng).items()})
    candidates.update(whole_steps(args.grads, n, rng))
    flops = {}
    if args.conv2_parts:
        parts, flops = conv2_parts(arrays[3], arrays[4], arrays[6], rng)
        candidates.update({f"conv2 part: {name}": f for name, f in parts.items()})

    times, before, after = bench.timed_with_machine_rate(candidates, args.rounds)
    ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    print(bench.machine_line(before, after))
    print(f"classic net, batch {n}, float32, medians of {args.rounds} interleaved rounds (ms, forward + VJP)")
    header = f"{'layer':24s}" + "".join(f"{'jaxcnn ' + g:>18s}" for g in args.grads) + f"{'PyTorch':>10s}"
    print(header + "".join(f"{g + ' ×PyTorch':>20s}" for g in args.grads))
    for name in layer_names:
        torch_ms = ms[f"{name} | PyTorch"]
        mine = [ms[f"{name} | jaxcnn {g}"] for g in args.grads]
        print(f"{name:24s}" + "".join(f"{v:18.2f}" for v in mine) + f"{torch_ms:10.2f}"
              + "".join(f"{torch_ms / v:20.2f}" for v in mine))
    torch_whole = ms["whole step, PyTorch"]
    for grad in args.grads:
        mine = ms[f"whole step, jaxcnn {grad}"]
        print(f"whole step, jaxcnn {grad}: {mine:.2f} ms (sum of its layers {sum(ms[f'{l} | jaxcnn {grad}'] for l in layer_names):.2f}),"
              f" PyTorch {torch_whole:.2f} ms (sum {sum(ms[f'{l} | PyTorch'] for l in layer_names):.2f}):"
              f" {torch_whole / mine:.2f}× PyTorch's speed")
    if args.conv2_parts:
        print("conv2 (26×26×32→64, 3×3) taken apart:")
        for name in (k for k in ms if k.startswith("conv2 part: ")):
            short = name[len("conv2 part: "):]
            rate = f"  {flops[short] / ms[name] / 1e6:6.1f} GFLOP/s" if short in flops else ""
            print(f"  {short:40s} {ms[name]:8.2f} ms{rate}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "machine": bench.machine_line(before, after), "batch": n, "rounds": args.rounds,
            "median_ms": ms, "rounds_ms": {k: [1e3 * v for v in vs] for k, vs in times.items()}}, indent=1))


if __name__ == "__main__":
    main()
