"""Where a training step's time goes: every layer of classic, lecture and ResNet-20, the loss and Adam,
against the machine's matmul rate and PyTorch eager's whole step.

    python benchmarks/step_breakdown.py --rounds 7 --out runs/step_breakdown.json
    python benchmarks/step_breakdown.py --models classic --batch 8 --rounds 1   # smoke

For each model, in one interleaved run (medians over ``--rounds``, batch ``--batch``, float32, random data
of the model's shapes, ``impl="auto"``, the model's own gradient mode as ``jaxcnn train`` takes it):

- each top-level layer of the model (``model.layers``: a ResNet's residual block is one row) as its
  forward and its VJP with a random cotangent, in training mode (BatchNorm on batch statistics), compiled
  alone; the first layer's input gradient is left out, as a training step leaves it out;
- the loss (softmax cross-entropy and its gradient) and the Adam update of every parameter;
- the whole step as a user writes it (``jax.jit`` of ``loss_and_grad`` + ``optax.adam``, params and
  optimizer state donated), and PyTorch eager's whole step on the same network (NCHW,
  ``torch.optim.Adam``).

Each layer's FLOPs are XLA's count for the same layer with ``impl="lax"`` (its ``cost_analysis`` of the
forward + VJP; oneDNN's custom calls are not counted by XLA), printed with the rate the layer ran at and
the machine's float32 1024² matmul rate before and after the rounds. The last lines compare the step's
FLOPs at the machine's matmul rate with the step time that 1.5× PyTorch eager's speed would need.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import jaxcnn  # noqa: E402

jaxcnn.configure_process(interrupt=False)  # as the `jaxcnn` command runs: freed memory kept

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import _timing as bench  # noqa: E402  (benchmarks/ is the script's path)
import peer_nets  # noqa: E402
from jaxcnn.nn import models  # noqa: E402
from jaxcnn.ops import losses  # noqa: E402
from jaxcnn.training import loop  # noqa: E402

LR = 1e-3


def _layer_call(layer, params, state, x, cotangent, *, grad, with_input_grad):
    """``(run, compiled)``: a compiled forward + VJP of one layer in training mode, and the compiled program."""

    def forward_and_vjp(params, x, cotangent):
        def forward(params, x):
            return layer.apply_with_state(params, state, x, train=True, grad=grad, key=jax.random.key(0))[0]

        if with_input_grad:
            y, pullback = jax.vjp(forward, params, x)
        else:
            y, pullback = jax.vjp(lambda p: forward(p, x), params)
        return y, pullback(cotangent)

    compiled = jax.jit(forward_and_vjp).lower(params, x, cotangent).compile()
    return lambda: compiled(params, x, cotangent), compiled


def model_candidates(name, batch, rng):
    """name's candidates (label -> callable), their FLOPs (label -> float), and the row order."""
    grad = loop.default_grad(name)
    model = models.get_model(name, impl="auto")
    reference = models.get_model(name, impl="lax")  # the same layers, convolutions XLA can count
    x = jnp.asarray(rng.random((batch, *peer_nets.INPUT_SHAPE), dtype=np.float32))
    labels = jnp.asarray(rng.integers(0, peer_nets.NUM_CLASSES, batch))
    key = jax.random.key(0)
    shape = (-1, *peer_nets.INPUT_SHAPE)
    _, all_params, all_state = model.init_with_state(key, shape)
    candidates, flops, rows = {}, {}, []
    h = x
    for index, (layer, counted) in enumerate(zip(model.layers, reference.layers)):
        params, state = all_params[index], (all_state[index] if all_state else ())
        y = layer.apply_with_state(params, state, h, train=True, grad=grad, key=key)[0]
        cotangent = jnp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
        title = " + ".join(sub.name for sub in layer.layers) if layer.name == "serial" else layer.name
        label = f"{index + 1:2d} {title} {tuple(h.shape[1:])}→{tuple(y.shape[1:])}"
        options = dict(grad=grad, with_input_grad=index > 0)
        candidates[label], _ = _layer_call(layer, params, state, h, cotangent, **options)
        flops[label] = bench.compiled_flops(_layer_call(counted, params, state, h, cotangent, **options)[1])
        rows.append(label)
        h = y
    loss = jax.jit(jax.value_and_grad(lambda logits: losses.softmax_cross_entropy(logits, labels)))
    candidates["loss (softmax cross-entropy + gradient)"] = lambda: loss(h)
    tx = optax.adam(LR)
    opt_state = tx.init(all_params)
    grads = jax.tree.map(jnp.ones_like, all_params)

    def adam_update(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    adam = jax.jit(adam_update)
    candidates["Adam update"] = lambda: adam(grads, opt_state, all_params)
    rows += ["loss (softmax cross-entropy + gradient)", "Adam update"]

    stateful = "state" in model.needs

    def step(params, opt_state, model_state, x, labels):
        loss_value, grads, model_state = jaxcnn.loss_and_grad(
            model, params, x, labels, grad=grad, **(dict(state=model_state) if stateful else {}))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, model_state, loss_value

    step = jax.jit(step, donate_argnums=(0, 1))
    held = {"params": jax.tree.map(jnp.array, all_params), "opt_state": tx.init(all_params), "state": all_state}

    def whole():
        held["params"], held["opt_state"], held["state"], loss_value = step(
            held["params"], held["opt_state"], held["state"], x, labels)
        return loss_value

    jax.block_until_ready(whole())  # the state's structure settles after one call: later calls reuse one program
    candidates["whole step (jit, donated)"] = whole
    candidates["PyTorch eager whole step"] = torch_step(name, all_params, x, labels)
    return candidates, flops, rows


def torch_step(name, params, x, labels):
    import torch  # pylint: disable=import-outside-toplevel

    net = peer_nets.build("torch", name, jax.device_get(params))
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    tx = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
    tlabels = torch.from_numpy(np.asarray(labels).astype(np.int64))

    def run():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(tx), tlabels).backward()
        optimizer.step()
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(peer_nets.MODELS), choices=peer_nets.MODELS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=pathlib.Path, help="write the medians and every round as JSON")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    report = {"cpu": bench.cpu_model(), "batch": args.batch, "rounds": args.rounds, "models": {}}
    for name in args.models:
        candidates, flops, rows = model_candidates(name, args.batch, rng)
        times, before, after = bench.timed_with_machine_rate(candidates, args.rounds)
        ms = {label: 1e3 * statistics.median(values) for label, values in times.items()}
        rate = max(before, after)
        print(bench.machine_line(before, after))
        print(f"{name}, batch {args.batch}, grad={loop.default_grad(name)}, impl=auto, float32, medians of "
              f"{args.rounds} interleaved rounds (forward + VJP per layer, ms)")
        whole = ms["whole step (jit, donated)"]
        print(f"{'part':58s}{'ms':>9s}{'of step':>9s}{'GFLOP':>8s}{'GFLOP/s':>9s}")
        for label in rows:
            gflop = flops.get(label, 0.0) / 1e9
            counted = gflop >= 0.005
            print(f"{label[:58]:58s}{ms[label]:9.2f}{ms[label] / whole:9.0%}"
                  + (f"{gflop:8.2f}{gflop / ms[label] * 1e3:9.0f}" if counted else ""))
        parts = sum(ms[label] for label in rows)
        total = sum(flops.values()) / 1e9
        torch_ms = ms["PyTorch eager whole step"]
        print(f"{'sum of the parts':58s}{parts:9.2f}")
        print(f"{'whole step (jit, donated)':58s}{whole:9.2f}{'':9s}{total:8.2f}{total / whole * 1e3:9.0f}")
        print(f"{'PyTorch eager whole step':58s}{torch_ms:9.2f}   (jaxcnn {torch_ms / whole:.2f}× its speed)")
        print(f"the step's {total:.2f} GFLOP at the machine's {rate:.0f} GFLOP/s matmul rate: "
              f"{total / rate * 1e3:.1f} ms; "
              f"1.5× PyTorch eager's speed needs a step of {torch_ms / 1.5:.1f} ms\n")
        report["models"][name] = {"ms": ms, "flops": flops, "rows": rows, "rounds": times,
                                  "matmul_gflops": [before, after], "grad": loop.default_grad(name)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
