"""Proofs that the pooling hand rules equal what ``jax.grad`` derives.

Oracles: ``jax.vjp``/``jax.grad`` of the ``lax.reduce_window`` forward
(``grad="autodiff"``), a slow loop reference written from the definition, finite
differences (``jax.test_util.check_grads``) and the worked numbers of seed 004.
Max pooling is exercised on tie-heavy data (ReLU-like rounded values, windows of
zeros) because the tie rule is where a hand rule can silently disagree.
"""

from __future__ import annotations

import functools
import itertools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import pool


# Each pool: forward(x, window, stride, padding, grad) and backward(dy, x, window, stride, padding).
POOLS = {
    "max": (
        lambda x, w, s, p, grad: pool.max_pool(x, w, s, p, grad=grad),
        pool.max_pool_backward,
    ),
    "avg": (
        lambda x, w, s, p, grad: pool.avg_pool(x, w, s, p, True, grad=grad),
        functools.partial(pool.avg_pool_backward, count_include_pad=True),
    ),
    "avg_exclude_pad": (
        lambda x, w, s, p, grad: pool.avg_pool(x, w, s, p, False, grad=grad),
        functools.partial(pool.avg_pool_backward, count_include_pad=False),
    ),
}

# (shape, window, stride, padding): 1-D, 2-D, 3-D; strides; every padding form.
CASES = [
    ((2, 9, 3), 3, 2, "VALID"),
    ((2, 7, 2), 2, None, "SAME"),
    ((1, 6, 3), 3, 1, "FULL"),
    ((2, 3, 2), 2, 1, 3),  # windows lying wholly in the padding
    ((2, 6, 7, 3), 2, None, "VALID"),  # seed 004's 2×2 stride 2, odd leftover column
    ((2, 7, 6, 2), (3, 2), (2, 1), [(1, 0), (0, 2)]),
    ((1, 7, 5, 3), 3, 2, "SAME"),
    ((2, 4, 5, 2), (2, 3), (1, 2), "FULL"),
    ((1, 5, 5, 2), 3, 1, 1),
    ((1, 4, 5, 3, 2), 2, 1, "SAME"),
    ((2, 3, 5, 4, 1), (2, 3, 1), (1, 2, 1), [(0, 1), (1, 1), (0, 0)]),
    ((1, 3, 4, 3, 2), 2, None, "FULL"),
]


def case_id(case) -> str:
    shape, window, stride, padding = case
    return f"{len(shape) - 2}d-{shape}-w{window}-s{stride}-p{padding}".replace(" ", "")


def tied_values(rng, shape):
    """ReLU-like data: rounded, clipped at 0, so most windows hold equal maxima."""
    return np.maximum(np.round(rng.normal(scale=1.5, size=shape)), 0.0)


def tie_free_values(rng, shape):
    """Distinct values in [−1, 1), 2/size apart, so every window has a unique maximum."""
    size = int(np.prod(shape))
    return (2 * rng.permutation(size) / size - 1).reshape(shape)


DATA = {"tied": tied_values, "tie_free": tie_free_values}


