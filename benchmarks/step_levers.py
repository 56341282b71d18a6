"""Levers of issue 12 on the training chunk, measured: one flat array for the scan carry, what bias + ReLU
fused into the GEMM could save at most, and ``auto``'s Winograd row for the hand rule (off by default).

    python benchmarks/step_levers.py --models classic lecture resnet --rounds 5

For each model it compiles ``jaxcnn.training.steps.make_train_chunk`` (what ``jaxcnn train`` compiles: a
``lax.scan`` over the chunk's batches, Adam, augment none, the model's default gradient mode
``loop.default_grad``) on ``--chunk`` steps of a random ``--steps-per-epoch`` × ``--batch`` image set, in
variants, and times one call per round, rounds interleaved, medians:

* ``tree``: the chunk as ``jaxcnn train`` runs it; the scan carries params and Adam's state as pytrees
  (classic 8 + 2×8 + 1 leaves, resnet 65 + 2×65 + 1, and BatchNorm's state).
* ``flat-opt``: Adam's state as one flat vector per moment (``optax.flatten``): the optimizer's update is one
  fused pass over two vectors instead of one per leaf.
* ``flat``: everything in the carry flat: the params are one vector (``ravel_pytree``), the model reads its
  leaves as slices of it, the gradient comes back as one vector, and Adam runs on vectors.
* ``no-bias-relu`` (classic, lecture): the convolutions without their bias and without the ReLU after them.
  Not the same network: it bounds from above what fusing bias + ReLU into the convolution's GEMM could save,
  because such a fusion still has to compute both, only without their separate passes over memory.
* ``winograd`` (``--grads manual`` only: under autodiff the row changes nothing): ``auto`` with the hand rule's
  Winograd row switched on (``AUTO.with_rules(winograd_rule(16))`` of ``jaxcnn.ops.convolution``, off by default;
  ``winograd_rule`` says why), so every 3×3 stride-1 layer with >= 16 input channels runs Winograd's forward
  and hand rule.
* ``partial-lowering``: the ``explicit`` impl's forward and hand rule replaced, for 2-D stride-1 ungrouped
  layers with >= 16 input channels, by :func:`partial_lowering` (im2col along the last spatial axis only, the
  kernel rows as shifted sums of one GEMM's outputs; ``experiments/layer_breakdown.py`` times it on conv2
  alone) and its hand rule (:func:`partial_lowering_input_grad`, :func:`partial_lowering_kernel_grad`).
* ``partial-lowering-forward``: the same forward, with im2col's hand rule (``W̄ = Pᵀ Ȳ`` and col2im) kept.

Prints ms per step (median over rounds, and every round), the CPU model and the float32 matmul rate before
and after; ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import contextlib
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxcnn.nn import models
from jaxcnn.nn.layers import Conv, Dense, Flatten, MaxPool, Relu, serial
from jaxcnn.ops import patches
from jaxcnn.proof.gradients import MODES
from jaxcnn.training import loop, steps
import _timing as bench

from jaxcnn.ops import convolution as conv_lib  # noqa: E402

VARIANTS = ("tree", "flat-opt", "flat", "no-bias-relu", "winograd", "partial-lowering", "partial-lowering-forward")


def without_bias_relu(name):
    """``name``'s network with bias-free convolutions and no ReLU after them (classic and lecture only)."""
    convs = [Conv(32, 3, bias=False), Conv(64, 3, bias=False)]
    if name == "classic":
        return serial(*convs, MaxPool(2), Flatten(), Dense(128), Relu(), Dense(10, init="glorot"))
    if name == "lecture":
        return serial(*convs, Flatten(), Dense(400), Relu(), Dense(10, init="glorot"))
    raise SystemExit(f"no-bias-relu is defined for classic and lecture, not {name!r}")


