"""Proofs for the elementwise activations: hand rules == jax.vjp, forwards == PyTorch, NaN in → NaN out.

The relu tests that predate this file stay in test_ops.py; relu is in every table here too.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_close

from jaxcnn.ops.activations import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    mish,
    mish_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from jaxcnn.testing import assert_hand_rule


def _as_rule(backward):
    """``backward(dy, x, **config) -> dx`` as the tuple-returning rule the checker takes."""
    return lambda dy, x, **config: (backward(dy, x, **config),)


# name: (op, its hand rule, the configurations to prove). Built once, so the checker's
# compilations are reused across hypothesis examples of the same shape.
ACTIVATIONS = {
    "relu": (relu, _as_rule(relu_backward), [{}]),
    "tanh": (tanh, _as_rule(tanh_backward), [{}]),
    "sigmoid": (sigmoid, _as_rule(sigmoid_backward), [{}]),
    "leaky_relu": (leaky_relu, _as_rule(leaky_relu_backward), [{"negative_slope": 0.01}, {"negative_slope": -0.5}]),
    "elu": (elu, _as_rule(elu_backward), [{"alpha": 1.0}, {"alpha": 2.5}]),
    "gelu": (gelu, _as_rule(gelu_backward), [{"approximate": False}]),
    "gelu_tanh": (gelu, _as_rule(gelu_backward), [{"approximate": True}]),
    "softplus": (softplus, _as_rule(softplus_backward), [{}]),
    "silu": (silu, _as_rule(silu_backward), [{}]),
    "mish": (mish, _as_rule(mish_backward), [{}]),
}
NAMES = sorted(ACTIVATIONS)
SMOOTH = ["tanh", "sigmoid", "elu", "gelu", "gelu_tanh", "softplus", "silu", "mish"]
SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 40.0, -40.0, 1e3, -1e3]
SHAPES = [(1,), (7,), (2, 3), (2, 2, 3)]


@st.composite
def activation_inputs(draw):
    """An array mixing ordinary values, exact (signed) zeros and large magnitudes.

    Its first element is of order one. The checker measures against the gradient's largest
    element, and JAX's own rules (the oracle) compute derivatives such as 1 − tanh²x or
    σ(1 − σ) as differences that lose all relative accuracy deep in saturation (|x| ≳ 10):
    an array made only of such values would measure the oracle's rounding, not the rule.
    """
    shape = draw(st.sampled_from(SHAPES))
    size = math.prod(shape)
    elements = st.one_of(st.floats(-60, 60, allow_nan=False), st.sampled_from(SPECIAL))
    x = np.array(draw(st.lists(elements, min_size=size, max_size=size)), np.float64).reshape(shape)
    x.flat[0] = draw(st.sampled_from([-1.5, -0.5, 0.5, 1.0, 2.0]))
    return x


@pytest.mark.parametrize("name", NAMES)
@given(x=activation_inputs(), choice=st.integers(0, 1), seed=st.integers(0, 2**16))
@pytest.mark.slow
def test_hand_rule_equals_autodiff(name, x, choice, seed):
    op, rule, configs = ACTIVATIONS[name]
    config = configs[choice % len(configs)]
    assert assert_hand_rule(op, rule, x, seed=seed, **config) <= 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_manual_mode_uses_the_hand_rule(x64, name):
    """grad="manual" differentiates through the hand rule: jax.vjp of it gives backward's dx."""
    op, rule, configs = ACTIVATIONS[name]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)) * 3)
    dy = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)))
    for config in configs:
        y, pullback = jax.vjp(lambda x, config=config: op(x, grad="manual", **config), x)
        np.testing.assert_array_equal(y, op(x, **config))
        assert_close(pullback(dy)[0], rule(dy, x, **config)[0], rtol=1e-15)


# --------------------------------------------------------------- against torch

TORCH_VALUES = [-1e3, -40.0, -20.0, -5.0, -1.0, -0.3, -1e-8, 0.0, 1e-8, 0.3, 1.0, 2.5, 5.0, 20.0, 40.0, 1e3]


