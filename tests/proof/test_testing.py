"""The public hand-rule checker can fail: it names the wrong argument, and it runs jit and vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.ops.linear import _backward as dense_hand_rule_backward  # pylint: disable=protected-access
from jaxcnn.ops.linear import _forward as dense_hand_rule_forward  # pylint: disable=protected-access
from jaxcnn.ops.linear import dense as dense_op
from jaxcnn.ops.linear import dense_backward as dense_op_backward
from jaxcnn.ops import losses
from jaxcnn.proof.testing import relative_difference
from jaxcnn.testing import assert_hand_rule

RNG = np.random.default_rng(0)
X, W, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 5)), RNG.normal(size=(5,))


def dense_forward(x, w, b):
    return dense_op(x, w, b)


def dense_backward(dy, x, w, b):
    dx, dw, db = dense_op_backward(dy, x, w)
    return dx, dw, None if b is None else db


def product(a, b):
    return a * jnp.sin(b)


def product_backward(dy, a, b):
    return dy * jnp.sin(b), dy * a * jnp.cos(b)


def test_public_face_is_the_proof_floor_checker():
    from jaxcnn.proof import testing

    assert jaxcnn.testing.assert_hand_rule is testing.assert_hand_rule is assert_hand_rule


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_passes_on_a_correct_rule_and_returns_a_float_within_rtol(bias):
    difference = assert_hand_rule(dense_forward, dense_backward, X, W, B if bias else None)
    assert isinstance(difference, float) and 0.0 <= difference <= 1e-10


def test_passes_on_the_library_dense_hand_rule():
    # dense's own private pair, exactly what hand_rule wraps
    assert assert_hand_rule(dense_hand_rule_forward, dense_hand_rule_backward, X, W, B) <= 1e-10


def test_a_dx_off_by_1e_6_relative_raises_naming_x():
    def off(dy, x, w, b):
        dx, dw, db = dense_backward(dy, x, w, b)
        return dx * (1 + 1e-6), dw, db

    with pytest.raises(AssertionError, match=r"'x' \(argument 0\).*relative difference 1e-06 > rtol 1e-10") as info:
        assert_hand_rule(dense_forward, off, X, W, B)
    assert "'w'" not in str(info.value) and "'b'" not in str(info.value)
    # the measured difference is returned when the tolerance admits it
    assert assert_hand_rule(dense_forward, off, X, W, B, rtol=1e-5) == pytest.approx(1e-6, rel=1e-3)


def test_a_wrong_bias_cotangent_names_b():
    def off(dy, x, w, b):
        dx, dw, db = dense_backward(dy, x, w, b)
        return dx, dw, db * 0.5

    with pytest.raises(AssertionError, match=r"'b' \(argument 2\)") as info:
        assert_hand_rule(dense_forward, off, X, W, B)
    assert "'x'" not in str(info.value)


def test_swapped_cotangents_raise_naming_both():
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    assert assert_hand_rule(product, product_backward, a, b) <= 1e-10
    swapped = lambda dy, a, b: product_backward(dy, a, b)[::-1]
    with pytest.raises(AssertionError, match="'a' \\(argument 0\\)") as info:
        assert_hand_rule(product, swapped, a, b)
    assert "'b' (argument 1)" in str(info.value)


def test_wrong_number_of_cotangents_raises():
    with pytest.raises(AssertionError, match="must return 3 cotangents.*got 2"):
        assert_hand_rule(dense_forward, lambda dy, x, w, b: dense_backward(dy, x, w, b)[:2], X, W, B)
    with pytest.raises(AssertionError, match="tuple of 1 cotangents"):
        assert_hand_rule(jnp.sin, lambda dy, x: dy * jnp.cos(x), X)


def test_wrong_shape_raises():
    def summed(dy, x, w, b):
        dx, dw, _ = dense_backward(dy, x, w, b)
        return dx, dw, jnp.sum(dy, axis=0, keepdims=True)  # (1, 5) instead of (5,)

    with pytest.raises(AssertionError, match=r"'b' \(argument 2\) has shape \(1, 5\), expected \(5,\)"):
        assert_hand_rule(dense_forward, summed, X, W, B)


def test_none_for_a_nonzero_cotangent_raises_and_for_a_zero_one_passes():
    with pytest.raises(AssertionError, match="None for 'b' \\(argument 2\\) but jax.vjp gives it a nonzero"):
        assert_hand_rule(dense_forward, lambda dy, x, w, b: dense_backward(dy, x, w, b)[:2] + (None,), X, W, B)

    def ignores_b(a, b):
        del b
        return jnp.sin(a)

    assert assert_hand_rule(ignores_b, lambda dy, a, b: (dy * jnp.cos(a), None), X, X) <= 1e-10


def test_jit_is_exercised():
    """A rule that leaves JAX for numpy works eagerly but not under jit: the checker fails it."""
    eager_only = lambda dy, x: (np.asarray(dy) * np.cos(np.asarray(x)),)
    assert all(np.allclose(a, b) for a, b in zip(eager_only(jnp.ones(3), jnp.ones(3)), [np.cos(np.ones(3))]))
    with pytest.raises(AssertionError, match="backward failed under jax.jit"):
        assert_hand_rule(jnp.sin, eager_only, X)


@pytest.mark.parametrize("vmap_method", [None, "sequential"])
def test_vmap_is_exercised(vmap_method):
    """A host-callback rule without a batching rule works under jit, alone, and fails only under vmap."""

    def via_host(dy, x):
        result = jax.ShapeDtypeStruct(x.shape, x.dtype)
        host = lambda dy, x: np.asarray(dy) * np.cos(np.asarray(x))
        return (jax.pure_callback(host, result, dy, x, vmap_method=vmap_method),)

    with jax.enable_x64(True):
        (dx,) = jax.jit(via_host)(jnp.ones(3), jnp.zeros(3))
    np.testing.assert_array_equal(dx, np.ones(3))
    if vmap_method is None:
        with pytest.raises(AssertionError, match="backward failed under jax.vmap"):
            assert_hand_rule(jnp.sin, via_host, X)
    else:
        assert assert_hand_rule(jnp.sin, via_host, X) <= 1e-10


def test_vmap_uses_an_independent_second_input():
    """A rule right only at the given point (a constant baked in) fails on the second, vmapped input."""
    baked = np.cos(X)
    frozen = lambda dy, x: (dy * baked,)
    with pytest.raises(AssertionError, match="'x' \\(argument 0\\) differs from jax.vjp under jax.vmap") as info:
        assert_hand_rule(jnp.sin, frozen, X)
    assert "under jax.jit" not in str(info.value)


def test_runs_in_float64_whatever_the_input_dtype():
    seen = []

    def watching(dy, x):
        seen.append((dy.dtype, x.dtype))
        return (dy * jnp.cos(x),)

    assert assert_hand_rule(jnp.sin, watching, jnp.asarray(X, jnp.float32)) <= 1e-10
    assert seen and all(pair == (jnp.float64, jnp.float64) for pair in seen)
    assert not jax.config.jax_enable_x64  # restored afterwards


def test_integer_labels_pass_through():
    logits, labels = RNG.normal(size=(4, 3)), np.array([0, 2, 1, 2])
    backward = lambda dloss, z, y: (losses.softmax_cross_entropy_backward(z, y, dloss), None)
    assert assert_hand_rule(losses._cross_entropy, backward, logits, labels) <= 1e-10  # pylint: disable=protected-access


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["key", "PRNGKey"])
@pytest.mark.slow
def test_prng_keys_pass_through(make_key):
    noisy = lambda x, key: x * jax.random.normal(key, x.shape, x.dtype)
    rule = lambda dy, x, key: (dy * jax.random.normal(key, x.shape, x.dtype), None)
    assert assert_hand_rule(noisy, rule, X, make_key(3)) <= 1e-10
    wrong_key = lambda dy, x, key: (dy * jax.random.normal(jax.random.fold_in(key, 1), x.shape, x.dtype), None)
    with pytest.raises(AssertionError, match="'x'"):
        assert_hand_rule(noisy, wrong_key, X, make_key(3))


def test_config_keywords_reach_both_functions():
    power = lambda x, *, p: x**p
    rule = lambda dy, x, *, p: (dy * p * x ** (p - 1),)
    assert assert_hand_rule(power, rule, X, p=3) <= 1e-10
    with pytest.raises(AssertionError):
        assert_hand_rule(power, lambda dy, x, *, p: rule(dy, x, p=p + 1), X, p=3)


def test_pytree_outputs_get_pytree_cotangents():
    both = lambda a, b: {"product": a * b, "sum": a + b}
    rule = lambda dy, a, b: (dy["product"] * b + dy["sum"], dy["product"] * a + dy["sum"])
    assert assert_hand_rule(both, rule, X, X + 1) <= 1e-10


def test_unnamed_positions_fall_back_to_the_index():
    def variadic(*arrays):
        return arrays[0] * arrays[1]

    with pytest.raises(AssertionError, match="for argument 1 differs"):
        assert_hand_rule(variadic, lambda dy, a, b: (dy * b, dy * b), X, X + 1)


def test_nan_in_the_same_places_is_equal_and_elsewhere_is_not():
    assert relative_difference([1.0, np.nan], [1.0, np.nan]) == 0.0
    assert relative_difference([1.0, np.inf], [1.0, np.inf]) == 0.0
    assert relative_difference([1.0, 0.0], [1.0, np.nan]) == math.inf
    assert relative_difference([1.0, np.nan], [1.0, 0.0]) == math.inf
    assert relative_difference([1.0, 2.0], [1.0, 4.0]) == 0.5
    assert relative_difference([1e-300], [0.0]) > 1e7  # measured against tiny, never divided by 0
    # a rule that silences NaN where the true gradient is NaN is caught
    x = np.array([1.0, np.nan, -2.0])
    assert assert_hand_rule(jnp.sin, lambda dy, x: (dy * jnp.cos(x),), x) == 0.0
    with pytest.raises(AssertionError, match="relative difference inf"):
        assert_hand_rule(jnp.sin, lambda dy, x: (jnp.nan_to_num(dy * jnp.cos(x)),), x)


@pytest.mark.parametrize("rtol", [0, -1e-10, math.inf, math.nan])
def test_bad_rtol_is_a_value_error(rtol):
    with pytest.raises(ValueError, match=r"rtol must be a real number in \(0, inf\)"):
        assert_hand_rule(jnp.sin, lambda dy, x: (dy * jnp.cos(x),), X, rtol=rtol)


@pytest.mark.parametrize("rtol", ["1e-10", None, True])
def test_non_number_rtol_is_a_type_error(rtol):
    with pytest.raises(TypeError, match="rtol must be a real number"):
        assert_hand_rule(jnp.sin, lambda dy, x: (dy * jnp.cos(x),), X, rtol=rtol)


def test_non_callables_are_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match="forward must be callable"):
        assert_hand_rule("sin", lambda dy, x: (dy,), X)
    with pytest.raises(TypeError, match="backward must be callable"):
        assert_hand_rule(jnp.sin, None, X)
