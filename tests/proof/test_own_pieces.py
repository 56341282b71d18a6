"""A researcher's own pieces: an own op as a layer in one call, an own hand-rule loss in every mode,
and the whole-model checker, which catches a wrong layer rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import layers as L
from jaxcnn.nn import models
from jaxcnn.ops.hand_rule import hand_rule
from jaxcnn.proof.gradients import MODES, loss_and_grad
from jaxcnn.testing import assert_modes_agree
from oracles import assert_close


def softsign(x):
    return x / (1 + jnp.abs(x))


def softsign_backward(dy, x):
    return (dy / (1 + jnp.abs(x)) ** 2,)


def hinge_squared(logits, labels):
    """The squared multi-class hinge: mean over the batch of Σ_j max(0, 1 + z_j − z_y)² (j ≠ y)."""
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)
    margins = jnp.maximum(0.0, 1 + logits - picked) * (jnp.arange(logits.shape[1]) != labels[:, None])
    return jnp.mean(jnp.sum(margins ** 2, axis=1))


def hinge_squared_backward(dloss, logits, labels):
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)
    others = jnp.arange(logits.shape[1]) != labels[:, None]
    margins = jnp.maximum(0.0, 1 + logits - picked) * others
    dz = 2 * margins
    dz = dz - jnp.sum(dz, axis=1, keepdims=True) * ~others
    return dz * dloss / logits.shape[0], None


Softsign = L.layer_from_op(hand_rule(softsign, softsign_backward))
HINGE = hand_rule(hinge_squared, hinge_squared_backward)


def test_own_op_and_own_loss_train_alike_in_every_mode(x64):
    model = L.serial(L.Conv(3, 2), Softsign(), L.Flatten(), L.Dense(4))
    _, params = model.init(jax.random.key(0), (-1, 4, 4, 2))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4, 4, 2)))
    labels = jnp.array([0, 1, 2, 3, 1])
    trained = {}
    for mode in MODES:
        step = jax.jit(lambda p, m=mode: loss_and_grad(model, p, x, labels, grad=m, loss=HINGE))
        p, losses = params, []
        for _ in range(5):
            value, grads, _ = step(p)
            losses.append(float(value))
            p = jax.tree.map(lambda a, g: a - 0.1 * g, p, grads)
        assert losses[-1] < losses[0], (mode, losses)
        trained[mode] = p
    for mode in ("manual", "backprop"):
        for a, b in zip(jax.tree.leaves(trained[mode]), jax.tree.leaves(trained["autodiff"])):
            assert_close(a, b, rtol=1e-10, err_msg=mode)
    assert assert_modes_agree(model, params, x, labels, loss=HINGE) <= 1e-10


def test_the_model_checker_catches_a_planted_wrong_layer_rule():
    wrong = L.layer_from_op(hand_rule(softsign, lambda dy, x: (dy / (1 + jnp.abs(x)),)))  # the square forgotten
    model = L.serial(L.Flatten(), L.Dense(4), wrong(), L.Dense(3))
    _, params = model.init(jax.random.key(0), (-1, 5))
    x, labels = jax.random.normal(jax.random.key(1), (4, 5)), jnp.array([0, 1, 2, 0])
    with pytest.raises(AssertionError, match="mode .manual. differs from .autodiff. in grads 1/b .layer Dense4.: relative difference"):
        assert_modes_agree(model, params, x, labels)


@pytest.mark.parametrize("name", ["resnet", "classic-dropout"])
@pytest.mark.slow
def test_the_model_checker_proves_models_with_state_and_key(name):
    model = models.get_model(name) if name != "resnet" else models.resnet(blocks_per_stage=1, channels=(2, 2, 2))
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 12, 12, 1))
    x, labels = jax.random.normal(jax.random.key(1), (3, 12, 12, 1)), jnp.array([0, 5, 9])
    key = jax.random.key(2) if "key" in model.needs else None
    assert assert_modes_agree(model, params, x, labels, state=state, key=key) <= 1e-10
