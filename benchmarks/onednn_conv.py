"""oneDNN's convolution passes through XLA's FFI against XLA's convolution and PyTorch, layer by layer.

    python benchmarks/onednn_conv.py --rounds 7 --out runs/onednn_conv.json

For each layer (batch ``--batch``, float32, random data): the forward, the input gradient ``∂x`` and
the kernel gradient ``∂w``, each timed alone, for

- ``onednn``: :mod:`jaxcnn.ops.onednn`'s passes (``forward``, ``input_gradient``, ``weight_gradient``),
  each one custom call, jitted;
- ``lax``: ``lax.conv_general_dilated`` and its ``jax.vjp`` in ``x`` or in ``w`` (what ``jax.grad`` runs), jitted;
- ``explicit``: the im2col/col2im impl's three passes (``REGISTRY["explicit"]``: patches and GEMMs), jitted,
  what ``auto`` ran for these layers before oneDNN;
- ``torch``: PyTorch eager, channels-last (``torch.channels_last``), ``conv2d`` and
  ``aten.convolution_backward`` with one output mask per gradient (PyTorch's CPU convolutions are oneDNN's);

``transposed``: the autoencoder's two upsampling layers (``experiments/autoencoder.py``: 7×7×32→14×14×16 and
14×14×16→28×28×1, 3×3, stride 2, ``SAME``) as :func:`jaxcnn.conv_transpose` forward + VJP with a random cotangent,
under ``grad="manual"`` and ``"autodiff"``, on ``onednn``, ``explicit`` (what its ``auto`` runs) and ``lax``;
and ``block``: a residual block's loss and gradient (conv → ReLU → conv + x, jitted) on oneDNN and on
``lax``, where XLA's own ops run between the custom calls (what oneDNN's OpenMP threads and XLA's
threads share). All candidates are timed in interleaved rounds (each round calls every one once);
medians are printed with the CPU model, ``OMP_NUM_THREADS`` and the load average, since the machine
may be shared. The process keeps freed memory for reuse, as the ``jaxcnn`` command does
(:func:`jaxcnn.configure_process`). Run it once per thread setting (e.g. ``OMP_NUM_THREADS=1``) to compare them.
"""

from __future__ import annotations

import argparse
import json
import os
import os as _os
import pathlib
import statistics
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import jaxcnn  # noqa: E402

jaxcnn.configure_process(interrupt=False)  # the `jaxcnn` command's allocator setting, before jax starts

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops import onednn
from jaxcnn.ops.convolution import REGISTRY, conv_config
import _timing as bench  # noqa: E402  (benchmarks/, beside this script)

#: name -> (input spatial, C_in, C_out, window, padding)
LAYERS = {
    "classic conv2 26×26×32→64 VALID": ((26, 26), 32, 64, (3, 3), "VALID"),
    "resnet 28×28×16→16 SAME": ((28, 28), 16, 16, (3, 3), "SAME"),
    "resnet 14×14×32→32 SAME": ((14, 14), 32, 32, (3, 3), "SAME"),
    "resnet 7×7×64→64 SAME": ((7, 7), 64, 64, (3, 3), "SAME"),
}
PASSES = ("forward", "∂x", "∂w")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (medians reported)")
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-transposed", action="store_true", help="leave the transposed convolutions out")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON file for the medians")
    return parser.parse_args(argv)


