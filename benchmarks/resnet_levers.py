"""ResNet-20 on the CPU: the training chunk and the evaluation, candidate against candidate, in one interleaved run.

    python benchmarks/resnet_levers.py --chunks auto:autodiff:unrolled explicit:autodiff:rolled \\
        explicit:manual:rolled --second-forward --evals resnet:auto:500 resnet:explicit:500 --rounds 4

``--chunks`` times ``jaxcnn.training.steps.make_train_chunk`` (what ``jaxcnn train`` compiles) on 8 steps of a
random 5,000-image set (40 batches of ``--batch`` 125), AdamW, augment none, one call per round; a candidate is ``IMPL:GRAD:LOOP``
(``IMPL`` the model's conv impl, or ``auto-before``: ``auto`` as it resolved before 2026-12-01's change, padded
3×3 convs through ``lax`` in training too; ``GRAD`` a gradient mode; ``LOOP`` ``rolled`` or ``unrolled`` scan).
``--second-forward`` adds, for each candidate, the step as it was before the step took its accuracy from the
differentiated forward: the accuracy's logits come from a second ``apply`` (suffix ``+2fwd``).
``--evals`` times ``steps.make_evaluate`` on ``--test-images`` 10,000 random test images; a candidate is ``MODEL:IMPL:BATCH``
(``IMPL`` ``auto`` resolves with :func:`jaxcnn.ops.convolution.forward_only`, as evaluation does; ``auto-unchunked`` is
that resolution as it was before the chunked explicit forward: ``lax`` for every padded 3×3 conv with >= 8 input
channels, the explicit forward's patches in one piece).
Prints ms per training step and seconds per evaluation, medians over ``--rounds`` interleaved rounds with every
round's value, the CPU model and the float32 matmul rate measured before and after.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import contextlib
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.nn import models
from jaxcnn.proof import gradients
from jaxcnn.training import steps
import _timing as bench

from jaxcnn.ops import convolution as conv_lib  # noqa: E402

CHUNK, STEPS_PER_EPOCH = 8, 40


@contextlib.contextmanager
def second_forward():
    """The step as before: ``loss_grad_and_logits``'s logits replaced by a second ``apply`` in training mode."""
    original = gradients.loss_grad_and_logits

    def separate(model, params, x, labels, *, grad, state=(), key=None, **kwargs):
        value, grads, new_state, _ = original(model, params, x, labels, grad=grad, state=state, key=key, **kwargs)
        logits, _ = model.apply_with_state(params, state, x, key=key, train=True)
        return value, grads, new_state, logits

    gradients.loss_grad_and_logits = separate
    try:
        yield
    finally:
        gradients.loss_grad_and_logits = original


def chunk_candidate(spec: str, images, labels, twice: bool, batch: int):
    impl, grad, loop = spec.split(":")
    if loop not in ("rolled", "unrolled"):
        raise SystemExit(f"LOOP must be rolled or unrolled, got {loop!r} in {spec!r}")
    before = impl == "auto-before"
    model, tx = models.resnet(impl="auto" if before else impl), optax.adamw(1e-3)
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 28, 28, 1))
    opt_state = tx.init(params)
    key, index = jax.random.key(3), jnp.int32(0)
    with second_forward() if twice else contextlib.nullcontext(), \
            conv_lib.forward_only() if before else contextlib.nullcontext():
        start = time.perf_counter()
        compiled = steps.make_train_chunk(
            model, tx, grad=grad, augment="none", batch_size=batch, steps_per_epoch=STEPS_PER_EPOCH, chunk=CHUNK,
            unroll=loop == "unrolled").lower(params, opt_state, images, labels, key, index, state).compile()
        seconds = time.perf_counter() - start
    box = [(params, opt_state, state)]

    def call():
        out = compiled(*box[0][:2], images, labels, key, index, box[0][2])
        box[0] = (out[0], out[1], out[-1])
        return out[2]

    return call, seconds


def unchunked_auto():
    """``auto`` for a forward alone as before the chunked explicit forward: ``lax`` for every padded
    stride-1 2-D conv with >= 8 input channels, the explicit forward's patch matrix in one piece."""
    padded_lax = conv_lib.Rule("lax", lambda c: c.forward_only and c.padded_unit_2d and c.in_channels >= 8,
                               "a padded forward alone, any number of channels")
    policy = conv_lib.Policy((padded_lax, *conv_lib.AUTO.rules))  # AUTO's own first rules also pick lax
    policy = policy.with_impl("explicit", conv_lib.explicit_impl(chunk_bytes=None))
    return conv_lib.use_policy(policy.with_impl("hybrid", conv_lib.hybrid_impl(chunk_bytes=None)))


def eval_candidate(spec: str, images, labels):
    name, impl, batch = spec.split(":")
    test = steps.batch_for_eval(images, labels, int(batch))
    before = impl == "auto-unchunked"
    model = models.get_model(name, impl="auto" if before else impl)
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 28, 28, 1))
    evaluate = steps.make_evaluate(model)
    extra = [state] if state != () else []
    start = time.perf_counter()
    with unchunked_auto() if before else contextlib.nullcontext():
        compiled = evaluate.lower(params, test.images, test.labels, test.mask, *extra).compile()
    seconds = time.perf_counter() - start
    return (lambda: compiled(params, test.images, test.labels, test.mask, *extra)), seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", nargs="*", default=["auto-before:autodiff:unrolled", "auto:autodiff:rolled"])
    parser.add_argument("--second-forward", action="store_true")
    parser.add_argument("--evals", nargs="*", default=["resnet:auto:500", "resnet:explicit:500"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=125, help="training batch (the epoch has 40 of them)")
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    train = STEPS_PER_EPOCH * args.batch
    train_images = jnp.asarray(rng.random((train, 28, 28, 1), np.float32))
    train_labels = jnp.asarray(rng.integers(0, 10, train, np.int32))
    test_images = rng.random((args.test_images, 28, 28, 1), np.float32)
    test_labels = rng.integers(0, 10, args.test_images, np.int32)
    candidates, compile_seconds = {}, {}
    for spec in args.chunks:
        for twice in (False, True) if args.second_forward else (False,):
            name = f"chunk {spec}{'+2fwd' if twice else ''}"
            candidates[name], compile_seconds[name] = chunk_candidate(spec, train_images, train_labels, twice, args.batch)
            print(f"compiled {name} in {compile_seconds[name]:.1f} s", flush=True)
    for spec in args.evals:
        name = f"eval {spec}"
        candidates[name], compile_seconds[name] = eval_candidate(spec, test_images, test_labels)
        print(f"compiled {name} in {compile_seconds[name]:.1f} s", flush=True)
    times, rate_before, rate_after = bench.timed_with_machine_rate(candidates, args.rounds)
    print(bench.machine_line(rate_before, rate_after))
    results = {}
    for name, values in times.items():
        per = [v / CHUNK * 1e3 for v in values] if name.startswith("chunk") else values
        unit = "ms/step" if name.startswith("chunk") else "s"
        results[name] = {"median": statistics.median(per), "rounds": per, "unit": unit,
                         "compile_seconds": compile_seconds[name]}
        print(f"{name:42s} {statistics.median(per):9.2f} {unit}   rounds {[round(v, 2) for v in per]}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"cpu": bench.cpu_model(), "matmul_gflops": [rate_before, rate_after], "results": results},
                      handle, indent=1)


if __name__ == "__main__":
    main()