def flattened(model, params):
    """``model`` taking its params as one flat vector, and that vector: the leaves are slices of it."""
    flat, unravel = ravel_pytree(params)

    def init_with_state(key, input_shape):
        output_shape, layer_params, state = model.init_with_state(key, input_shape)
        return output_shape, ravel_pytree(layer_params)[0], state

    def apply_with_state(p, state, x, *, key=None, train=False, grad="autodiff"):
        return model.apply_with_state(unravel(p), state, x, key=key, train=train, grad=grad)

    return model._replace(init_with_state=init_with_state, apply_with_state=apply_with_state, layers=(),
                          name=f"flat {model.name}"), flat


def winograd_row(on):
    """``auto`` with its hand rule's Winograd row switched on at 16 input channels (off by default)."""
    return conv_lib.use_policy(conv_lib.AUTO.with_rules(conv_lib.winograd_rule(16))) if on else contextlib.nullcontext()


def _lowered(x, kw, out_w):
    """``Q[n, h, w, (j, c)] = x[n, h, w + j, c]``: im2col along the last spatial axis only."""
    return jnp.concatenate([x[:, :, j:j + out_w, :] for j in range(kw)], axis=-1)


def partial_lowering(x, w):
    """VALID stride-1 2-D correlation as one GEMM on the width-lowered input and shifted sums of its rows.

    .. math::
       Z = Q\\,W', \\quad W'[(j, c), (i, o)] = w[i, j, c, o], \\qquad
       y[n, h, w, o] = \\sum_i Z[n, h + i, w, (i, o)]
    """
    kh, kw, cin, cout = w.shape
    n, height, width, _ = x.shape
    out_h, out_w = height - kh + 1, width - kw + 1
    rows = _lowered(x, kw, out_w).reshape(-1, kw * cin) @ w.transpose(1, 2, 0, 3).reshape(kw * cin, kh * cout)
    rows = rows.reshape(n, height, out_w, kh, cout)
    return sum(rows[:, i:i + out_h, :, i, :] for i in range(kh))


def partial_lowering_input_grad(dy, w):
    """``x̄`` of :func:`partial_lowering` by the lecture's rule (``ȳ`` fully padded, the kernel rotated 180° and
    its channels swapped) through the same lowering; ``x̄`` of the padded input."""
    kh, kw = w.shape[:2]
    full = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    return partial_lowering(full, conv_lib.transpose_kernel(w, 1))


def partial_lowering_kernel_grad(dy, x, w_shape):
    """``w̄ = Qᵀ Z̄`` of :func:`partial_lowering` with ``Z̄[n, h, w, (i, o)] = ȳ[n, h − i, w, o]`` (zero outside)."""
    kh, kw, cin, cout = w_shape
    out_w = x.shape[2] - kw + 1
    dz = jnp.stack([jnp.pad(dy, ((0, 0), (i, kh - 1 - i), (0, 0), (0, 0))) for i in range(kh)], axis=-2)
    dw = _lowered(x, kw, out_w).reshape(-1, kw * cin).T @ dz.reshape(-1, kh * cout)
    return dw.reshape(kw, cin, kh, cout).transpose(2, 0, 1, 3)


def partial_lowering_impl(*, rule=True):
    """The ``explicit`` impl with its forward (and, with ``rule``, its hand rule) through the partial lowering
    where it applies (2-D, stride 1, undilated, ungrouped, >= 16 input channels), as a ``jaxcnn.ops.convolution.Impl``."""
    explicit = conv_lib.REGISTRY["explicit"]
    applies = lambda x_shape, w_shape, config: (len(w_shape) == 4 and config.stride == (1, 1)
                                                and config.dilation == (1, 1) and config.groups == 1
                                                and x_shape[-1] >= 16)

    def forward(x, w, config):
        if not applies(x.shape, w.shape, config):
            return explicit.forward(x, w, config)
        return partial_lowering(patches.pad_spatial(x, config.pairs), w)

    def input_grad(dy, x_shape, w, config):
        if not applies(x_shape, w.shape, config):
            return explicit.input_grad(dy, x_shape, w, config)
        return patches.pad_spatial(partial_lowering_input_grad(dy, w), [(-lo, -hi) for lo, hi in config.pairs])

    def kernel_grad(dy, x, w_shape, config):
        if not applies(x.shape, w_shape, config):
            return explicit.kernel_grad(dy, x, w_shape, config)
        return partial_lowering_kernel_grad(dy, patches.pad_spatial(x, config.pairs), w_shape)

    if not rule:
        return dataclasses.replace(explicit, name="partial-lowering-forward", forward=forward)
    return conv_lib.Impl("partial-lowering", forward, input_grad, kernel_grad)