def assert_close(actual, expected, rtol, label=""):
    """``|actual − expected| ≤ rtol · scale``, scale = max|expected| (1 if all zero)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (label, actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    error = float(np.max(np.abs(actual - expected), initial=0.0))
    assert error <= rtol * scale, f"{label}: error {error:.3e} > {rtol:.0e} × scale {scale:.3e}"


def hashable(padding):
    return padding if isinstance(padding, (str, int)) else tuple(tuple(pair) for pair in padding)


@functools.lru_cache(maxsize=None)
def gradients(window, stride, padding):
    """A jitted ``(x, dy) -> {pool: {quantity: array}}`` for one configuration.

    Quantities: the hand rule at ``dy``, the VJP of the autodiff op at ``dy``, and
    ``jax.grad`` of ``Σ tanh(pool(x)/4)·dy`` (a smooth loss that does not
    saturate on the test data) through ``grad="manual"`` and ``grad="autodiff"``.

    Compiling dominates the cost of these checks, so the function is cached (tests
    sharing a configuration and shape share one compilation) and compiled with
    XLA's backend optimisation off, which compiles faster; the default-compiled
    path is covered by ``test_hand_rule_under_jit``.
    """

    def compute(x, dy):
        results = {}
        for name, (forward, backward) in POOLS.items():
            def loss(grad):
                def smooth(v):
                    return jnp.sum(jnp.tanh(forward(v, window, stride, padding, grad) / 4) * dy)

                return smooth

            _, vjp = jax.vjp(lambda v: forward(v, window, stride, padding, "autodiff"), x)
            results[name] = {
                "hand_rule": backward(dy, x, window, stride, padding),
                "autodiff_vjp": vjp(dy)[0],
                "grad_manual": jax.grad(loss("manual"))(x),
                "grad_autodiff": jax.grad(loss("autodiff"))(x),
            }
        return results

    return jax.jit(compute, compiler_options={"xla_backend_optimization_level": 0})


def output_shape(x, window, stride, padding):
    return jax.eval_shape(lambda v: pool.avg_pool(v, window, stride, padding), x).shape


def check_against_autodiff(x, window, stride, padding, rng, rtol):
    """For every pool: hand rule == VJP of the autodiff op, and jax.grad through
    ``grad="manual"`` == through ``grad="autodiff"``."""
    dy = jnp.asarray(rng.normal(size=output_shape(x, window, stride, padding)), x.dtype)
    results = gradients(window, stride, hashable(padding))(x, dy)
    for name, result in results.items():
        assert_close(result["hand_rule"], result["autodiff_vjp"], rtol, f"{name} hand rule")
        assert_close(result["grad_manual"], result["grad_autodiff"], rtol, f"{name} grad")


# --------------------------------------------------------------------------- loop reference


def loop_pool_backward(name, dy, x, window, stride, pairs, tie="first"):
    """Slow reference from the definition: visits every window and element."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    fill = -np.inf if name == "max" else 0.0
    x_padded = np.pad(x, [(0, 0), *pairs, (0, 0)], constant_values=fill)
    is_real = np.pad(np.ones(x.shape[1:-1]), pairs)
    dx_padded = np.zeros_like(x_padded)
    offsets = list(itertools.product(*(range(f) for f in window)))
    for n, position, c in itertools.product(
        range(dy.shape[0]), np.ndindex(*dy.shape[1:-1]), range(dy.shape[-1])
    ):
        places = [tuple(p * s + t for p, s, t in zip(position, stride, o)) for o in offsets]
        g = dy[(n, *position, c)]
        if name == "max":
            values = [x_padded[(n, *q, c)] for q in places]
            hits = [q for q, v in zip(places, values) if v == max(values)]
            q = hits[0] if tie == "first" else hits[-1]
            dx_padded[(n, *q, c)] += g
        else:
            real = sum(is_real[q] for q in places)
            divisor = len(places) if name == "avg" else max(real, 1)
            for q in places:
                dx_padded[(n, *q, c)] += g / divisor
    crop = tuple(slice(lo, size - hi) for (lo, hi), size in zip(pairs, x_padded.shape[1:-1]))
    return dx_padded[(slice(None), *crop, slice(None))]


def normalized(x, window, stride, padding):
    config = pool.pool_config(x, window, stride, padding)
    return config.window, config.stride, config.pairs


# --------------------------------------------------------------------------- worked numbers

SEED_004 = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], np.float32)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_seed_004_max_pool(grad):
    x = jnp.asarray(SEED_004)[None, :, :, None]
    y = pool.max_pool(x, 2, grad=grad)
    np.testing.assert_array_equal(y[0, :, :, 0], [[9, 2], [6, 3]])
    dx = jax.grad(lambda v: jnp.sum(pool.max_pool(v, 2, grad=grad)))(x)
    winners = np.zeros((4, 4), np.float32)
    winners[1, 1] = winners[0, 2] = winners[3, 1] = winners[2, 3] = 1  # the 9, 2, 6, 3
    np.testing.assert_array_equal(dx[0, :, :, 0], winners)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_seed_004_avg_pool(grad):
    x = jnp.asarray(SEED_004)[None, :, :, None]
    y = pool.avg_pool(x, 2, grad=grad)
    np.testing.assert_allclose(y[0, :, :, 0], [[15 / 4, 5 / 4], [15 / 4, 8 / 4]])
    dx = jax.grad(lambda v: jnp.sum(pool.avg_pool(v, 2, grad=grad)))(x)
    np.testing.assert_allclose(dx, np.full((1, 4, 4, 1), 1 / 4))


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_avg_pool_exclude_pad_divides_by_real_elements(grad):
    x = jnp.ones((1, 3, 1))
    exclude = pool.avg_pool(x, 2, 1, 1, count_include_pad=False, grad=grad)
    include = pool.avg_pool(x, 2, 1, 1, count_include_pad=True, grad=grad)
    np.testing.assert_allclose(exclude[0, :, 0], [1, 1, 1, 1])
    np.testing.assert_allclose(include[0, :, 0], [0.5, 1, 1, 0.5])
    # Windows lying wholly in the padding average to 0 (divisor clamped to 1), not NaN.
    x = jnp.arange(1.0, 4.0).reshape(1, 3, 1)
    y = pool.avg_pool(x, 2, 1, 3, count_include_pad=False, grad=grad)
    np.testing.assert_allclose(y[0, :, 0], [0, 0, 1, 1.5, 2.5, 3, 0, 0])
    loss = lambda v: jnp.sum(pool.avg_pool(v, 2, 1, 3, count_include_pad=False, grad=grad))
    dx = jax.grad(loss)(x)
    np.testing.assert_allclose(dx[0, :, 0], [1 + 1 / 2, 1 / 2 + 1 / 2, 1 / 2 + 1])