def _torch_reference(name, x, config):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    t = torch.from_numpy(x)
    reference = {
        "relu": lambda: functional.relu(t),
        "tanh": lambda: torch.tanh(t),
        "sigmoid": lambda: torch.sigmoid(t),
        "leaky_relu": lambda: functional.leaky_relu(t, config["negative_slope"]),
        "elu": lambda: functional.elu(t, config["alpha"]),
        "gelu": lambda: functional.gelu(t, approximate="none"),
        "gelu_tanh": lambda: functional.gelu(t, approximate="tanh"),
        "softplus": lambda: functional.softplus(t),  # x itself above its threshold 20
        "silu": lambda: functional.silu(t),
        "mish": lambda: functional.mish(t),
    }[name]()
    return reference.numpy()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.slow
def test_forward_matches_torch(x64, name, grad):
    op, _, configs = ACTIVATIONS[name]
    x = np.array(TORCH_VALUES)
    if name == "softplus":
        x = x[x <= 20]  # PyTorch returns x above 20 (off by up to 2e-9); the wide range is checked below
    for config in configs:
        np.testing.assert_allclose(
            op(jnp.asarray(x), grad=grad, **config), _torch_reference(name, x, config),
            rtol=1e-13, atol=1e-15, err_msg=f"{name} {config}",
        )


def test_softplus_is_exact_and_finite_at_any_magnitude(x64):
    x = np.array([-1e308, -1e3, -700.0, -40.0, -1.0, 0.0, 1.0, 20.0, 40.0, 745.0, 1e3, 1e308])  # no subnormals: XLA flushes them
    np.testing.assert_allclose(softplus(jnp.asarray(x)), np.logaddexp(x, 0.0), rtol=1e-15, atol=0)
    assert np.all(np.isfinite(softplus(jnp.asarray(x))))
    np.testing.assert_allclose(softplus(jnp.asarray([30.0])), [30.0 + math.exp(-30.0)], rtol=1e-15)


def test_sigmoid_is_finite_and_exact_at_large_magnitudes(x64):
    x = jnp.asarray([-1e308, -1e3, -700.0, -40.0, 40.0, 1e3, 1e308])
    y = np.asarray(sigmoid(x))
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    expected = [0.0, 0.0, math.exp(-700) / (1 + math.exp(-700)), math.exp(-40) / (1 + math.exp(-40)), 1, 1, 1]
    np.testing.assert_allclose(y, expected, rtol=1e-15, atol=0)


# ------------------------------------------------------------------------ NaN


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_nan_in_nan_out(x64, name, grad):
    op, rule, configs = ACTIVATIONS[name]
    x = jnp.asarray([np.nan, -2.0, 0.0, 3.0])
    for config in configs:
        for y in (op(x, grad=grad, **config), jax.jit(lambda x, config=config: op(x, grad=grad, **config))(x)):
            assert np.isnan(y[0]) and np.all(np.isfinite(y[1:])), (name, config, y)
        # and the rule agrees with autodiff at the NaN (NaN where it is NaN, equal elsewhere)
        assert assert_hand_rule(op, rule, x, **config) <= 1e-10


def test_relu_maps_nan_to_nan_and_keeps_its_subgradient():
    x = jnp.asarray([np.nan, -1.0, 0.0, -0.0, 2.0])
    for grad in ("autodiff", "manual"):
        y = relu(x, grad=grad)
        assert np.isnan(y[0])
        np.testing.assert_array_equal(y[1:], [0.0, 0.0, 0.0, 2.0])
        g = jax.grad(lambda x, grad=grad: jnp.sum(relu(x, grad=grad)))(x[1:])
        np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(relu_backward(jnp.ones(4), x[1:]), [0.0, 0.0, 0.0, 1.0])


# ----------------------------------------------------------------------- kinks


KINKS = jnp.asarray([-1.0, -0.0, 0.0, 1.0])


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("name,reference,config", [
    ("relu", jax.nn.relu, {}),
    ("leaky_relu", lambda x: jax.nn.leaky_relu(x, 0.2), {"negative_slope": 0.2}),
    ("elu", lambda x: jax.nn.elu(x, 1.5), {"alpha": 1.5}),
])
def test_subgradients_at_kinks_match_jax(name, reference, config, grad):
    op = ACTIVATIONS[name][0]
    ours = jax.grad(lambda x: jnp.sum(op(x, grad=grad, **config)))(KINKS)
    np.testing.assert_array_equal(ours, jax.grad(lambda x: jnp.sum(reference(x)))(KINKS))