def partial_lowering_in_explicit(on, *, rule=True):
    """``auto`` with :func:`partial_lowering_impl` wherever it picks ``explicit``."""
    if not on:
        return contextlib.nullcontext()
    return conv_lib.use_policy(conv_lib.AUTO.with_impl("explicit", partial_lowering_impl(rule=rule)))


def candidate(name, grad, variant, images, labels, args):
    model = without_bias_relu(name) if variant == "no-bias-relu" else models.get_model(name)
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 28, 28, 1))
    tx = optax.adam(1e-3)
    if variant == "flat-opt":
        tx = optax.flatten(tx)
    if variant == "flat":
        model, params = flattened(model, params)
    opt_state = tx.init(params)
    key, index = jax.random.key(3), jnp.int32(0)
    extra = (state,)
    start = time.perf_counter()
    with winograd_row(variant == "winograd"), partial_lowering_in_explicit(
            variant.startswith("partial-lowering"), rule=variant == "partial-lowering"):
        compiled = steps.make_train_chunk(
            model, tx, grad=grad, augment="none", batch_size=args.batch,
            steps_per_epoch=args.steps_per_epoch, chunk=args.chunk).lower(
                params, opt_state, images, labels, key, index, *extra).compile()
    seconds = time.perf_counter() - start
    box = [(params, opt_state, *extra)]

    def call():
        out = compiled(*box[0][:2], images, labels, key, index, *box[0][2:])
        box[0] = (out[0], out[1], *out[5:])
        return out[2]

    return call, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["classic", "lecture", "resnet"], choices=list(models.MODELS))
    parser.add_argument("--grads", nargs="+", default=["default"], choices=("default", *MODES),
                        help="gradient modes (default: the model's own, loop.default_grad)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=8, help="steps per timed call")
    parser.add_argument("--steps-per-epoch", type=int, default=32)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.steps_per_epoch % args.chunk:
        parser.error("--chunk must divide --steps-per-epoch")
    rng = np.random.default_rng(0)
    count = args.steps_per_epoch * args.batch
    images = jnp.asarray(rng.random((count, 28, 28, 1), np.float32))
    labels = jnp.asarray(rng.integers(0, 10, count, np.int32))
    candidates, compile_seconds = {}, {}
    for name in args.models:
        for grad in dict.fromkeys(loop.default_grad(name) if g == "default" else g for g in args.grads):
            for variant in args.variants:
                if (variant == "no-bias-relu" and name not in ("classic", "lecture")
                        or variant == "winograd" and grad != "manual"):
                    continue  # not defined / the same program as "tree"
                label = f"{name} {grad} {variant}"
                candidates[label], compile_seconds[label] = candidate(name, grad, variant, images, labels, args)
                print(f"compiled {label} in {compile_seconds[label]:.1f} s", flush=True)
    times, rate_before, rate_after = bench.timed_with_machine_rate(candidates, args.rounds)
    print(f"{bench.machine_line(rate_before, rate_after)}; batch {args.batch}, {args.chunk} steps a call")
    results = {}
    for label, values in times.items():
        per = [v / args.chunk * 1e3 for v in values]
        name, grad, _ = label.split()
        tree = f"{name} {grad} tree"
        base = statistics.median(times[tree]) / args.chunk * 1e3 if tree in times else None
        results[label] = {"median_ms_per_step": statistics.median(per), "rounds": per,
                          "compile_seconds": compile_seconds[label]}
        speed = f"  ×{base / statistics.median(per):.3f} of tree" if base else ""
        print(f"{label:32s} {statistics.median(per):9.2f} ms/step{speed}   rounds {[round(v, 1) for v in per]}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"cpu": bench.cpu_model(), "matmul_gflops": [rate_before, rate_after], "args": vars(args),
                       "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