# --------------------------------------------------------------------------- tie rule


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_max_pool_ties_go_to_first_maximal_element(grad):
    """Verified behaviour of jax.grad: the first maximum in row-major window order wins.

    All-zero 3×3 input, 3×3 windows, stride 1, padding 1: window (i, j) covers rows
    i−1..i+1 and columns j−1..j+1, so its first real element is
    (max(i−1, 0), max(j−1, 0)).
    """
    x = jnp.zeros((1, 3, 3, 1))
    dx = jax.grad(lambda v: jnp.sum(pool.max_pool(v, 3, 1, 1, grad=grad)))(x)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_max_pool_padding_wins_ties_with_minus_inf(grad):
    """A padded −inf earlier in the window beats a real −inf: its cotangent is dropped."""
    x = jnp.full((1, 3, 1), -jnp.inf)
    dx = jax.grad(lambda v: jnp.sum(pool.max_pool(v, 2, 1, 1, grad=grad)))(x)
    np.testing.assert_array_equal(dx[0, :, 0], [1, 1, 1])  # not [2, 1, 1]


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.slow
def test_tied_data_tells_tie_rules_apart(case):
    """Autodiff equals the first-maximum loop reference, and the data is discriminating:
    the last-maximum reference gives a different answer."""
    shape, window, stride, padding = case
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        x = jnp.asarray(tied_values(rng, shape))
        dy = rng.uniform(1.0, 2.0, size=output_shape(x, window, stride, padding))
        dx = gradients(window, stride, hashable(padding))(x, jnp.asarray(dy))["max"]["autodiff_vjp"]
    first = loop_pool_backward("max", dy, x, *normalized(x, window, stride, padding), tie="first")
    last = loop_pool_backward("max", dy, x, *normalized(x, window, stride, padding), tie="last")
    assert_close(dx, first, 1e-10)
    assert not np.allclose(first, last)


# --------------------------------------------------------------------------- hand rule == autodiff


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.slow
def test_hand_rules_equal_autodiff_float64(case, data):
    shape, window, stride, padding = case
    rng = np.random.default_rng(zlib.crc32(f"{case_id(case)}{data}".encode()))
    with jax.enable_x64(True):
        x = jnp.asarray(DATA[data](rng, shape), jnp.float64)
        check_against_autodiff(x, window, stride, padding, rng, rtol=1e-10)


