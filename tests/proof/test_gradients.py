"""Proofs for layers and loss_and_grad: the three gradient modes agree."""

import itertools
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.nn import layers as L
from jaxcnn.nn import layers, models
from jaxcnn import loss_and_grad, softmax_binary_cross_entropy
from jaxcnn.ops import onednn
from oracles import assert_close

MODES = ("autodiff", "manual", "backprop")


def every_layer_net(rank, impl):
    """Conv (strided, padded, dilated, grouped), both pools, ReLU, Flatten, Dense in one net; every layer
    on its own is a row of the proof registry (tests/proof/registry.py)."""
    return L.serial(
        L.Conv(4, 3, padding="SAME", impl=impl), L.Relu(),
        L.MaxPool(2, padding="SAME"),
        L.Conv(6, 2, stride=1, padding=[(1, 0)] * rank, dilation=2, groups=2, impl=impl), L.Relu(),
        L.AvgPool(2, stride=1, padding=1, count_include_pad=False),
        L.Flatten(), L.Dense(8), L.Relu(), L.Dense(5, init="glorot"),
    )


SPATIAL = {1: (13,), 2: (9, 8), 3: (5, 6, 4)}


def _setup(rank, impl, dtype, seed=0):
    model = every_layer_net(rank, impl)
    _, params = model.init(jax.random.PRNGKey(seed), (-1, *SPATIAL[rank], 2))
    params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (3, *SPATIAL[rank], 2), dtype)
    labels = jnp.array([0, 4, 2])
    return model, params, x, labels


def _all_modes(model, params, x, labels, loss=jaxcnn.softmax_cross_entropy):
    # Compilation dominates these small nets; XLA's backend optimisations buy nothing here.
    run = jax.jit(lambda p, x, y: {m: loss_and_grad(model, p, x, y, grad=m, loss=loss) for m in MODES},
                  compiler_options={"xla_backend_optimization_level": 0})
    return run(params, x, labels)


@pytest.mark.parametrize("rank,impl", [(1, "lax"), (2, "lax"), (2, "explicit"), (3, "explicit")])
@pytest.mark.slow
def test_three_modes_agree_float64(x64, rank, impl):
    results = _all_modes(*_setup(rank, impl, jnp.float64))
    value, grads, _ = results["autodiff"]
    for mode in ("manual", "backprop"):
        other_value, other_grads, _ = results[mode]
        assert_close(other_value, value, rtol=1e-10)
        assert jax.tree_util.tree_structure(other_grads) == jax.tree_util.tree_structure(grads)
        for g, e in zip(jax.tree_util.tree_leaves(other_grads), jax.tree_util.tree_leaves(grads)):
            assert_close(g, e, rtol=1e-10, err_msg=mode)


