"""The proof registry's test: every exported op, layer and combinator is a row, and every row is proven.

Ops (hypothesis inputs, float64): the hand rule equals ``jax.vjp`` of the plain forward
(``jaxcnn.testing.assert_hand_rule``, under ``jit`` and ``vmap``), and ``grad="manual"`` differentiates
to the same cotangents as ``grad="autodiff"``. Layers and combinators, each inside a small net
(float64): the loss, the gradients and the new state agree to 1e-10 in the three modes
(``autodiff``, ``manual``, ``backprop``), BatchNorm with its state, Dropout with its key.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis_profiles import examples
from hypothesis import given, settings, strategies as st

import registry
from jaxcnn.ops.hand_rule import Op, declare
from jaxcnn.proof.gradients import MODES, loss_and_grad
from jaxcnn.testing import assert_hand_rule
from oracles import assert_close

OPS = registry.exported_ops()
LAYERS = registry.exported_layers()


def test_every_exported_op_and_layer_has_a_row():
    assert not registry.uncovered(), f"exported without a proof-registry row: {registry.uncovered()}"
    assert len(OPS) >= 20 and len(LAYERS) >= 25


def test_a_planted_export_without_a_row_fails(monkeypatch):
    """The coverage check sees a new op or layer the moment it is exported."""
    from jaxcnn.nn import layers
    from jaxcnn.ops import activations

    @declare(lambda x: x * x, lambda dy, x: 2 * x * dy)
    def planted_square(x):
        """x²."""
        return (x,), {}

    monkeypatch.setattr(activations, "planted_square", planted_square, raising=False)
    monkeypatch.setattr(layers, "PlantedSquare", layers.layer_from_op(planted_square), raising=False)
    assert registry.uncovered() == ["layer PlantedSquare", "op planted_square"]


def _floating(value):
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


@pytest.mark.parametrize("name", sorted(name for name, op in OPS.items() if isinstance(op, Op)))
@examples(3)
@given(data=st.data())
@pytest.mark.slow
def test_op_hand_rule_equals_jax_vjp(x64, name, data):
    """The declared hand rule equals jax.vjp of the declared forward, under jit and vmap."""
    op = OPS[name]
    args, kwargs = registry.OPS[name](data.draw)
    arrays, config = op.arguments(*args, **kwargs)
    wrt = registry.WRT.get(name, range(len(arrays)))

    def full(primals):  # the arrays the op does not differentiate stay fixed
        merged = list(arrays)
        for i, value in zip(wrt, primals):
            merged[i] = value
        return merged

    forward = lambda *primals, **static: op.forward(*full(primals), **static)
    rule = lambda dy, *primals, **static: tuple(
        _as_tuple(op.backward(dy, *full(primals), **static))[i] for i in wrt)
    assert assert_hand_rule(forward, rule, *[arrays[i] for i in wrt], **config) <= 1e-10


def _as_tuple(cotangents):
    return tuple(cotangents) if isinstance(cotangents, (tuple, list)) else (cotangents,)


def _floating(value):
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


@pytest.mark.parametrize("name", sorted(OPS))
@examples(2)
@given(data=st.data())
def test_op_manual_equals_autodiff(x64, name, data):
    """``grad="manual"`` (the hand rule as VJP) gives the cotangents ``grad="autodiff"`` gives."""
    op = OPS[name]
    args, kwargs = registry.OPS[name](data.draw)
    slots = [i for i, value in enumerate(args) if _floating(value) and i in registry.WRT.get(name, (i,))]

    def cotangents(grad):
        def function(*differentiable):
            full = list(args)
            for i, value in zip(slots, differentiable):
                full[i] = value
            return op(*full, grad=grad, **kwargs)

        y, pullback = jax.vjp(function, *[jnp.asarray(args[i]) for i in slots])
        dy = np.random.default_rng(len(slots)).normal(size=jnp.shape(y))
        return pullback(jnp.asarray(dy, y.dtype))

    for manual, autodiff in zip(cotangents("manual"), cotangents("autodiff")):
        assert_close(manual, autodiff, rtol=1e-10, err_msg=name)


@pytest.mark.parametrize("name", sorted(registry.LAYERS))
def test_layer_three_modes_agree(x64, name):
    model, input_shape = registry.LAYERS[name]()
    _, params, state = model.init_with_state(jax.random.key(0), (-1, *input_shape))
    params, state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, state))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, *input_shape)))
    labels = jnp.array([0, 2, 1, 2])
    key = jax.random.key(3) if "key" in model.needs else None
    run = jax.jit(lambda p, s: {mode: loss_and_grad(model, p, x, labels, grad=mode, state=s, key=key)
                                for mode in MODES})
    results = run(params, state)
    reference = results["autodiff"]
    assert jax.tree.structure(reference[1]) == jax.tree.structure(params)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(reference[1]))
    for mode in ("manual", "backprop"):
        assert jax.tree.structure(results[mode]) == jax.tree.structure(reference)
        for leaf, expected in zip(jax.tree.leaves(results[mode]), jax.tree.leaves(reference)):
            assert_close(leaf, expected, rtol=1e-10, err_msg=f"{name} {mode}")