@pytest.mark.parametrize("case", CASES[::3], ids=case_id)
@pytest.mark.slow
def test_hand_rules_equal_autodiff_float32(case):
    shape, window, stride, padding = case
    rng = np.random.default_rng(3)
    x = jnp.asarray(tied_values(rng, shape) + rng.normal(size=shape), jnp.float32)
    check_against_autodiff(x, window, stride, padding, rng, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_hand_rules_equal_loop_reference(case):
    shape, window, stride, padding = case
    rng = np.random.default_rng(11)
    with jax.enable_x64(True):
        x = jnp.asarray(tied_values(rng, shape))
        dy = rng.normal(size=output_shape(x, window, stride, padding))
        results = gradients(window, stride, hashable(padding))(x, jnp.asarray(dy))
    for name, result in results.items():
        expected = loop_pool_backward(name, dy, x, *normalized(x, window, stride, padding))
        assert_close(result["hand_rule"], expected, 1e-10, name)


# --------------------------------------------------------------------------- properties


@st.composite
def pool_problems(draw):
    """Batch 1–3, channels 1–4, stride 1–3, every padding form; 1-D and 2-D with
    spatial 1–12 and window 1–5, 3-D (a fifth of draws) with spatial 1–6, window 1–3."""
    rank = draw(st.sampled_from([1, 1, 2, 2, 3]))
    largest, largest_window = (12, 5) if rank < 3 else (6, 3)
    spatial = tuple(draw(st.integers(1, largest)) for _ in range(rank))
    shape = (draw(st.integers(1, 3)), *spatial, draw(st.integers(1, 4)))
    sizes = st.integers(1, largest_window)
    window = draw(st.one_of(sizes, st.tuples(*[sizes] * rank)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * rank)))
    pair = st.tuples(st.integers(0, 3), st.integers(0, 3))
    padding = draw(
        st.one_of(
            st.sampled_from(["VALID", "SAME", "FULL"]),
            st.integers(0, 3),
            st.lists(pair, min_size=rank, max_size=rank),
        )
    )
    return shape, window, stride, padding


def window_fits(shape, window, stride, padding) -> bool:
    """False only for the documented "window larger than the padded input" error."""
    try:
        pool.pool_config(np.zeros(shape), window, stride, padding)
    except ValueError as error:
        if "larger than the padded input" in str(error):
            return False
        raise
    return True


@given(problem=pool_problems(), data=st.sampled_from(sorted(DATA)), seed=st.integers(0, 2**32 - 1))
@pytest.mark.slow
def test_hand_rules_equal_autodiff_property(problem, data, seed):
    shape, window, stride, padding = problem
    assume(window_fits(shape, window, stride, padding))
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        x = jnp.asarray(DATA[data](rng, shape), jnp.float64)
        check_against_autodiff(x, window, stride, padding, rng, rtol=1e-10)


@given(problem=pool_problems())
def test_output_shape_comes_from_output_spatial(problem):
    shape, window, stride, padding = problem
    assume(window_fits(shape, window, stride, padding))
    window_, stride_, pairs = normalized(np.zeros(shape), window, stride, padding)
    spatial = padding_lib.output_spatial(shape[1:-1], window_, pairs, stride_, (1,) * len(window_))
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    for name, (forward, _) in POOLS.items():
        for grad in ("autodiff", "manual"):
            y = jax.eval_shape(lambda v: forward(v, window, stride, padding, grad), x)
            assert y.shape == (shape[0], *spatial, shape[-1]), (name, grad)


# --------------------------------------------------------------------------- higher order


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.slow
def test_check_grads_second_order(name, grad):
    forward, _ = POOLS[name]
    with jax.enable_x64(True):
        x = jnp.asarray(tie_free_values(np.random.default_rng(5), (2, 5, 4, 2)))
        op = lambda v: forward(v, (2, 3), (1, 2), "SAME", grad)
        check_grads(op, (x,), order=2, modes=["rev"])


@functools.lru_cache(maxsize=None)
def hessian_vector_product(name, grad):
    """Jitted ``(x, v, w) -> H v`` for ``L(x) = Σ w·pool(x)²`` (window 3, stride 2,
    asymmetric padding). Its second derivative runs through the hand rule's
    dependence on ``dy = 2·w·pool(x)``, so grad-of-grad differentiates the rule."""
    forward, _ = POOLS[name]

    def loss(x, w):
        return jnp.sum(w * forward(x, 3, 2, [(1, 0), (0, 2)], grad) ** 2)

    def hvp(x, v, w):
        return jax.grad(lambda u: jnp.sum(jax.grad(loss)(u, w) * v))(x)

    return jax.jit(hvp)


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.slow
def test_grad_of_grad_manual_equals_autodiff(name, data):
    rng = np.random.default_rng(13)
    shape = (2, 6, 5, 2)
    with jax.enable_x64(True):
        x = jnp.asarray(DATA[data](rng, shape) + 0.5)
        v = jnp.asarray(rng.normal(size=shape))
        w = jnp.asarray(rng.normal(size=output_shape(x, 3, 2, [(1, 0), (0, 2)])))
        expected = hessian_vector_product(name, "autodiff")(x, v, w)
        actual = hessian_vector_product(name, "manual")(x, v, w)
    assert np.max(np.abs(np.asarray(expected))) > 0.1  # the comparison has something to compare
    assert_close(actual, expected, 1e-10)