def test_manual_and_backprop_run_the_same_ops_under_auto():
    """Under ``impl="auto"`` the explicit sweep's conv forward is resolved as the hand rule
    (``conv_forward``), so ``manual`` and ``backprop`` run the same forward and rule: in float32 they give
    the classic net the same loss and gradients bit for bit (jit-compiled alike), and the forward is the
    impl's own, without the hand rule's ``custom_vjp`` around it (oneDNN's forward, where ``auto`` picks it,
    is a ``custom_vjp`` of its own: its gradient is oneDNN's backward passes)."""
    model = models.classic_net()
    _, params = model.init(jax.random.PRNGKey(0), (-1, 28, 28, 1))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((8, 28, 28, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    manual_run, backprop_run = (jax.jit(lambda p, x, y, m=m: loss_and_grad(model, p, x, y, grad=m))(params, x, labels)
                                for m in ("manual", "backprop"))
    np.testing.assert_array_equal(manual_run[0], backprop_run[0])
    jax.tree.map(np.testing.assert_array_equal, manual_run[1], backprop_run[1])
    from jaxcnn.ops.convolution import conv_forward  # pylint: disable=import-outside-toplevel

    w = params[2]["w"]
    h = jnp.asarray(rng.normal(size=(2, 26, 26, 32)), jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda h, w: conv_forward(h, w))(h, w))
    by_hand = str(jax.make_jaxpr(lambda h, w: jaxcnn.conv(h, w, grad="manual"))(h, w))
    assert "conv_general_dilated" not in jaxpr  # im2col's GEMM or oneDNN's custom call
    assert jaxpr.count("custom_vjp_call[") == by_hand.count("custom_vjp_call[") - 1  # no hand rule around it
    np.testing.assert_array_equal(conv_forward(h, w), jaxcnn.conv(h, w, grad="manual"))


@pytest.mark.parametrize("impl", ("lax", "explicit"))
@pytest.mark.slow
def test_three_modes_agree_float32_on_every_device(device, impl):
    model, params, x, labels = _setup(2, impl, jnp.float32)
    params, x = jax.device_put((params, x), device)
    results = _all_modes(model, params, x, labels)
    value, grads, _ = results["autodiff"]
    for mode in ("manual", "backprop"):
        assert_close(results[mode][0], value, rtol=1e-5)
        for g, e in zip(jax.tree_util.tree_leaves(results[mode][1]), jax.tree_util.tree_leaves(grads)):
            assert_close(g, e, rtol=1e-5, err_msg=mode)


@pytest.mark.slow
def test_binary_cross_entropy_modes_agree(x64):
    model, params, x, labels = _setup(2, "lax", jnp.float64)
    results = _all_modes(model, params, x, labels, loss=softmax_binary_cross_entropy)
    for mode in ("manual", "backprop"):
        for g, e in zip(jax.tree_util.tree_leaves(results[mode]), jax.tree_util.tree_leaves(results["autodiff"])):
            assert_close(g, e, rtol=1e-10)


@pytest.mark.slow
def test_backprop_uses_no_autodiff(monkeypatch):
    """The explicit sweep must trace with jax.grad, jax.vjp and custom_vjp unavailable."""
    model, params, x, labels = _setup(2, "explicit", jnp.float32)

    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff used inside backprop")

    for name in ("grad", "vjp", "value_and_grad", "custom_vjp", "linearize", "jvp"):
        monkeypatch.setattr(jax, name, forbidden)
    value, grads, _ = jax.jit(lambda p: loss_and_grad(model, p, x, labels, grad="backprop"))(params)
    assert np.isfinite(float(value)) and len(grads) == len(params)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.slow
def test_backprop_uses_no_autodiff_in_any_model(monkeypatch, name):
    """Every named model, with its state and dropout key (resnet, classic-dropout) included, traces its
    explicit sweep with jax.grad, jax.vjp and custom_vjp unavailable; custom_vjp stays available to oneDNN's
    passes alone (``auto`` runs them for float32 on the CPU): a custom call has no derivative of its own, so
    each pass declares one, as ``lax.conv_general_dilated`` has its own, and the sweep never runs it."""
    model = models.get_model(name)
    shape = (-1, 128, 1) if name == "sequence" else models.MNIST_SHAPE
    _, params, state = model.init_with_state(jax.random.key(0), shape)
    x, labels = jnp.ones((2, *shape[1:])), jnp.array([1, 2])
    kwargs = dict(state=state, key=jax.random.key(1) if "key" in model.needs else None)

    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff used inside backprop")

    custom_vjp = jax.custom_vjp

    def custom_vjp_for_onednn_only(*args, **kwargs):
        if any(frame.f_code.co_filename == onednn.__file__ for frame, _ in traceback.walk_stack(None)):
            return custom_vjp(*args, **kwargs)
        return forbidden()

    for attribute in ("grad", "vjp", "value_and_grad", "linearize", "jvp"):
        monkeypatch.setattr(jax, attribute, forbidden)
    monkeypatch.setattr(jax, "custom_vjp", custom_vjp_for_onednn_only)
    out = jax.eval_shape(lambda p: loss_and_grad(model, p, x, labels, grad="backprop", **kwargs), params)
    assert jax.tree.structure(out[1]) == jax.tree.structure(params)


def test_manual_mode_uses_the_hand_rules():
    """With grad="manual" every op is a custom_vjp call (its VJP is the hand rule); with autodiff none is."""
    model, params, x, labels = _setup(2, "lax", jnp.float32)
    loss = jaxcnn.softmax_cross_entropy
    text = lambda grad: str(jax.make_jaxpr(lambda p: loss(model.apply(p, x, grad=grad), labels, grad=grad))(params))
    manual, autodiff = text("manual"), text("autodiff")
    # conv, relu, maxpool, conv, relu, avgpool, dense, relu, dense, loss = 10 hand-ruled ops
    assert manual.count("custom_vjp_call") >= 10
    assert "custom_vjp_call" not in autodiff


@pytest.mark.parametrize("grad", ("autodiff", "manual"))
@pytest.mark.slow
def test_vmap_of_per_example_gradients(grad):
    model, params, x, labels = _setup(1, "lax", jnp.float32)

    def per_example(x, y):
        loss = lambda p: jaxcnn.softmax_cross_entropy(model.apply(p, x[None], grad=grad), y[None], grad=grad)
        return jax.grad(loss)(params)

    batched = jax.jit(jax.vmap(per_example))(x, labels)
    summed = jax.tree_util.tree_map(lambda g: g.sum(0) / x.shape[0], batched)
    _, full, _ = loss_and_grad(model, params, x, labels, grad="autodiff")
    for a, b in zip(jax.tree_util.tree_leaves(summed), jax.tree_util.tree_leaves(full)):
        assert_close(a, b, rtol=1e-5)


# --------------------------------------------------------------------- layers


SHAPE_GRID = list(itertools.product((1, 2), ("VALID", "SAME", "FULL", 2, [(0, 3), (1, 0)]), (1, 2)))


@pytest.mark.parametrize("stride,padding,dilation", SHAPE_GRID, ids=str)
def test_init_predicts_apply_shape(stride, padding, dilation):
    """stax's test: the shape ``init`` predicts is the shape ``apply`` returns."""
    model = L.serial(
        L.Conv(3, (3, 2), stride=stride, padding=padding, dilation=dilation),
        L.MaxPool(2, stride=stride, padding=padding if isinstance(padding, (list, int)) else "SAME"),
        L.AvgPool((1, 2), padding=padding if padding != "FULL" else "VALID"),
    )
    shape, params = model.init(jax.random.PRNGKey(0), (-1, 10, 9, 2))
    y = jax.eval_shape(lambda p, x: model.apply(p, x), params, jax.ShapeDtypeStruct((2, 10, 9, 2), jnp.float32))
    assert y.shape == (2, *shape[1:])


@pytest.mark.slow
def test_params_structure_and_determinism():
    model = jaxcnn.classic_net()
    _, params = model.init(jax.random.PRNGKey(3), (-1, 28, 28, 1))
    assert [type(p) for p in params] == [dict, tuple, dict, tuple, tuple, tuple, dict, tuple, dict]
    assert all(p == () for p in params if isinstance(p, tuple))
    _, again = model.init(jax.random.PRNGKey(3), (-1, 28, 28, 1))
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)
    w = params[0]["w"]
    assert abs(float(jnp.std(w)) - np.sqrt(2 / 9)) < 0.1  # He: std = sqrt(2 / fan_in)


