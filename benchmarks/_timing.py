"""Measurement helpers for the benchmark: interleaved medians, matmul rate, train steps.

Timings on shared machines are noisy, so every comparison is made *within one
run*: candidates are warmed up (compiled) first, then timed in interleaved
rounds (each round calls every candidate once), and the median per candidate
is reported together with ratios between candidates.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxcnn.proof.gradients import loss_and_grad


def interleaved_times(candidates: dict, repeats: int = 5, *, warm_up: bool = True) -> dict:
    """Seconds of every timed call of each zero-argument callable, timed in interleaved rounds.

    Round ``r`` calls every candidate once before round ``r + 1`` calls any; each call's result
    is blocked on (``jax.block_until_ready``; results that are not JAX arrays pass through).

    Args:
      candidates: name -> callable.
      repeats: number of timed rounds.
      warm_up: call each candidate once, untimed, first (compilation).

    Returns:
      name -> list of ``repeats`` seconds, in round order.
    """
    if warm_up:
        for fn in candidates.values():
            jax.block_until_ready(fn())
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times


def timed_with_machine_rate(candidates: dict, repeats: int = 5) -> tuple[dict, float, float]:
    """:func:`interleaved_times` between two measurements of the machine's float32 1024² matmul rate.

    The rate before and after says what phase a shared CPU was in while the rounds ran.

    Returns:
      ``(times, gflops_before, gflops_after)``, ``times`` as from :func:`interleaved_times`.
    """
    before = matmul_flops_per_second(1024, 5) / 1e9
    times = interleaved_times(candidates, repeats)
    return times, before, matmul_flops_per_second(1024, 5) / 1e9


def machine_line(before: float, after: float) -> str:
    """``CPU ..., jax ..., jaxcnn ...; float32 1024² matmul B GFLOP/s before, A after`` (the installed
    distribution's version: this floor does not import the package above it)."""
    try:
        version = importlib.metadata.version("jaxcnn")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return (f"CPU {cpu_model()}, jax {jax.__version__}, jaxcnn {version}; float32 1024² matmul "
            f"{before:.0f} GFLOP/s before, {after:.0f} after")


def interleaved_medians(candidates: dict, repeats: int = 5) -> dict:
    """Median seconds per call of each zero-argument callable (:func:`interleaved_times`, after one
    warm-up call per candidate): name -> median seconds."""
    return {name: statistics.median(values) for name, values in interleaved_times(candidates, repeats).items()}


def matmul_flops_per_second(n: int = 1024, repeats: int = 5) -> float:
    """The machine's float32 matmul rate, ``2n³ / t`` for an ``n×n`` product."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    product = jax.jit(jnp.matmul)
    seconds = interleaved_medians({"matmul": lambda: product(a, b)}, repeats)["matmul"]
    return 2 * n**3 / seconds


def compiled_train_step(model, params, x, labels, *, grad: str, learning_rate: float = 1e-3):
    """An ahead-of-time compiled Adam step and its compile time.

    Returns:
      ``(run, compile_seconds)``; ``run()`` performs one step on the fixed batch
      (params are not donated, so it can be repeated).
    """
    tx = optax.adam(learning_rate)
    state = tx.init(params)

    def step(params, state, x, labels):
        loss, grads, _ = loss_and_grad(model, params, x, labels, grad=grad)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, state, x, labels).compile()
    compile_seconds = time.perf_counter() - start
    return (lambda: compiled(params, state, x, labels)), compile_seconds


def compiled_flops(compiled) -> float:
    """XLA's FLOP count of a compiled program (``0.0`` where XLA gives none; custom calls count nothing)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def train_step_flops(model, params, x) -> float:
    """XLA's FLOP estimate for one forward + backward of ``model`` (≈ 3× the forward)."""
    return 3.0 * compiled_flops(jax.jit(lambda p, x: model.apply(p, x)).lower(params, x).compile())


def epoch_compile_seconds(model, params, images, labels, *, grad: str, batch_size: int, chunk: int,
                          unroll: bool = False) -> float:
    """Seconds to compile the training program that runs ``chunk`` Adam steps (``jaxcnn.training.steps``).

    ``chunk = 1`` is the single step; ``chunk = len(labels) // batch_size`` is the
    whole epoch, one ``lax.scan`` (rolled unless ``unroll``).
    """
    from jaxcnn.training import steps  # pylint: disable=import-outside-toplevel

    tx = optax.adam(1e-3)
    program = steps.make_train_chunk(model, tx, grad=grad, augment="none", batch_size=batch_size,
                                     steps_per_epoch=len(labels) // batch_size, chunk=chunk, unroll=unroll)
    start = time.perf_counter()
    program.lower(params, tx.init(params), images, labels, jax.random.key(0), jnp.int32(0)).compile()
    return time.perf_counter() - start


def cpu_model() -> str:
    """The CPU's ``model name`` from ``/proc/cpuinfo`` (``"unknown"`` where there is none): a figure
    without the CPU it came from is not a figure."""
    import pathlib  # pylint: disable=import-outside-toplevel

    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
