"""Proofs for impl="fft": the convolution theorem (seed 000) against lax, both directions.

float64 is held to the usual 1e-10 of the scale. In float32 the FFT spreads every
rounding error over all outputs, so it is judged relative to the output's scale
(``assert_close``): measured against a float64 reference, the fft impl's error
is <= 2.5e-7 of the scale for inputs up to 64×64×16 and 128-long 1-D signals,
the lax impl's own <= 5e-7 (``test_float32_error_is_on_par_with_direct_conv``);
the float32 comparisons therefore use 1e-5, a 10× margin over fft − lax.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from jaxcnn import conv, conv_backward
from jaxcnn.ops.convolution import IMPLS
from oracles import assert_close, conv_arrays as _arrays, conv_cases, run_fast

FLOAT32_RTOL = 1e-5


def _views(x, w, b, dy, options, hand):
    """Forward and VJP of the lax conv under ``jax.vjp`` (the oracle), of the fft
    conv under ``jax.vjp`` (autodiff) and ``grad="manual"``, and, if ``hand``,
    :func:`conv_backward` with ``impl="fft"``."""
    results = {}
    rules = (("lax", "lax", "autodiff"), ("autodiff", "fft", "autodiff"), ("manual", "fft", "manual"))
    for name, impl, grad in rules:
        y, pullback = jax.vjp(lambda *a: conv(*a, impl=impl, grad=grad, **options), x, w, b)
        results[name] = (y, pullback(dy))
    if hand:
        results["hand"] = (results["manual"][0], conv_backward(dy, x, w, impl="fft", **options))
    return results


def _check_fft(x, w, b, options, rtol, *, hand=True, seed=0):
    """Every fft forward and gradient equals the lax conv's forward and ``jax.vjp``."""
    shape = jax.eval_shape(lambda x, w: conv(x, w, **options), x, w).shape
    dy = jnp.asarray(np.random.default_rng(seed + 1).normal(size=shape), x.dtype)
    results = run_fast(lambda *a: _views(*a, options, hand), x, w, b, dy)
    reference, expected = results.pop("lax")
    msg = f"{options} x{x.shape} w{w.shape}"
    for rule, (forward, gradients) in results.items():
        assert_close(forward, reference, rtol=rtol, err_msg=f"{rule} forward {msg}")
        for name, got, want in zip("xwb", gradients, expected):
            assert_close(got, want, rtol=rtol, err_msg=f"{rule} d{name} {msg}")


# ---------------------------------------------------------------- properties


@given(conv_cases())
@pytest.mark.slow
def test_fft_equals_lax_forward_and_backward_float64(x64, case):
    x_shape, w_shape, options, seed = case
    x, w, b = _arrays(x_shape, w_shape, seed, jnp.float64)
    _check_fft(x, w, b, options, rtol=1e-10, hand=False, seed=seed)


GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g)
    for s, p, d, g in itertools.product((1, 2), ("SAME", [(0, 2), (3, 1)]), (1, 2), (1, 2))
]


