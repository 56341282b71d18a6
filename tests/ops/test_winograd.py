"""Proofs for impl="winograd": F(4,3)/F(2,3) tiles against lax and jax.grad, and its hand rule.

float64: every result within 1e-10 of ``impl="lax"`` and of ``jax.vjp``. float32 on the
26×26×32→64 layer: F(4×4, 3×3) within 5e-5 of lax, F(2×2, 3×3) within 1e-5 (the measured
errors and why these bounds are in :mod:`jaxcnn.ops.winograd`'s docstring).
"""

import itertools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from jaxcnn import conv, conv_backward, conv_output_size
from jaxcnn.ops import winograd
from jaxcnn.ops.convolution import conv_config, supported_impls
from jaxcnn.ops.hand_rule import hand_rule
from jaxcnn.testing import assert_hand_rule
from oracles import assert_close, conv_arrays, vjp

TILED = hand_rule(winograd.winograd_forward, winograd.winograd_backward)  # with an explicit tile=


def _config(x_shape, w_shape, padding="VALID", groups=1):
    return conv_config(x_shape, w_shape, stride=1, padding=padding, dilation=1, groups=groups)


# -------------------------------------------------------------- the matrices


@pytest.mark.parametrize("tile", winograd.TILES)
def test_transforms_compute_m_outputs_of_a_three_tap_correlation(tile):
    """Lavin & Gray: Aᵀ[(G g) ⊙ (Bᵀ d)] = (Σ_t d[j + t] g[t])_j, and its 2-D nesting."""
    t = winograd.TRANSFORMS[tile]
    bt, g_matrix, at = (np.array(m, np.float64) for m in (t.input, t.kernel, t.output))
    assert bt.shape == (tile + 2, tile + 2) and g_matrix.shape == (tile + 2, 3) and at.shape == (tile, tile + 2)
    rng = np.random.default_rng(tile)
    d, g = rng.normal(size=tile + 2), rng.normal(size=3)
    np.testing.assert_allclose(at @ ((g_matrix @ g) * (bt @ d)), [d[j:j + 3] @ g for j in range(tile)], atol=1e-13)
    d2, g2 = rng.normal(size=(tile + 2, tile + 2)), rng.normal(size=(3, 3))
    y2 = at @ ((g_matrix @ g2 @ g_matrix.T) * (bt @ d2 @ bt.T)) @ at.T
    expected = [[np.sum(d2[i:i + 3, j:j + 3] * g2) for j in range(tile)] for i in range(tile)]
    np.testing.assert_allclose(y2, expected, atol=1e-12)


# ------------------------------------------------------------------ strategies