# --------------------------------------------------------------------------- transformations


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.slow
def test_hand_rule_under_jit(name):
    forward, backward = POOLS[name]
    shape, window, stride, padding = CASES[5]
    rng = np.random.default_rng(17)
    x = jnp.asarray(tied_values(rng, shape), jnp.float32)
    y, vjp = jax.vjp(lambda v: forward(v, window, stride, padding, "autodiff"), x)
    dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    jitted = jax.jit(lambda d, v: backward(d, v, window, stride, padding))
    assert_close(jitted(dy, x), vjp(dy)[0], 1e-5, "jit(hand rule)")

    def loss(grad):
        return lambda v: jnp.sum(forward(v, window, stride, padding, grad) * dy)

    expected = jax.grad(loss("autodiff"))(x)
    assert_close(jax.jit(jax.grad(loss("manual")))(x), expected, 1e-5, "jit(grad(manual))")
    assert_close(jax.jit(jax.grad(loss("autodiff")))(x), expected, 1e-5, "jit(grad(autodiff))")


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.slow
def test_hand_rule_under_vmap(name):
    """vmap over an extra leading axis (inside one jit, so it compiles once)."""
    forward, backward = POOLS[name]
    shape, window, stride, padding = CASES[6]
    rng = np.random.default_rng(19)
    xs = jnp.asarray(tied_values(rng, (3, *shape)), jnp.float32)
    out_shape = output_shape(xs[0], window, stride, padding)
    dys = jnp.asarray(rng.normal(size=(3, *out_shape)), jnp.float32)

    def vjp(grad):
        return lambda d, v: jax.vjp(lambda u: forward(u, window, stride, padding, grad), v)[1](d)[0]

    def hand_rule(d, v):
        return backward(d, v, window, stride, padding)

    rules = (vjp("autodiff"), hand_rule, vjp("manual"))
    batched = jax.jit(lambda d, v: [jax.vmap(rule)(d, v) for rule in rules])
    expected, hand, manual_vjp = batched(dys, xs)
    assert_close(expected[1], vjp("autodiff")(dys[1], xs[1]), 1e-5, "vmap(vjp(autodiff))")
    assert_close(hand, expected, 1e-5, "vmap(hand rule)")
    assert_close(manual_vjp, expected, 1e-5, "vmap(vjp(manual))")


@pytest.mark.parametrize("device", jax.devices(), ids=str)
def test_hand_rules_on_every_device(device):
    shape, window, stride, padding = CASES[6]
    rng = np.random.default_rng(23)
    x = jax.device_put(jnp.asarray(tied_values(rng, shape), jnp.float32), device)
    dy = rng.normal(size=output_shape(x, window, stride, padding))
    dy = jax.device_put(jnp.asarray(dy, jnp.float32), device)
    for name, result in gradients(window, stride, hashable(padding))(x, dy).items():
        assert result["hand_rule"].devices() == {device}
        assert_close(result["hand_rule"], result["autodiff_vjp"], 1e-5, f"{name} hand rule")
        assert_close(result["grad_manual"], result["grad_autodiff"], 1e-5, f"{name} grad")


# --------------------------------------------------------------------------- validation

X2 = np.zeros((1, 4, 4, 2), np.float32)
DY2 = np.zeros((1, 2, 2, 2), np.float32)
X_RANK_6 = np.zeros((1, 2, 2, 2, 2, 1), np.float32)

FORMS = r"padding must be \"VALID\", \"SAME\", \"FULL\""


def bad(case_id, match, *, x=X2, window=2, stride=None, padding="VALID", error=ValueError):
    return pytest.param(x, window, stride, padding, error, match, id=case_id)


