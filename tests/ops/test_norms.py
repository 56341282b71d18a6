"""Proofs for batch, layer and group norm: hand rules == jax.vjp, forwards == PyTorch, grad of grad."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_close

from jaxcnn.ops.norms import (
    batch_moments,
    batch_norm,
    batch_norm_backward,
    batch_norm_inference,
    batch_norm_inference_backward,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
)
from jaxcnn.testing import assert_hand_rule

# A fixed set of shapes (no spatial axis, 1-D, 2-D, 3-D; batch 1 and more): the checker's
# compilations are reused across examples, and hypothesis varies the values, groups and eps.
SHAPES = [(2, 3), (1, 4), (3, 5, 2), (1, 4, 6), (2, 3, 2, 4), (1, 2, 3, 6), (2, 2, 2, 3, 4)]
NORMS = {
    "batch_norm": (batch_norm, batch_norm_backward),
    "layer_norm": (layer_norm, layer_norm_backward),
    "group_norm": (group_norm, group_norm_backward),
}


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _statistic_size(name, shape, groups=1):
    """How many elements share one mean and variance."""
    if name == "batch_norm":
        return math.prod(shape[:-1])
    if name == "layer_norm":
        return shape[-1]
    return math.prod(shape[1:-1]) * shape[-1] // groups


@st.composite
def norm_cases(draw, name):
    """Values of every spread and offset; a statistic over 2 elements gets eps=0.1 and spread <= 1.

    With two elements x̂ = ±√(σ²/(σ² + ε)): every gradient direction but ε's remainder,
    dx ∝ ε/(σ² + ε), is projected out, so both the rule and autodiff compute dx as a difference
    that cancels to ~ε/σ² of its terms. With ε ≪ σ² that measures rounding, not the rule.
    """
    shapes = SHAPES
    if name == "batch_norm":  # one element per channel has no spread to normalise
        shapes = [s for s in SHAPES if math.prod(s[:-1]) >= 2]
    shape = draw(st.sampled_from(shapes))
    config = {"eps": draw(st.sampled_from([1e-5, 0.1]))}
    if name == "group_norm":
        config["groups"] = draw(st.sampled_from(_divisors(shape[-1])))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    spread = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    if _statistic_size(name, shape, config.get("groups", 1)) == 2:
        config["eps"], spread = 0.1, min(spread, 1.0)
    shift = draw(st.sampled_from([0.0, -3.0, 100.0]))
    x = rng.normal(size=shape) * spread + shift
    scale, offset = rng.normal(size=shape[-1:]), rng.normal(size=shape[-1:])
    return x, scale, offset, config


@pytest.mark.parametrize("name", sorted(NORMS))
@given(data=st.data())
@pytest.mark.slow
def test_hand_rule_equals_autodiff(name, data):
    x, scale, offset, config = data.draw(norm_cases(name))
    forward, backward = NORMS[name]
    seed = data.draw(st.integers(0, 2**16))
    assert assert_hand_rule(forward, backward, x, scale, offset, seed=seed, **config) <= 1e-10


@given(data=st.data())
@pytest.mark.slow
def test_inference_hand_rule_equals_autodiff(data):
    x, scale, offset, config = data.draw(norm_cases("layer_norm"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    mean, var = rng.normal(size=scale.shape), rng.uniform(0.01, 3.0, size=scale.shape)
    assert assert_hand_rule(
        batch_norm_inference, batch_norm_inference_backward, x, mean, var, scale, offset, **config
    ) <= 1e-10


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.slow
def test_manual_mode_uses_the_hand_rule(x64, name):
    forward, backward = NORMS[name]
    rng = np.random.default_rng(3)
    x, dy = jnp.asarray(rng.normal(size=(2, 3, 4))), jnp.asarray(rng.normal(size=(2, 3, 4)))
    scale, offset = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=4))
    config = {"groups": 2} if name == "group_norm" else {}
    y, pullback = jax.vjp(lambda *a: forward(*a, grad="manual", **config), x, scale, offset)
    np.testing.assert_array_equal(y, forward(x, scale, offset, **config))
    for got, want in zip(pullback(dy), backward(dy, x, scale, offset, eps=1e-5, **config)):
        assert_close(got, want, rtol=1e-15)


# --------------------------------------------------------------- against torch


def _channels_first(x):
    return np.moveaxis(x, -1, 1)


def _torch(name, x, scale, offset, eps, groups=None):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    w, b = torch.from_numpy(scale), torch.from_numpy(offset)
    if name == "layer_norm":
        return functional.layer_norm(torch.from_numpy(x), (x.shape[-1],), w, b, eps).numpy()
    xt = torch.from_numpy(np.ascontiguousarray(_channels_first(x)))
    if name == "batch_norm":
        y = functional.batch_norm(xt, None, None, w, b, training=True, eps=eps)
    else:
        y = functional.group_norm(xt, groups, w, b, eps)
    return np.moveaxis(y.numpy(), 1, -1)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("shape", [(4, 6), (3, 7, 6), (2, 5, 4, 6), (2, 3, 2, 3, 6)])
@pytest.mark.slow
def test_forward_matches_torch(x64, name, shape, grad):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape) * 4 + 2
    scale, offset = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    forward, _ = NORMS[name]
    for eps, groups in [(1e-5, 3), (0.5, 1), (1e-3, 6)]:
        config = {"groups": groups} if name == "group_norm" else {}
        y = forward(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(offset), eps=eps, grad=grad, **config)
        np.testing.assert_allclose(y, _torch(name, x, scale, offset, eps, groups), rtol=1e-12, atol=1e-12)


def test_batch_norm_inference_matches_torch_eval_mode(x64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5, 2))
    mean, var = rng.normal(size=2), rng.uniform(0.1, 2, size=2)
    scale, offset = rng.normal(size=2), rng.normal(size=2)
    expected = torch.nn.functional.batch_norm(
        torch.from_numpy(np.ascontiguousarray(_channels_first(x))), torch.from_numpy(mean), torch.from_numpy(var),
        torch.from_numpy(scale), torch.from_numpy(offset), training=False, eps=1e-3,
    ).numpy()
    for grad in ("autodiff", "manual"):
        y = batch_norm_inference(*map(jnp.asarray, (x, mean, var, scale, offset)), eps=1e-3, grad=grad)
        np.testing.assert_allclose(y, np.moveaxis(expected, 1, -1), rtol=1e-12, atol=1e-12)


def test_batch_moments_are_the_biased_statistics_batch_norm_uses(x64):
    x = np.random.default_rng(1).normal(size=(3, 4, 2, 5)) * 3 + 1
    mean, var = batch_moments(jnp.asarray(x))
    assert mean.shape == var.shape == (5,)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2), ddof=0), rtol=1e-13)
    ones, zeros = jnp.ones(5), jnp.zeros(5)
    np.testing.assert_allclose(
        batch_norm_inference(jnp.asarray(x), mean, var, ones, zeros), batch_norm(jnp.asarray(x), ones, zeros),
        rtol=1e-12, atol=1e-12,
    )


# --------------------------------------------------------------- grad of grad


@pytest.mark.parametrize("name", sorted(NORMS) + ["batch_norm_inference"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 3, 4)])
@pytest.mark.slow
def test_grad_of_grad_through_the_hand_rule(x64, name, shape):
    """A scalar function of the manual gradient has the gradient autodiff's second derivatives give."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=shape) * 2 + 0.5)
    scale, offset, w = (jnp.asarray(rng.normal(size=shape[-1])) for _ in range(3))
    mean, var = jnp.asarray(rng.normal(size=shape[-1])), jnp.asarray(rng.uniform(0.5, 2, size=shape[-1]))
    weights = jnp.asarray(rng.normal(size=shape))
    if name == "batch_norm_inference":
        norm = lambda x, s, o, grad: batch_norm_inference(x, mean, var, s, o, grad=grad)
    else:
        config = {"groups": 2} if name == "group_norm" else {}
        norm = lambda x, s, o, grad: NORMS[name][0](x, s, o, grad=grad, **config)

    def of_gradient(x, s, o, grad):
        grads = jax.grad(lambda *a: jnp.sum(weights * jnp.tanh(norm(*a, grad=grad))), argnums=(0, 1, 2))(x, s, o)
        return sum(jnp.sum(jnp.sin(g) * w_) for g, w_ in zip(grads, (weights, w, w)))

    manual = jax.grad(of_gradient, argnums=(0, 1, 2))(x, scale, offset, "manual")
    autodiff = jax.grad(of_gradient, argnums=(0, 1, 2))(x, scale, offset, "autodiff")
    for got, want in zip(manual, autodiff):
        assert_close(got, want, rtol=1e-10)


