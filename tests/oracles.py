"""Trusted references shared by the tests: autodiff VJPs, a comparison helper, shared strategies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, strategies as st

from jaxcnn import conv_output_size


def vjp(fn, primals, cotangent):
    """``jax.vjp`` of ``fn`` at ``primals`` applied to ``cotangent`` (the oracle)."""
    _, pullback = jax.vjp(fn, *primals)
    return pullback(cotangent)


def assert_close(actual, expected, *, rtol, err_msg=""):
    """Relative agreement measured against the expected array's scale.

    ``|a − e| <= rtol · max(1, max|e|)`` elementwise: "≤ rtol of the gradient's scale".
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, err_msg)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=err_msg)


def conv_arrays(x_shape, w_shape, seed, dtype):
    """Seeded normal ``x``, ``w`` and bias ``b`` for a convolution case."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=w_shape), dtype)
    b = jnp.asarray(rng.normal(size=w_shape[-1:]), dtype)
    return x, w, b


def run_fast(fn, *args):
    """``jit(fn)(*args)`` with XLA's backend optimisations off: compiling these
    tiny programs is what costs time (about half of it at level 0), not running them."""
    lowered = jax.jit(fn).lower(*args)
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


@st.composite
def conv_cases(draw):
    rank = draw(st.sampled_from((1, 1, 2, 2, 3)))
    max_n, max_k = (12, 5) if rank < 3 else (5, 3)
    spatial = tuple(draw(st.integers(1, max_n)) for _ in range(rank))
    window = tuple(draw(st.integers(1, max_k)) for _ in range(rank))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * rank)))
    dilation = draw(st.one_of(st.integers(1, 2), st.tuples(*[st.integers(1, 2)] * rank)))
    padding = draw(st.one_of(
        st.sampled_from(("VALID", "SAME", "FULL")),
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=rank, max_size=rank),
    ))
    groups = draw(st.sampled_from((1, 1, 2, 3)))
    cin = groups * draw(st.integers(1, 4 // groups if groups < 4 else 1))
    cout = groups * draw(st.integers(1, max(1, 4 // groups)))
    batch = draw(st.integers(1, 3))
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    sizes = [
        conv_output_size(n, f, p, s, d)
        for n, f, p, s, d in zip(
            spatial, window,
            padding if isinstance(padding, list) else [padding] * rank,
            stride if isinstance(stride, tuple) else [stride] * rank,
            dilation if isinstance(dilation, tuple) else [dilation] * rank,
        )
    ]
    assume(all(size >= 1 for size in sizes))  # the too-large window is its own test
    seed = draw(st.integers(0, 2**16))
    return (batch, *spatial, cin), (*window, cin // groups, cout), options, seed


def small_pages_only() -> bool:
    """Whether the kernel faults memory in 4 KiB pages, so that a buffer's page-fault count follows its size
    (with transparent huge pages set to ``always`` it would fault in 2 MiB at a time)."""
    import os  # noqa: PLC0415
    import pathlib  # noqa: PLC0415

    try:
        thp = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        thp = ""
    return os.sysconf("SC_PAGE_SIZE") == 4096 and "[always]" not in thp


def _onednn():
    from jaxcnn.ops import onednn  # pylint: disable=import-outside-toplevel

    return onednn


#: Skips a test where oneDNN's extension cannot be built or loaded (no compiler, no oneDNN, not x86-64 Linux).
needs_onednn = pytest.mark.skipif(not _onednn().available(),
                                  reason=f"oneDNN extension unavailable: {_onednn().unavailable_reason()}")