@st.composite
def winograd_cases(draw):
    """1-D/2-D, window 3, stride 1, every padding form, groups, either tile."""
    rank = draw(st.sampled_from((1, 2)))
    spatial = tuple(draw(st.integers(1, 11)) for _ in range(rank))
    padding = draw(st.one_of(
        st.sampled_from(("VALID", "SAME", "FULL")),
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=rank, max_size=rank),
    ))
    pads = padding if isinstance(padding, list) else [padding] * rank
    assume(all(conv_output_size(n, 3, p) >= 1 for n, p in zip(spatial, pads)))
    groups = draw(st.sampled_from((1, 1, 2, 3)))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    tile = draw(st.sampled_from(winograd.TILES))
    seed = draw(st.integers(0, 2**16))
    return (batch, *spatial, cin), ((3,) * rank + (cin // groups, cout)), dict(padding=padding, groups=groups), tile, seed


def _everything(x, w, b, dy, options, tile):
    """lax's forward and VJP (the oracles) and winograd's: chosen tile, forced tile, hand rule, autodiff."""
    config = _config(x.shape, w.shape, **options)
    lax_conv = lambda *a: conv(*a, impl="lax", **options)
    wino = lambda *a, grad="autodiff": conv(*a, impl="winograd", grad=grad, **options)
    return dict(
        forward=(lax_conv(x, w, b), wino(x, w, b), TILED(x, w, config=config, tile=tile) + b),
        expected=vjp(lax_conv, (x, w, b), dy),
        hand=conv_backward(dy, x, w, impl="winograd", **options),
        manual=vjp(lambda *a: wino(*a, grad="manual"), (x, w, b), dy),
        autodiff=vjp(wino, (x, w, b), dy),
        tiled=vjp(lambda x, w: TILED(x, w, config=config, tile=tile), (x, w), dy),
        tiled_hand=winograd.winograd_backward(dy, x, w, config, tile=tile),
    )


@given(winograd_cases())
@pytest.mark.slow
def test_equals_lax_and_jax_grad_float64(x64, case):
    x_shape, w_shape, options, tile, seed = case
    x, w, b = conv_arrays(x_shape, w_shape, seed, jnp.float64)
    y_shape = jax.eval_shape(lambda x, w: conv(x, w, impl="lax", **options), x, w).shape
    dy = jnp.asarray(np.random.default_rng(seed + 1).normal(size=y_shape))
    compiled = jax.jit(lambda *a: _everything(*a, options, tile),
                       compiler_options={"xla_backend_optimization_level": 0})
    results = compiled(x, w, b, dy)
    msg = f"{options} tile={tile} x{x_shape} w{w_shape}"
    reference, *candidates = results["forward"]
    for y in candidates:
        assert_close(y, reference, rtol=1e-10, err_msg=f"forward {msg}")
    for rule in ("hand", "manual", "autodiff", "tiled", "tiled_hand"):
        for name, got, expected in zip("xwb", results[rule], results["expected"]):
            assert_close(got, expected, rtol=1e-10, err_msg=f"{rule} d{name} {msg}")


# --------------------------------------------------------- the hand rule proof

HAND_RULE_CASES = [
    ((2, 9, 7, 4), (3, 3, 2, 6), dict(padding="SAME", groups=2)),
    ((1, 6, 10, 3), (3, 3, 3, 2), dict(padding=[(4, 0), (1, 3)], groups=1)),
    ((2, 13, 3), (3, 3, 4), dict(padding="FULL", groups=1)),
    ((3, 4, 6), (3, 2, 3), dict(padding=2, groups=3)),
]


@pytest.mark.parametrize("tile", winograd.TILES)
@pytest.mark.parametrize("x_shape,w_shape,options", HAND_RULE_CASES, ids=[str(c[2]) for c in HAND_RULE_CASES])
@pytest.mark.slow
def test_hand_rule_proof(x64, x_shape, w_shape, options, tile):
    """``jaxcnn.testing.assert_hand_rule``: the rule == jax.vjp of the forward, under jit and vmap."""
    x, w, b = conv_arrays(x_shape, w_shape, 3, jnp.float64)
    config = _config(x_shape, w_shape, **options)
    assert assert_hand_rule(winograd.winograd_forward, winograd.winograd_backward, x, w,
                            config=config, tile=tile) <= 1e-10
    if tile == 4:  # the public pair once per shape (the tile conv picks)
        assert assert_hand_rule(lambda x, w, b: conv(x, w, b, impl="winograd", **options),
                                lambda dy, x, w, b: conv_backward(dy, x, w, impl="winograd", **options),
                                x, w, b) <= 1e-10


@pytest.mark.slow
def test_input_gradient_is_the_full_padded_correlation_with_the_rotated_kernel(x64):
    """Seed 001: ∂L/∂X = ȳ padded by f − 1 = 2, correlated with K rotated 180° (one channel)."""
    x, w, _ = conv_arrays((1, 7, 6, 1), (3, 3, 1, 1), 1, jnp.float64)
    dy = jnp.asarray(np.random.default_rng(2).normal(size=(1, 5, 4, 1)))
    dx, _, _ = conv_backward(dy, x, w, impl="winograd")
    padded = np.pad(np.asarray(dy)[0, :, :, 0], 2)
    rotated = np.asarray(w)[::-1, ::-1, 0, 0]
    expected = [[np.sum(padded[i:i + 3, j:j + 3] * rotated) for j in range(6)] for i in range(7)]
    assert_close(dx[0, :, :, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("x_shape,w_shape", [((2, 9, 3), (3, 3, 2)),
                                             pytest.param((1, 6, 7, 2), (3, 3, 1, 4), marks=pytest.mark.thorough)])
@pytest.mark.slow
def test_grad_of_grad_manual_equals_autodiff(x64, x_shape, w_shape):
    x, w, b = conv_arrays(x_shape, w_shape, 5, jnp.float64)
    options = dict(padding="SAME", groups=x_shape[-1] // w_shape[-2], impl="winograd")

    def input_grad_norm(w, grad):
        loss = lambda x: jnp.sum(jnp.tanh(conv(x, w, b, grad=grad, **options)))
        return jnp.sum(jax.grad(loss)(x) ** 2)

    second = jax.jit(jax.grad(input_grad_norm), static_argnums=1)
    assert_close(second(w, "manual"), second(w, "autodiff"), rtol=1e-10)
    jax.test_util.check_grads(jax.jit(lambda *a: conv(*a, grad="manual", **options)), (x, w, b), order=2,
                              modes=["rev"])


@pytest.mark.parametrize("tile", winograd.TILES)
@pytest.mark.thorough
@pytest.mark.slow
def test_batch_chunks_give_the_same_result(x64, tile):
    """Batches above the chunk budget run chunk by chunk (lax.map), zero-padded to whole chunks."""
    x, w, _ = conv_arrays((5, 7, 6, 4), (3, 3, 2, 6), 8, jnp.float64)
    options = dict(padding=[(2, 0), (1, 3)], groups=2)
    config = _config(x.shape, w.shape, **options)
    dy = jnp.asarray(np.random.default_rng(9).normal(size=conv(x, w, impl="lax", **options).shape))
    expected = conv(x, w, impl="lax", **options), *conv_backward(dy, x, w, impl="lax", **options)[:2]
    for budget in (1, 2**15):  # 1 example per chunk; 2 for F(4,3) (36 positions × 4 tiles × 10 channels × 8 B)
        chunked = dict(tile=tile, chunk_bytes=budget)
        program = jax.make_jaxpr(lambda x: winograd.winograd_forward(x, w, config, **chunked))(x)
        assert "scan" in _primitives(program.jaxpr)
        got = (winograd.winograd_forward(x, w, config, **chunked), *winograd.winograd_backward(dy, x, w, config, **chunked))
        for name, g, e in zip(("y", "dx", "dw"), got, expected):
            assert_close(g, e, rtol=1e-10, err_msg=f"{name} budget={budget}")
        assert assert_hand_rule(winograd.winograd_forward, winograd.winograd_backward, x, w,
                                config=config, **chunked) <= 1e-10


# ------------------------------------------------------------------- no conv


def _primitives(jaxpr):
    """Every primitive name in a closed jaxpr, sub-jaxprs (pjit, custom_vjp, scan) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    names |= _primitives(inner if hasattr(inner, "eqns") else inner.jaxpr)
                elif hasattr(sub, "eqns"):
                    names |= _primitives(sub)
    return names


@pytest.mark.parametrize("grad", ("manual", "autodiff"))
@pytest.mark.parametrize("x_shape,w_shape,groups", [((2, 8, 7, 4), (3, 3, 2, 6), 2), ((2, 9, 3), (3, 3, 2), 1)])
@pytest.mark.slow
def test_no_conv_primitive_in_forward_vjp_or_second_derivative(grad, x_shape, w_shape, groups):
    x, w, b = conv_arrays(x_shape, w_shape, 0, jnp.float32)
    f = lambda x, w, b: conv(x, w, b, padding="SAME", groups=groups, impl="winograd", grad=grad)
    dy = f(x, w, b)
    programs = {
        "forward": jax.make_jaxpr(f)(x, w, b),
        "vjp": jax.make_jaxpr(lambda *a: vjp(f, a, dy))(x, w, b),
        "grad of grad": jax.make_jaxpr(jax.grad(lambda w: jnp.sum(jax.grad(
            lambda x: jnp.sum(f(x, w, b) ** 2))(x) ** 2)))(w),
    }
    for name, program in programs.items():
        primitives = _primitives(program.jaxpr)
        assert "dot_general" in primitives, name  # the batched GEMM is there, the walk works
        assert not [p for p in primitives if "conv" in p], (name, sorted(primitives))
    lax_primitives = _primitives(jax.make_jaxpr(lambda *a: conv(*a, groups=groups, impl="lax"))(x, w, b).jaxpr)
    assert "conv_general_dilated" in lax_primitives  # the check can fail


# ------------------------------------------------------------- float32 error


def _float32_errors(tile, x, w, dy, config):
    """Relative error (max |err| / max |ref|) of forward, dx, dw against a float64 reference."""
    with jax.enable_x64(True):
        x64, w64, dy64 = (jnp.asarray(a, jnp.float64) for a in (x, w, dy))
        reference = [conv(x64, w64, impl="lax"), *conv_backward(dy64, x64, w64, impl="lax")[:2]]
        reference = [np.asarray(r) for r in reference]
    got = jax.jit(lambda x, w, dy: (winograd.winograd_forward(x, w, config, tile=tile),
                                    *winograd.winograd_backward(dy, x, w, config, tile=tile)))(x, w, dy)
    return [float(np.max(np.abs(np.asarray(g, np.float64) - r)) / np.max(np.abs(r))) for g, r in zip(got, reference)]


@pytest.mark.thorough
@pytest.mark.slow
def test_float32_error_on_the_lecture_layer():
    """26×26×32→64, N(0,1): F(4,3) ≤ 2e-5, F(2,3) ≤ 3e-6 of max|y| against float64; F(4,3) is the coarser.

    And against float32 ``impl="lax"`` itself with the tolerances other float32 tests would use.
    """
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 26, 26, 32)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 32, 64)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=(2, 24, 24, 64)), jnp.float32)
    config = _config(x.shape, w.shape)
    errors = {tile: _float32_errors(tile, x, w, dy, config) for tile in winograd.TILES}
    assert max(errors[4]) <= 2e-5 and max(errors[2]) <= 3e-6, errors
    assert errors[2][0] < errors[4][0] and errors[2][1] < errors[4][1], errors  # F(4,3) loses about a digit
    lax_result = [conv(x, w, impl="lax"), *conv_backward(dy, x, w, impl="lax")[:2]]
    for tile, rtol in ((4, 5e-5), (2, 1e-5)):
        got = [winograd.winograd_forward(x, w, config, tile=tile), *winograd.winograd_backward(dy, x, w, config, tile=tile)]
        for name, g, r in zip(("y", "dx", "dw"), got, lax_result):
            assert_close(g, r, rtol=rtol, err_msg=f"F({tile},3) {name}")


# ------------------------------------------------- tile choice, support, errors


def test_choose_tile():
    assert winograd.choose_tile((24, 24), jnp.float32) == 4
    assert winograd.choose_tile((254,), jnp.float64) == 4
    assert winograd.choose_tile((24, 24), jnp.bfloat16) == 2 and winograd.choose_tile((9,), jnp.float16) == 2
    assert winograd.choose_tile((2, 1), jnp.float32) == 2 and winograd.choose_tile((2, 3), jnp.float32) == 4


@pytest.mark.slow
def test_sixteen_bit_floats_use_f23_and_stay_close():
    x, w, _ = conv_arrays((2, 10, 10, 8), (3, 3, 8, 8), 0, jnp.float32)
    reference = conv(x, w, impl="lax", padding="SAME")
    y = conv(x.astype(jnp.float16), w.astype(jnp.float16), impl="winograd", padding="SAME")
    assert y.dtype == jnp.float16
    assert_close(y.astype(jnp.float32), reference, rtol=1e-2)


def test_supported_impls():
    ok = _config((1, 8, 8, 2), (3, 3, 2, 2), padding="SAME")
    assert supported_impls((3, 3, 2, 2), ok) == ("lax", "explicit", "fft", "winograd", "hybrid", "onednn")
    for x_shape, w_shape, options in [
        ((1, 8, 8, 2), (3, 3, 2, 2), dict(stride=2)),
        ((1, 8, 8, 2), (3, 3, 2, 2), dict(dilation=(1, 2))),
        ((1, 8, 8, 2), (3, 5, 2, 2), {}),
        ((1, 8, 2), (5, 2, 2), {}),
        ((1, 5, 5, 5, 2), (3, 3, 3, 2, 2), {}),
    ]:
        config = conv_config(x_shape, w_shape, **dict(dict(stride=1, padding="VALID", dilation=1, groups=1), **options))
        assert supported_impls(w_shape, config) == ("lax", "explicit", "fft", "hybrid", "onednn"), (w_shape, options)


UNSUPPORTED = [
    (dict(stride=2), "stride \\(2, 2\\)"),
    (dict(stride=(1, 2)), "stride \\(1, 2\\)"),
    (dict(dilation=2), "dilation \\(2, 2\\)"),
    (dict(w=jnp.zeros((5, 5, 2, 3))), "window \\(5, 5\\)"),
    (dict(w=jnp.zeros((3, 2, 2, 3))), "window \\(3, 2\\)"),
    (dict(x=jnp.zeros((1, 6, 6, 6, 2)), w=jnp.zeros((3, 3, 3, 2, 3))), "3-D kernel"),
    (dict(x=jnp.zeros((1, 9, 2)), w=jnp.zeros((5, 2, 3))), "window \\(5,\\)"),
]


@pytest.mark.parametrize("change,match", UNSUPPORTED, ids=[m for _, m in UNSUPPORTED])
def test_unsupported_configs_raise_naming_what_is_accepted(change, match):
    args = dict(x=jnp.zeros((1, 9, 9, 2)), w=jnp.zeros((3, 3, 2, 3)))
    args.update(change)
    x, w = args.pop("x"), args.pop("w")
    accepted = 'impl="winograd" accepts 1-D and 2-D convolutions with window 3 .*stride 1 and dilation 1'
    for call in (lambda: conv(x, w, impl="winograd", **args),
                 lambda: conv(x, w, impl="winograd", grad="manual", **args),
                 lambda: conv_backward(jnp.zeros(jax.eval_shape(lambda: conv(x, w, impl="lax", **args)).shape),
                                       x, w, impl="winograd", **args)):
        with pytest.raises(ValueError, match=f"{accepted}.*got .*{match}"):
            call()


def test_bad_tile_is_rejected():
    config = _config((1, 6, 2), (3, 2, 2))
    with pytest.raises(ValueError, match="tile must be one of \\(2, 4\\).*got 3"):
        winograd.winograd_forward(jnp.zeros((1, 6, 2)), jnp.zeros((3, 2, 2)), config, tile=3)


LENGTHS = [(n, p) for n, p in itertools.product((1, 2, 3, 5, 8), ("VALID", "SAME", "FULL"))
           if conv_output_size(n, 3, p) >= 1]


@pytest.mark.parametrize("size,padding", LENGTHS)
@pytest.mark.thorough
@pytest.mark.slow
def test_every_output_length_and_tile_crop(x64, size, padding):
    """Output lengths 1-10, multiples of 2 and 4 and not, so partial tiles get cropped."""
    x, w, _ = conv_arrays((1, size, 2), (3, 2, 3), size, jnp.float64)
    config = _config(x.shape, w.shape, padding=padding)
    reference = conv(x, w, impl="lax", padding=padding)
    for tile in winograd.TILES:
        assert_close(winograd.winograd_forward(x, w, config, tile=tile), reference, rtol=1e-12)


@pytest.mark.slow
def test_an_all_zero_window_is_exactly_zero_in_winograd_as_in_im2col_and_lax(x64):
    """An output whose 3×3 window is all zero, in a tile with non-zero inputs elsewhere, is exactly 0 for
    im2col and lax; Winograd's transforms alone leave rounding noise there (about 1e-14), which a ReLU
    after it would turn into a gradient the other impls stop, so its forward sets those outputs to 0."""
    rng = np.random.default_rng(0)
    x = rng.random((1, 12, 12, 16))
    x[:, 5:8, 5:8, :] = 0  # output (5, 5)'s window
    x, w = jnp.asarray(x), jnp.asarray(rng.normal(size=(3, 3, 16, 4)))
    for impl in ("explicit", "lax", "winograd"):
        assert np.all(np.asarray(conv(x, w, impl=impl))[0, 5, 5] == 0), impl
    config = _config(x.shape, w.shape)
    unmasked = winograd._correlate(x, winograd._kernel_transform(w, winograd.F4_3.kernel), config.pairs, 1,
                                   winograd.F4_3, keep_zeros=False)
    noise = np.abs(np.asarray(unmasked)[0, 5, 5])
    assert np.any(noise > 0) and np.all(noise < 1e-13), noise  # what the correction removes


@st.composite
def sparse_winograd_cases(draw):
    """:func:`winograd_cases` with inputs that are zero in random blocks, so many windows are all zero."""
    x_shape, w_shape, options, tile, seed = draw(winograd_cases())
    block = draw(st.integers(2, 5))
    keep = draw(st.floats(0.1, 0.6))
    return x_shape, w_shape, options, tile, seed, block, keep


@given(sparse_winograd_cases())
@pytest.mark.slow
def test_winograd_keeps_exact_zeros_and_its_gradient_float64(x64, case):
    """Every output whose (per-group) window is all zero is exactly 0, as in im2col; the correction does not
    change a derivative: jax.grad through the forward and the hand rule equal lax's VJP (float64, 1e-10)."""
    x_shape, w_shape, options, tile, seed, block, keep = case
    x, w, b = conv_arrays(x_shape, w_shape, seed, jnp.float64)
    rng = np.random.default_rng(seed + 2)
    coarse = rng.random((x_shape[0], *(-(-n // block) for n in x_shape[1:-1]), options["groups"])) < keep
    for axis in range(1, len(x_shape) - 1):
        coarse = np.repeat(coarse, block, axis=axis)
    mask = coarse[(slice(None), *(slice(0, n) for n in x_shape[1:-1]))]
    x = x * jnp.asarray(np.repeat(mask, x_shape[-1] // options["groups"], axis=-1))
    config = _config(x.shape, w.shape, **options)
    y_shape = jax.eval_shape(lambda x, w: conv(x, w, impl="lax", **options), x, w).shape
    dy = jnp.asarray(np.random.default_rng(seed + 1).normal(size=y_shape))

    def everything(x, w, b, dy):  # one compilation per example (as in test_equals_lax_and_jax_grad_float64)
        wino = lambda *a, grad: conv(*a, impl="winograd", grad=grad, **options)
        return dict(explicit=conv(x, w, impl="explicit", **options),
                    winograd=winograd.winograd_forward(x, w, config, tile=tile),
                    expected=vjp(lambda *a: conv(*a, impl="lax", **options), (x, w, b), dy),
                    autodiff=vjp(lambda *a: wino(*a, grad="autodiff"), (x, w, b), dy),
                    manual=vjp(lambda *a: wino(*a, grad="manual"), (x, w, b), dy))

    results = jax.jit(everything, compiler_options={"xla_backend_optimization_level": 0})(x, w, b, dy)
    msg = f"{options} tile={tile} x{x_shape}"
    explicit, got = np.asarray(results["explicit"]), np.asarray(results["winograd"])
    np.testing.assert_array_equal(got == 0, explicit == 0, err_msg=msg)
    for grad in ("autodiff", "manual"):
        for name, g, e in zip("xwb", results[grad], results["expected"]):
            assert_close(g, e, rtol=1e-10, err_msg=f"{grad} d{name} {msg}")