def _arrays(batch, spatial, cin, cout, window, padding, rng):
    x = jnp.asarray(rng.standard_normal((batch, *spatial, cin), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((*window, cin, cout), dtype=np.float32) / np.sqrt(cin * np.prod(window)))
    config = conv_config(x.shape, w.shape, stride=1, padding=padding, dilation=1, groups=1)
    y_shape = jax.eval_shape(lambda x, w: onednn.forward(x, w, config), x, w).shape
    dy = jnp.asarray(rng.standard_normal(y_shape, dtype=np.float32))
    return x, w, dy, config


def _lax_forward(x, w, config):
    return jax.lax.conv_general_dilated(x, w, (1,) * (x.ndim - 2), config.pairs,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def jax_candidates(name, x, w, dy, config):
    forward = jax.jit(lambda x, w: onednn.forward(x, w, config))
    dx = jax.jit(lambda dy, x, w: onednn.input_gradient(dy, x, w, config))
    dw = jax.jit(lambda dy, x, w: onednn.weight_gradient(dy, x, w, config))
    lax_forward = jax.jit(lambda x, w: _lax_forward(x, w, config))
    lax_dx = jax.jit(lambda dy, x, w: jax.vjp(lambda x: _lax_forward(x, w, config), x)[1](dy)[0])
    lax_dw = jax.jit(lambda dy, x, w: jax.vjp(lambda w: _lax_forward(x, w, config), w)[1](dy)[0])
    explicit = REGISTRY["explicit"]
    explicit_forward = jax.jit(lambda x, w: explicit.forward(x, w, config))
    explicit_dx = jax.jit(lambda dy, w: explicit.input_grad(dy, x.shape, w, config))
    explicit_dw = jax.jit(lambda dy, x: explicit.kernel_grad(dy, x, w.shape, config))
    return {
        (name, "explicit", "forward"): lambda: explicit_forward(x, w),
        (name, "explicit", "∂x"): lambda: explicit_dx(dy, w),
        (name, "explicit", "∂w"): lambda: explicit_dw(dy, x),
        (name, "onednn", "forward"): lambda: forward(x, w),
        (name, "onednn", "∂x"): lambda: dx(dy, x, w),
        (name, "onednn", "∂w"): lambda: dw(dy, x, w),
        (name, "lax", "forward"): lambda: lax_forward(x, w),
        (name, "lax", "∂x"): lambda: lax_dx(dy, x, w),
        (name, "lax", "∂w"): lambda: lax_dw(dy, x, w),
    }


def torch_candidates(name, x, w, dy, config):
    import torch  # pylint: disable=import-outside-toplevel

    def nchw(a):
        return torch.from_numpy(np.array(a)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    tx, tdy = nchw(x), nchw(dy)
    tw = torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    (lo_h, hi_h), (lo_w, hi_w) = config.pairs
    assert lo_h == hi_h and lo_w == hi_w, "symmetric padding only"
    padding = [lo_h, lo_w]

    def backward(mask):
        return torch.ops.aten.convolution_backward(tdy, tx, tw, None, [1, 1], padding, [1, 1], False, [0, 0], 1,
                                                   mask)

    def run(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    return {
        (name, "torch", "forward"): run(lambda: torch.nn.functional.conv2d(tx, tw, None, 1, padding)),
        (name, "torch", "∂x"): run(lambda: backward([True, False, False])),
        (name, "torch", "∂w"): run(lambda: backward([False, True, False])),
    }


#: name -> (y spatial, C_y, C_out of the transposed conv): 3×3, stride 2, SAME
TRANSPOSED = {
    "autoencoder up 7×7×32→14×14×16": ((7, 7), 32, 16),
    "autoencoder up 14×14×16→28×28×1": ((14, 14), 16, 1),
}


def transposed_candidates(batch, rng):
    """The transposed layers' forward + VJP on oneDNN, im2col and lax, in both gradient modes."""
    candidates = {}
    for name, (spatial, cy, cout) in TRANSPOSED.items():
        y = jnp.asarray(rng.standard_normal((batch, *spatial, cy), dtype=np.float32))
        w = jnp.asarray(rng.standard_normal((3, 3, cout, cy), dtype=np.float32) / np.sqrt(9 * cy))
        dz = jnp.asarray(rng.standard_normal((batch, *(2 * n for n in spatial), cout), dtype=np.float32))
        for impl in ("onednn", "explicit", "lax"):
            for grad in ("manual", "autodiff"):
                def op(y, w, impl=impl, grad=grad):
                    return jaxcnn.conv_transpose(y, w, stride=2, padding="SAME", impl=impl, grad=grad)

                run = jax.jit(lambda y, w, dz, op=op: jax.vjp(op, y, w)[1](dz))
                candidates[(name, impl, f"fwd+bwd {grad}")] = lambda run=run, y=y, w=w, dz=dz: run(y, w, dz)
    return candidates


def block_candidates(x, w, rng):
    """A residual block's loss and gradient, conv → ReLU → conv + x, on oneDNN and on lax."""
    w2 = jnp.asarray(rng.standard_normal(w.shape, dtype=np.float32) / np.sqrt(w.shape[2] * 9))
    config = conv_config(x.shape, w.shape, stride=1, padding="SAME", dilation=1, groups=1)

    def loss(conv):
        def block(x, w, w2):
            return jnp.sum(jax.nn.relu(conv(jax.nn.relu(conv(x, w)), w2) + x) ** 2)
        return jax.jit(jax.value_and_grad(block, argnums=(0, 1, 2)))

    onednn_step = loss(lambda x, w: onednn.conv_onednn(x, w, padding="SAME"))
    lax_step = loss(lambda x, w: _lax_forward(x, w, config))
    return {("resnet 28×28×16 block", "onednn", "fwd+bwd"): lambda: onednn_step(x, w, w2),
            ("resnet 28×28×16 block", "lax", "fwd+bwd"): lambda: lax_step(x, w, w2)}


def main(argv=None):
    args = parse_args(argv)
    if not onednn.available():
        raise SystemExit(f"oneDNN unavailable: {onednn.unavailable_reason()}")
    rng = np.random.default_rng(0)
    candidates = {}
    for name in args.layers:
        spatial, cin, cout, window, padding = LAYERS[name]
        x, w, dy, config = _arrays(args.batch, spatial, cin, cout, window, padding, rng)
        candidates.update(jax_candidates(name, x, w, dy, config))
        if not args.no_torch:
            candidates.update(torch_candidates(name, x, w, dy, config))
        if name.startswith("resnet 28"):
            candidates.update(block_candidates(x, w, rng))
    if not args.no_transposed:
        candidates.update(transposed_candidates(args.batch, rng))
    times, before, after = bench.timed_with_machine_rate(candidates, args.rounds)
    medians = {key: statistics.median(values) * 1e3 for key, values in times.items()}
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(bench.machine_line(before, after))
    print(f"batch {args.batch}, {args.rounds} interleaved rounds, medians in ms; OMP_NUM_THREADS={threads}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    impls = ("onednn", "explicit", "lax", "torch")
    print(f"{'layer':36s} {'pass':17s} " + " ".join(f"{impl:>8s}" for impl in impls))
    for layer in dict.fromkeys(key[0] for key in medians):
        for part in dict.fromkeys(key[2] for key in medians if key[0] == layer):
            cells = [medians.get((layer, impl, part)) for impl in impls]
            print(f"{layer:36s} {part:17s} " + " ".join(f"{c:8.2f}" if c is not None else f"{'-':>8s}" for c in cells))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows = [dict(layer=k[0], impl=k[1], part=k[2], median_ms=v, times_ms=[t * 1e3 for t in times[k]])
                for k, v in medians.items()]
        args.out.write_text(json.dumps(dict(machine=bench.machine_line(before, after), batch=args.batch,
                                            rounds=args.rounds, omp_num_threads=threads, rows=rows), indent=1))


if __name__ == "__main__":
    main()
