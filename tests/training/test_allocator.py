"""jaxcnn keeps the memory XLA:CPU frees: a repeated call stops faulting fresh pages in.

Counts minor page faults (``getrusage``), not time: the fact is deterministic, the speed is the
benchmark's business (BENCHMARKS.md, "Fresh pages").
"""

import os
import subprocess
import sys

import pytest

from jaxcnn.training import allocator
from oracles import small_pages_only

PROBE = r"""
import resource, sys
import jaxcnn
jaxcnn.configure_process(interrupt=False)  # the allocator setting (importing jaxcnn changes nothing), before jax
import jax, jax.numpy as jnp
x = jnp.ones((125, 28, 28, 16), jnp.float32)
def f(x):  # a 9-slice im2col: a 56 MB temporary, the case that faulted
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    p = jnp.concatenate([xp[:, i:i + 28, j:j + 28, :] for i in range(3) for j in range(3)], axis=-1)
    return jnp.sum(p.reshape(-1, 144) @ jnp.ones((144, 16)))
f = jax.jit(f)
for _ in range(3):
    f(x).block_until_ready()
faults = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2], jaxcnn.training.allocator.applied)
"""


def _faults(keep: str):
    env = dict(os.environ, JAXCNN_KEEP_FREED_MEMORY=keep, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    faults, applied = out.stdout.split()
    return float(faults), applied == "True"


@pytest.mark.skipif(allocator._glibc() is None, reason="the allocator settings are glibc's")
@pytest.mark.skipif(not small_pages_only(), reason="fault counts assume 4 KiB pages (no transparent huge pages)")
@pytest.mark.slow
def test_a_repeated_call_reuses_its_memory_and_the_switch_turns_it_off():
    kept, applied = _faults("1")
    fresh, not_applied = _faults("0")
    assert applied and not not_applied
    # 56 MB of temporaries = 13,700 pages of 4 KiB: without the settings every call faults them in anew.
    # With them most calls fault nothing; a few still fault the whole buffer in (glibc places it anew
    # now and then: BENCHMARKS.md, "Fresh pages"), hence the median over 15 calls.
    assert fresh > 13_000, fresh
    assert kept < fresh / 4, (kept, fresh)


def test_the_switch_is_read_and_a_non_glibc_process_is_left_alone(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "0")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setenv(allocator.ENV, "1")
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
