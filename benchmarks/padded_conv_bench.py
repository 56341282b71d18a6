"""ResNet's convolutions: the explicit (im2col) impl against lax, fwd+bwd, padded and not.

    python benchmarks/padded_conv_bench.py --rounds 5

Times ``jax.grad`` (dx and dw) of ``sum(conv(x, w)**2)`` for each impl, jitted, float32, batch 125,
interleaved rounds, medians; prints explicit/lax per shape (above 1: lax is faster) and the CPU
model. The shapes are ResNet-20's 3×3 ``SAME`` convolutions on 28×28 digits and the same shapes
``VALID``: the measurements behind ``resolve_impl``'s padded-2-D row.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jaxcnn import conv
from _timing import cpu_model

CASES = [
    ((125, 28, 28, 16), (3, 3, 16, 16), 1, "SAME"), ((125, 28, 28, 16), (3, 3, 16, 16), 1, "VALID"),
    ((125, 14, 14, 32), (3, 3, 32, 32), 1, "SAME"), ((125, 26, 26, 32), (3, 3, 32, 32), 1, "VALID"),
    ((125, 7, 7, 64), (3, 3, 64, 64), 1, "SAME"), ((125, 14, 14, 64), (3, 3, 64, 64), 1, "VALID"),
    ((125, 26, 26, 32), (3, 3, 32, 64), 1, "SAME"), ((125, 26, 26, 32), (3, 3, 32, 64), 1, "VALID"),
    ((125, 28, 28, 16), (3, 3, 16, 64), 1, "SAME"), ((125, 28, 28, 16), (3, 3, 16, 32), 2, "SAME"),
    ((125, 28, 28, 16), (1, 1, 16, 32), 2, "VALID"), ((125, 28, 28, 1), (3, 3, 1, 16), 1, "SAME"),
]
IMPLS = ("explicit", "lax")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    programs = {}
    for x_shape, w_shape, stride, padding in CASES:
        x = jax.random.normal(jax.random.key(0), x_shape)
        w = jax.random.normal(jax.random.key(1), w_shape)
        for impl in IMPLS:
            loss = lambda x, w, i=impl, s=stride, p=padding: jnp.sum(conv(x, w, stride=s, padding=p, impl=i) ** 2)
            program = jax.jit(jax.grad(loss, argnums=(0, 1)))
            jax.block_until_ready(program(x, w))
            programs[(x_shape, w_shape, stride, padding, impl)] = (program, x, w)
    times = {key: [] for key in programs}
    for _ in range(args.rounds):
        for key, (program, x, w) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(x, w))
            times[key].append(time.perf_counter() - start)
    print(f"CPU: {cpu_model()}; {args.rounds} interleaved rounds, medians, fwd+bwd")
    for x_shape, w_shape, stride, padding in CASES:
        explicit, lax = (statistics.median(times[(x_shape, w_shape, stride, padding, i)]) for i in IMPLS)
        print(f"{'×'.join(map(str, x_shape[1:]))} -> {w_shape[-1]}, {w_shape[0]}×{w_shape[1]}, stride {stride}, "
              f"{padding:5s}: explicit {1e3 * explicit:6.1f} ms  lax {1e3 * lax:6.1f} ms  explicit/lax {explicit / lax:.2f}")


if __name__ == "__main__":
    main()