# ---------------------------------------------------------------- bad input

X, C1 = jnp.ones((2, 3, 4)), jnp.ones(4)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_bad_shapes_are_named(name):
    forward, _ = NORMS[name]
    config = {"groups": 2} if name == "group_norm" else {}
    with pytest.raises(ValueError, match=r"scale must have shape \(channels,\) = \(4,\).*got shape \(3,\)"):
        forward(X, jnp.ones(3), C1, **config)
    with pytest.raises(ValueError, match=r"offset must have shape \(channels,\) = \(4,\).*got shape \(1, 4\)"):
        forward(X, C1, jnp.ones((1, 4)), **config)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, \*spatial, channels\) with rank >= 2"):
        forward(jnp.ones(4), C1, C1, **config)


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("eps", [0, -1e-5, math.nan, math.inf, "1e-5", None, True])
def test_bad_eps(name, eps):
    config = {"groups": 2} if name == "group_norm" else {}
    with pytest.raises(ValueError, match="eps must be a finite real number > 0, got"):
        NORMS[name][0](X, C1, C1, eps=eps, **config)


@pytest.mark.parametrize("groups", [0, -2, 3, 8, 2.0, True, None])
def test_bad_groups(groups):
    with pytest.raises(ValueError, match=r"groups must be a positive integer dividing channels=4, got"):
        group_norm(X, C1, C1, groups=groups)


def test_inference_statistics_shapes_are_named():
    with pytest.raises(ValueError, match=r"mean must have shape \(channels,\) = \(4,\)"):
        batch_norm_inference(X, jnp.ones(2), C1, C1, C1)
    with pytest.raises(ValueError, match=r"var must have shape \(channels,\) = \(4,\)"):
        batch_norm_inference(X, C1, jnp.ones(()), C1, C1)


def test_batch_moments_needs_a_channel_axis():
    with pytest.raises(ValueError, match="rank >= 2"):
        batch_moments(jnp.ones(3))


@pytest.mark.parametrize("name", sorted(NORMS))
def test_bad_grad_mode(name):
    config = {"groups": 2} if name == "group_norm" else {}
    with pytest.raises(ValueError, match="grad must be one of"):
        NORMS[name][0](X, C1, C1, grad="hand", **config)