@pytest.mark.parametrize("options", GRID, ids=str)
@pytest.mark.slow
def test_fft_equals_lax_float32_2d(device, options):
    x, w, b = _arrays((2, 9, 8, 4), (3, 2, 4 // options["groups"], 6), 7, jnp.float32)
    x, w, b = jax.device_put((x, w, b), device)
    _check_fft(x, w, b, options, rtol=FLOAT32_RTOL)


@pytest.mark.parametrize("rank", (1, 3))
def test_fft_equals_lax_float32_1d_3d(device, rank):
    spatial, window = ((11,), (3,)) if rank == 1 else ((5, 6, 4), (2, 3, 2))
    x, w, b = _arrays((2, *spatial, 2), (*window, 2, 3), 3, jnp.float32)
    x, w, b = jax.device_put((x, w, b), device)
    _check_fft(x, w, b, dict(stride=2, padding="VALID", dilation=2, groups=1), rtol=FLOAT32_RTOL)


@pytest.mark.slow
def test_float32_error_is_on_par_with_direct_conv(x64):
    """Measures the float32 error of both impls against a float64 lax reference."""
    x, w, _ = _arrays((2, 28, 28, 8), (5, 5, 8, 16), 11, jnp.float64)
    options = dict(stride=1, padding="SAME")
    dy = jnp.asarray(np.random.default_rng(12).normal(size=(2, 28, 28, 16)))

    def run(x, w, dy, impl):
        return (conv(x, w, impl=impl, **options), *conv_backward(dy, x, w, impl=impl, **options)[:2])

    reference = jax.jit(run, static_argnums=3)(x, w, dy, "lax")
    low = [a.astype(jnp.float32) for a in (x, w, dy)]
    errors = {}
    for impl in ("lax", "fft"):
        got = jax.jit(run, static_argnums=3)(*low, impl)
        errors[impl] = max(
            float(jnp.max(jnp.abs(g.astype(jnp.float64) - r)) / jnp.max(jnp.abs(r)))
            for g, r in zip(got, reference)
        )
    assert errors["fft"] < 1e-6, errors
    assert errors["fft"] < 4 * errors["lax"], errors


# ------------------------------------------------------ the theorem itself


@pytest.mark.slow
def test_convolution_theorem_seed_000(x64):
    """û = f̂·ĝ: the spectrum of the full linear convolution is the product of spectra.

    A full linear convolution is the fft impl's cross-correlation with the
    kernel rotated 180° and "FULL" padding; its length ``n + f − 1`` is also the
    zero-padding length of both transforms (numpy's FFT is the oracle).
    """
    rng = np.random.default_rng(5)
    for signal_shape, filter_shape in [((11,), (4,)), ((7, 6), (3, 2)), ((5, 4, 6), (2, 3, 2))]:
        f, g = rng.normal(size=signal_shape), rng.normal(size=filter_shape)
        rotated = g[(slice(None, None, -1),) * g.ndim]
        u = conv(jnp.asarray(f)[None, ..., None], jnp.asarray(rotated)[..., None, None],
                 padding="FULL", impl="fft")[0, ..., 0]
        lengths = tuple(n + k - 1 for n, k in zip(signal_shape, filter_shape))
        assert u.shape == lengths
        axes = tuple(range(f.ndim))
        expected = np.fft.fftn(f, lengths, axes) * np.fft.fftn(g, lengths, axes)
        np.testing.assert_allclose(np.fft.fftn(np.asarray(u)), expected, atol=1e-10)
        if len(signal_shape) == 1:
            np.testing.assert_allclose(u, np.convolve(f, g), atol=1e-12)


@pytest.mark.slow
def test_fft_length_never_wraps_around(x64):
    """A single impulse at the last input position lands only where the definition puts it."""
    x = jnp.zeros((1, 9, 1)).at[0, -1, 0].set(1.0)
    w = jnp.arange(1.0, 4.0).reshape(3, 1, 1)
    y = conv(x, w, padding="FULL", impl="fft")[0, :, 0]
    np.testing.assert_allclose(y, [0] * 8 + [3.0, 2.0, 1.0], atol=1e-12)


# -------------------------------------------------------- registry, options


def test_fft_is_registered_and_named_in_errors():
    assert "fft" in IMPLS
    with pytest.raises(ValueError, match="impl must be one of .*'fft'"):
        conv(jnp.zeros((1, 5, 1)), jnp.zeros((3, 1, 1)), impl="fast")


@pytest.mark.slow
def test_grad_of_grad_manual_equals_autodiff(x64):
    x, w, b = _arrays((2, 7, 3), (3, 3, 2), 5, jnp.float64)
    options = dict(stride=2, padding="SAME", dilation=2, impl="fft")

    def input_grad_norm(w, grad):
        loss = lambda x: jnp.sum(jnp.tanh(conv(x, w, b, grad=grad, **options)))
        return jnp.sum(jax.grad(loss)(x) ** 2)

    gradients = jax.jit(lambda w: [jax.grad(input_grad_norm)(w, g) for g in ("manual", "autodiff")])(w)
    assert_close(gradients[0], gradients[1], rtol=1e-10)