def test_layer_errors():
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        L.Conv(0, 3)
    with pytest.raises(ValueError, match="groups must be a positive int dividing the input channels 3"):
        L.Conv(4, 3, groups=2).init(jax.random.PRNGKey(0), (-1, 8, 8, 3))
    with pytest.raises(ValueError, match="Dense expects input_shape"):
        L.Dense(3).init(jax.random.PRNGKey(0), (-1, 8, 8, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        L.MaxPool(5).init(jax.random.PRNGKey(0), (-1, 4, 4, 3))
    with pytest.raises(TypeError, match="serial expects one or more Layer"):
        L.serial(L.Relu(), "relu")
    with pytest.raises(ValueError, match="init must be one of \\('he', 'glorot'\\)"):
        L.Dense(3, init="zeros").init(jax.random.PRNGKey(0), (-1, 4))


@pytest.mark.slow
def test_loss_and_grad_errors():
    model, params, x, labels = _setup(1, "lax", jnp.float32)
    with pytest.raises(ValueError, match="grad must be one of \\('autodiff', 'manual', 'backprop'\\), got 'reverse'"):
        loss_and_grad(model, params, x, labels, grad="reverse")
    with pytest.raises(ValueError, match="needs a loss with a hand rule"):
        loss_and_grad(model, params, x, labels, grad="backprop", loss=lambda z, y: jnp.sum(z))
    value, _, _ = loss_and_grad(model, params, x, labels, loss=lambda z, y: jnp.sum(z ** 2))
    assert np.isfinite(float(value))


@pytest.mark.parametrize("name", ["resnet", "classic-dropout"])  # state; a key and no state
@pytest.mark.slow
def test_loss_grad_and_logits_returns_the_forwards_logits(x64, name):
    """The logits come from the differentiated forward: equal to a plain apply in training mode, in every mode,
    and the loss, gradient and state equal loss_and_grad's."""
    # ResNet with one block per stage: ResNet-20's stem, block and projection code at a third of its compile time
    model = models.resnet(blocks_per_stage=1) if name == "resnet" else models.MODELS[name]()
    _, params, state = model.init_with_state(jax.random.PRNGKey(0), (-1, 28, 28, 1))
    params, state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, state))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1), jnp.float64)
    labels = jnp.array([0, 4, 2, 9])
    extra = {"state": state, "key": jax.random.PRNGKey(7) if "key" in model.needs else None}

    @jax.jit  # one compilation for every mode (op-by-op dispatch of three ResNet gradients is the slow part)
    def run(params):
        expected, _ = model.apply_with_state(params, state, x, key=extra["key"], train=True)
        return expected, {mode: (jaxcnn.proof.gradients.loss_grad_and_logits(model, params, x, labels, grad=mode,
                                                                              **extra),
                                 loss_and_grad(model, params, x, labels, grad=mode, **extra)) for mode in MODES}

    expected, results = run(params)
    for mode, ((value, grads, new_state, logits), reference) in results.items():
        assert_close(logits, expected, rtol=1e-12, err_msg=mode)
        assert_close(value, reference[0], rtol=1e-12)
        for g, e in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(reference[1])):
            assert_close(g, e, rtol=1e-12, err_msg=mode)
        if extra["state"] == ():
            assert new_state == ()
        else:
            for s, e in zip(jax.tree_util.tree_leaves(new_state), jax.tree_util.tree_leaves(reference[2])):
                assert_close(s, e, rtol=1e-12, err_msg=mode)