BAD_ARGUMENTS = [
    bad("x-rank-2", r"x must .*, got shape \(4, 4\)", x=np.zeros((4, 4))),
    bad("x-rank-6", r"x must .*rank 3, 4 or 5.*\(1, 2, 2, 2, 2, 1\)", x=X_RANK_6),
    bad("window-0", r"window entries must be >= 1, got 0", window=0),
    bad("window-len", r"window must be an int or a tuple of 2 ints", window=(2, 2, 2)),
    bad("window-str", r"window must be an int or .* got '2'", window="2", error=TypeError),
    bad("stride-0", r"stride entries must be >= 1, got 0", stride=0),
    bad("stride-len", r"stride must be an int or a tuple of 2 ints", stride=(1,)),
    bad("padding-str", FORMS + r".*got the string 'HALF'", padding="HALF"),
    bad("pairs", r"one \(lo, hi\) pair per spatial dimension \(2\), got 1", padding=[(1, 1)]),
    bad("pair-type", FORMS + r".*got the entry 1", padding=[(1, 1), 1], error=TypeError),
    bad("padding-neg", r"padding must be >= 0 when an int, got -1", padding=-1),
    bad("too-large", r"window \(5, 5\).*larger than the padded input", window=5),
]


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.parametrize("x, window, stride, padding, error, match", BAD_ARGUMENTS)
def test_bad_arguments_raise(name, x, window, stride, padding, error, match):
    forward, backward = POOLS[name]
    for grad in ("autodiff", "manual"):
        with pytest.raises(error, match=match):
            forward(x, window, stride, padding, grad)
    with pytest.raises(error, match=match):
        backward(DY2, x, window, stride, padding)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_bad_grad_raises(name):
    forward, _ = POOLS[name]
    match = r"grad must be one of \('autodiff', 'manual'\), got 'symbolic'"
    with pytest.raises(ValueError, match=match):
        forward(X2, 2, None, "VALID", "symbolic")


@pytest.mark.parametrize("value", [1, None, "yes"])
def test_bad_count_include_pad_raises(value):
    match = rf"count_include_pad must be True or False, got {value!r}"
    with pytest.raises(TypeError, match=match):
        pool.avg_pool(X2, 2, count_include_pad=value)
    with pytest.raises(TypeError, match=match):
        pool.avg_pool_backward(DY2, X2, 2, count_include_pad=value)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_backward_rejects_wrong_dy_shape(name):
    _, backward = POOLS[name]
    match = r"dy must have the output shape \(1, 2, 2, 2\), got shape \(1, 3, 3, 2\)"
    with pytest.raises(ValueError, match=match):
        backward(np.zeros((1, 3, 3, 2), np.float32), X2, 2)


# --------------------------------------------------------------------------- tiling fast path

TILINGS = [((2, 9, 3), 3), ((2, 6, 7, 3), 2), ((1, 8, 6, 2), (4, 3)), ((1, 4, 5, 4, 2), 2)]


def tiling_results(x, dy, window):
    """Per pool: reduce_window forward and its autodiff VJP, and the fast path's
    forward, autodiff and manual VJPs and hand rule (one compiled program)."""
    config = pool.pool_config(x, window)
    references = {
        "max": lambda v: pool._reduce(v, -jnp.inf, jax.lax.max, config),
        "avg": lambda v: pool._reduce(v, 0, jax.lax.add, config) / np.prod(config.window),
    }
    results = {}
    for name, reference in references.items():
        forward, backward = POOLS[name]
        y, pullback = jax.vjp(reference, x)
        results[name] = {"expected": (y, pullback(dy)[0]), "hand rule": (y, backward(dy, x, window, None, "VALID"))}
        for grad in ("autodiff", "manual"):
            y, pullback = jax.vjp(lambda v: forward(v, window, None, "VALID", grad), x)
            results[name][grad] = (y, pullback(dy)[0])
    return results


@pytest.mark.parametrize("shape,window", TILINGS, ids=str)
@pytest.mark.slow
def test_tiling_fast_path_equals_reduce_window(shape, window):
    """stride == window, no padding: the slice-based forward, its autodiff and its hand
    rule equal ``lax.reduce_window`` and autodiff of it, ties (first maximum) included."""
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        x = jnp.asarray(tied_values(rng, shape))
        assert pool._is_tiling(pool.pool_config(x, window))
        dy = jnp.asarray(rng.uniform(1.0, 2.0, size=output_shape(x, window, None, "VALID")))
        compiled = jax.jit(functools.partial(tiling_results, window=window),
                           compiler_options={"xla_backend_optimization_level": 0})
        results = compiled(x, dy)
    for name, result in results.items():
        expected_y, expected_dx = result.pop("expected")
        for path, (y, dx) in result.items():
            assert_close(y, expected_y, 1e-12, f"{name} {path} forward")
            assert_close(dx, expected_dx, 1e-12, f"{name} {path} gradient")
