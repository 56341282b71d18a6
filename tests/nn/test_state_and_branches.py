"""Proofs for the extended Layer protocol: combinators, BatchNorm's state, Dropout's key, the new models.

The three gradient modes must agree (float64 to 1e-10) on networks that branch, keep state and draw
random masks; the combinators' backward must sum the cotangents over every path (seed 002).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis_profiles import examples
from hypothesis import given, settings, strategies as st

import jaxcnn
from jaxcnn.nn import layers as L
from jaxcnn.nn import models
from jaxcnn.ops.norms import batch_moments, batch_norm
from jaxcnn.proof.gradients import MODES
from oracles import assert_close


def _normal(seed, shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _as64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _three_modes(model, params, x, labels, **kwargs):
    """``{mode: loss_and_grad(...)}`` for the three modes, each jitted."""
    return {mode: jax.jit(lambda p, m=mode: jaxcnn.loss_and_grad(model, p, x, labels, grad=m, **kwargs))(params)
            for mode in MODES}


def _assert_modes_agree(results, rtol=1e-10):
    reference = results["autodiff"]
    for mode in ("manual", "backprop"):
        for ref_leaf, leaf in zip(jax.tree.leaves(reference), jax.tree.leaves(results[mode])):
            assert_close(leaf, ref_leaf, rtol=rtol, err_msg=mode)


def _branchy():
    return L.serial(
        L.Conv(4, 3, padding="SAME"),
        L.residual(L.serial(L.Conv(4, 3, padding="SAME"), L.Relu(), L.Conv(4, 3, padding="SAME"))),
        L.FanOut(3),
        L.parallel(L.Conv(3, 1), L.serial(L.Conv(2, 3, padding="SAME"), L.Tanh()), L.Identity()),
        L.FanInConcat(),
        L.residual(L.Conv(5, 1), L.Conv(5, 3, padding="SAME")),
        L.GlobalAvgPool(),
        L.Dense(6),
    )


@examples(3)
@given(st.integers(1, 3), st.integers(3, 7), st.integers(0, 999))
@pytest.mark.slow
def test_branches_three_modes_agree(x64, batch, size, seed):
    model = _branchy()
    shape, params = model.init(jax.random.key(seed), (-1, size, size, 2))
    params = _as64(params)
    x, labels = _normal(seed, (batch, size, size, 2)), jnp.arange(batch) % 6
    assert model.apply(params, x).shape == (batch, *shape[1:])
    _assert_modes_agree(_three_modes(model, params, x, labels))


def test_fan_out_backward_sums_every_path(x64):
    """x feeds three paths; its cotangent is the sum of the three (seed 002)."""
    model = L.serial(L.FanOut(3), L.parallel(L.Identity(), L.Identity(), L.Identity()), L.FanInSum())
    _, params = model.init(jax.random.key(0), (-1, 4))
    x, dy = _normal(1, (2, 4)), _normal(2, (2, 4))
    y, residuals = model.forward(params, x)
    _, dx = model.backward(params, residuals, dy)
    assert_close(y, 3 * x, rtol=1e-12)
    assert_close(dx, 3 * dy, rtol=1e-12)
    _, pullback = jax.vjp(lambda v: model.apply(params, v), x)
    assert_close(dx, pullback(dy)[0], rtol=1e-12)


@pytest.mark.slow
def test_fan_in_concat_backward_slices(x64):
    model = L.serial(L.FanOut(2), L.parallel(L.Dense(2), L.Dense(3)), L.FanInConcat())
    shape, params = model.init(jax.random.key(0), (-1, 4))
    assert shape == (-1, 5)
    params = _as64(params)
    x, dy = _normal(1, (3, 4)), _normal(2, (3, 5))
    y, residuals = model.forward(params, x)
    grads, dx = model.backward(params, residuals, dy)
    _, pullback = jax.vjp(lambda p, v: model.apply(p, v), params, x)
    expected_grads, expected_dx = pullback(dy)
    assert_close(dx, expected_dx, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        assert_close(a, b, rtol=1e-12)


# ------------------------------------------------------------------ BatchNorm


def _bn_net():
    return L.serial(L.Conv(3, 3), L.BatchNorm(momentum=0.8), L.Relu(), L.Flatten(), L.Dense(4))


@pytest.mark.slow
def test_batch_norm_layer_trains_on_batch_statistics_and_moves_running_ones(x64):
    model = _bn_net()
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 6, 6, 2))
    params, state = _as64(params), _as64(state)
    assert_close(state[1]["mean"], np.zeros(3), rtol=0)
    assert_close(state[1]["var"], np.ones(3), rtol=0)
    x = _normal(3, (5, 6, 6, 2)) * 2 + 1
    y, new_state = model.apply_with_state(params, state, x, train=True)
    h = model.layers[0].apply(params[0], x)
    mean, var = batch_moments(h)
    assert_close(new_state[1]["mean"], 0.2 * mean, rtol=1e-12)
    assert_close(new_state[1]["var"], 0.8 + 0.2 * var, rtol=1e-12)
    expected = batch_norm(h, params[1]["scale"], params[1]["offset"])
    assert_close(model.layers[1].apply_with_state(params[1], state[1], h, train=True)[0], expected, rtol=1e-12)
    # evaluation: the running statistics, state unchanged
    y_eval, same = model.apply_with_state(params, new_state, x, train=False)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, new_state))
    bn_eval = (h - new_state[1]["mean"]) / jnp.sqrt(new_state[1]["var"] + 1e-5)
    assert_close(model.layers[1].apply_with_state(params[1], new_state[1], h)[0], bn_eval, rtol=1e-12)
    assert y.shape == y_eval.shape == (5, 4)


@pytest.mark.slow
def test_batch_norm_three_modes_agree_on_grads_and_state(x64):
    model = _bn_net()
    _, params, state = model.init_with_state(jax.random.key(1), (-1, 6, 6, 2))
    params, state = _as64(params), _as64(state)
    x, labels = _normal(4, (4, 6, 6, 2)), jnp.array([0, 1, 2, 3])
    results = _three_modes(model, params, x, labels, state=state)
    assert all(len(result) == 3 for result in results.values())
    _assert_modes_agree(results)


def test_batch_norm_eval_mode_backprop_equals_autodiff(x64):
    layer = L.BatchNorm()
    _, params, state = layer.init_with_state(jax.random.key(0), (-1, 3, 4))
    state = {"mean": _normal(1, (4,)), "var": jnp.abs(_normal(2, (4,))) + 0.5}
    params = {"scale": _normal(3, (4,)), "offset": _normal(4, (4,))}
    x, dy = _normal(5, (2, 3, 4)), _normal(6, (2, 3, 4))
    y, residuals, _ = layer.forward_with_state(params, state, x, train=False)
    grads, dx = layer.backward(params, residuals, dy)
    _, pullback = jax.vjp(lambda p, v: layer.apply_with_state(p, state, v, train=False)[0], params, x)
    expected_grads, expected_dx = pullback(dy)
    assert_close(dx, expected_dx, rtol=1e-12)
    for key in ("scale", "offset"):
        assert_close(grads[key], expected_grads[key], rtol=1e-12)


@pytest.mark.slow
def test_stateful_model_without_state_is_a_clear_error():
    model = _bn_net()
    _, params = model.init(jax.random.key(0), (-1, 6, 6, 2))
    x, labels = jnp.zeros((2, 6, 6, 2)), jnp.array([0, 1])
    with pytest.raises(ValueError, match="BatchNorm needs its state"):
        model.apply(params, x)
    for mode in MODES:
        with pytest.raises(ValueError, match="pass state="):
            jaxcnn.loss_and_grad(model, params, x, labels, grad=mode)
    with pytest.raises(ValueError, match="expects state with one entry per layer"):
        model.apply_with_state(params, [()], x)


# -------------------------------------------------------------------- Dropout


@pytest.mark.slow
def test_dropout_layer_key_and_modes(x64):
    model = L.serial(L.Flatten(), L.Dense(16), L.Relu(), L.Dropout(0.5), L.Dense(3))
    _, params = model.init(jax.random.key(0), (-1, 4, 2))
    params = _as64(params)
    x, labels = _normal(1, (6, 4, 2)), jnp.arange(6) % 3
    key = jax.random.key(7)
    # evaluation: dropout is the identity, no key needed
    plain = L.serial(*model.layers[:3], model.layers[4])
    y_eval, _ = model.apply_with_state(params, (), x)
    assert_close(y_eval, plain.apply([params[0], params[1], params[2], params[4]], x), rtol=1e-12)
    # training: the same key gives the same mask, another key another one
    first = model.apply_with_state(params, (), x, key=key, train=True)[0]
    again = model.apply_with_state(params, (), x, key=key, train=True)[0]
    other = model.apply_with_state(params, (), x, key=jax.random.key(8), train=True)[0]
    assert bool(jnp.all(first == again)) and not bool(jnp.all(first == other))
    with pytest.raises(ValueError, match="needs a key in training"):
        model.apply_with_state(params, (), x, train=True)
    with pytest.raises(ValueError, match="pass key="):
        jaxcnn.loss_and_grad(model, params, x, labels)
    results = _three_modes(model, params, x, labels, key=key)
    assert all(len(result) == 3 and result[2] == () for result in results.values())
    _assert_modes_agree(results)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, "0.5", float("nan")])
def test_dropout_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(rate)


# --------------------------------------------------------------------- models


@pytest.mark.slow
def test_stateless_model_is_unchanged():
    """A model without state or randomness has the state ``()`` and gets it back from loss_and_grad."""
    model = models.classic_net()
    assert model.needs == frozenset() and model.init_with_state(jax.random.key(0), models.MNIST_SHAPE)[2] == ()
    _, params = model.init(jax.random.key(0), models.MNIST_SHAPE)
    out = jaxcnn.loss_and_grad(model, params, jnp.zeros((2, 28, 28, 1)), jnp.array([1, 2]))
    assert len(out) == 3 and out[2] == ()


def test_resnet_structure_and_parameter_count():
    model = models.resnet()
    assert model.needs == frozenset({"state"})
    shapes = []

    def init(key):
        shape, params, state = model.init_with_state(key, models.MNIST_SHAPE)
        shapes.append(tuple(shape))
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    assert shapes == [(-1, 10)]
    # stem 3·3·1·16 (no bias before a BatchNorm) and BN 2·16; stage 1: 3 × (2 × 3·3·16·16 + 2·2·16); stages
    # 2 and 3 start with a stride-2 block with a 1×1 projection + BN; dense 64·10+10 (ResNet-20: ~0.27 M params).
    stem = 144 + 32
    stage1 = 3 * (2 * 2304 + 64)
    stage2 = (4608 + 9216 + 128 + 512 + 64) + 2 * (2 * 9216 + 128)
    stage3 = (18432 + 36864 + 256 + 2048 + 128) + 2 * (2 * 36864 + 256)
    assert jaxcnn.param_count(params) == stem + stage1 + stage2 + stage3 + 650 == 272_186
    # running statistics: mean and var for each of the 1 + 2·9 + 2 = 21 BatchNorms
    assert len(jax.tree.leaves(state)) == 2 * 21
    assert jaxcnn.param_count(state) == 2 * (16 + 6 * 16 + 6 * 32 + 32 + 6 * 64 + 64)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        models.resnet(blocks_per_stage=0)
    small = models.resnet(blocks_per_stage=1)
    assert jaxcnn.param_count(jax.eval_shape(lambda k: small.init(k, models.MNIST_SHAPE)[1], jax.random.key(0))) < 272_186


@pytest.mark.slow
def test_resnet_three_modes_agree_in_float64(x64):
    model = models.resnet(blocks_per_stage=1, channels=(4, 8, 8))
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 12, 12, 1))
    params, state = _as64(params), _as64(state)
    x, labels = _normal(1, (3, 12, 12, 1)), jnp.array([1, 5, 9])
    results = _three_modes(model, params, x, labels, state=state)
    _assert_modes_agree(results)


def test_classic_dropout_is_the_keras_recipe():
    model = models.get_model("classic-dropout")
    names = [layer.name for layer in model.layers]
    assert names[5] == "Dropout0.25" and names[9] == "Dropout0.5" and model.needs == frozenset({"key"})