def test_kink_values():
    """leaky ReLU takes slope 1 at 0, ELU slope α at 0 (jax.nn's choices)."""
    np.testing.assert_array_equal(leaky_relu_backward(jnp.ones(4), KINKS, 0.25), [0.25, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(elu_backward(jnp.ones(4), KINKS, 1.5), [1.5 * math.exp(-1), 1.5, 1.5, 1.0],
                               rtol=1e-6)


# --------------------------------------------------------------- grad of grad


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.slow
def test_grad_of_grad_through_the_hand_rule(x64, name):
    """The manual gradient is JAX code: its own gradient equals autodiff's second derivative."""
    op, _, configs = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(9,)) * 2)
    w = jnp.asarray(rng.normal(size=(9,)))
    for config in configs:
        def f(x, grad, config=config):
            first = jax.grad(lambda x: jnp.sum(w * op(x, grad=grad, **config)))(x)
            return jnp.sum(jnp.sin(first))

        assert_close(jax.grad(f)(x, "manual"), jax.grad(f)(x, "autodiff"), rtol=1e-10, err_msg=f"{name} {config}")


# ------------------------------------------------- accuracy where autodiff cancels


def test_hand_rules_keep_relative_accuracy_deep_in_saturation(x64):
    """σ' = σ(x)σ(−x), tanh' = 4σ(2x)σ(−2x), elu' = αe^x: accurate to rounding elementwise."""
    one = jnp.ones(1)
    cases = [
        (sigmoid_backward(one, jnp.asarray([40.0])), math.exp(-40) / (1 + math.exp(-40)) ** 2),
        (sigmoid_backward(one, jnp.asarray([-40.0])), math.exp(-40) / (1 + math.exp(-40)) ** 2),
        (tanh_backward(one, jnp.asarray([10.0])), 1 / math.cosh(10.0) ** 2),
        (elu_backward(one, jnp.asarray([-40.0]), 2.0), 2 * math.exp(-40)),
        (softplus_backward(one, jnp.asarray([-40.0])), 1 / (1 + math.exp(40))),
        (silu_backward(one, jnp.asarray([40.0])), 1 / (1 + math.exp(-40)) * (1 + 40 / (1 + math.exp(40)))),
    ]
    for got, want in cases:
        np.testing.assert_allclose(float(got[0]), want, rtol=1e-13)


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize("op,argument", [(leaky_relu, "negative_slope"), (elu, "alpha")])
@pytest.mark.parametrize("value,error", [
    (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
    ("0.1", TypeError), (None, TypeError), (True, TypeError), (jnp.ones(2), TypeError),
])
def test_bad_parameters_are_named(op, argument, value, error):
    with pytest.raises(error, match=f"{argument} must be a finite real number, got"):
        op(jnp.ones(3), **{argument: value})


def test_parameters_accept_numpy_scalars():
    np.testing.assert_allclose(leaky_relu(jnp.asarray([-2.0]), np.float32(0.25)), [-0.5])
    np.testing.assert_allclose(elu(jnp.asarray([0.0, 1.0]), np.int64(2)), [0.0, 1.0])


def test_gelu_approximate_must_be_a_bool():
    with pytest.raises(TypeError, match="approximate must be True or False, got str 'tanh'"):
        gelu(jnp.ones(3), approximate="tanh")


@pytest.mark.parametrize("name", NAMES)
def test_bad_grad_mode(name):
    with pytest.raises(ValueError, match="grad must be one of"):
        ACTIVATIONS[name][0](jnp.ones(3), grad="hand")


def test_integer_inputs_become_floats():
    for name in NAMES:
        if name != "relu":
            assert jnp.issubdtype(ACTIVATIONS[name][0](jnp.arange(-2, 3)).dtype, jnp.floating), name
