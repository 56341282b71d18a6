"""Every named model, in float64: the three gradient modes agree (loss, gradients, state), under ``jax.jit``
and ``jax.vmap`` (a batch of batches), and the second derivative (a Hessian-vector product by
reverse-over-reverse) agrees between the hand rules and autodiff.

ResNet runs with one basic block per stage here (``resnet(blocks_per_stage=1)``): the block, the stage
projection and the stem are the code of ResNet-20, at a third of its compile time.
"""

import jax
import jax.numpy as jnp
import pytest
from oracles import assert_close

from jaxcnn.nn import models
from jaxcnn.nn.summaries import DEFAULT_INPUT_SHAPES
from jaxcnn.proof.gradients import MODES, loss_and_grad

BUILD = {name: (lambda name=name: models.get_model(name)) for name in models.MODELS}
BUILD["resnet"] = lambda: models.resnet(blocks_per_stage=1)


def _setup(name, batch=2):
    model = BUILD[name]()
    input_shape = DEFAULT_INPUT_SHAPES[name]
    _, params, state = model.init_with_state(jax.random.PRNGKey(0), (-1, *input_shape))
    params, state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, state))
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, *input_shape), jnp.float64)
    labels = jnp.arange(batch) % 10
    key = jax.random.PRNGKey(7) if "key" in model.needs else None
    return model, params, state, x, labels, key


def test_every_named_model_is_covered():
    assert set(BUILD) == set(models.MODELS) == set(DEFAULT_INPUT_SHAPES)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.slow  # one float64 compilation of three gradients per model; the fast tier proves the modes on small nets
def test_three_modes_agree_under_jit_and_vmap_float64(x64, name):
    """Two independent batches at once (``vmap``), each mode's loss, gradients and state equal to autodiff's
    call on each batch alone (``jit``), to 1e-10."""
    model, params, state, x, labels, key = _setup(name)
    xs = jnp.stack([x, -0.5 * x])
    mapped_modes = jax.jit(lambda xs: {mode: jax.vmap(  # every mode in one compilation
        lambda x: loss_and_grad(model, params, x, labels, grad=mode, state=state, key=key))(xs) for mode in MODES})
    alone = jax.jit(lambda x: loss_and_grad(model, params, x, labels, grad="autodiff", state=state, key=key))
    expected = [jax.tree_util.tree_leaves(alone(xs[index])) for index in range(2)]
    assert len(expected[0]) > 1
    results = mapped_modes(xs)
    for mode in MODES:
        mapped = jax.tree_util.tree_leaves(results[mode])
        for index in range(2):
            for got, want in zip(mapped, expected[index]):
                assert_close(got[index], want, rtol=1e-10, err_msg=f"{name} {mode} batch {index}")


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.thorough) if name == "resnet" else name
                                  for name in sorted(models.MODELS)])
@pytest.mark.slow
def test_hessian_vector_products_agree_float64(x64, name):
    """d/dθ ⟨∇L(θ), v⟩ through the hand rules equals it through autodiff: grad-of-grad differentiates the rules."""
    model, params, state, x, labels, key = _setup(name, batch=1)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    v = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])

    def hvp(mode):
        def directional(p):
            grads = loss_and_grad(model, p, x, labels, grad=mode, state=state, key=key)[1]
            return sum(jnp.vdot(g, u) for g, u in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(v)))
        return jax.grad(directional)

    hvps = jax.jit(lambda p: {mode: hvp(mode)(p) for mode in MODES})(params)  # one compilation
    expected = hvps["autodiff"]
    for mode in ("manual", "backprop"):
        for got, want in zip(jax.tree_util.tree_leaves(hvps[mode]), jax.tree_util.tree_leaves(expected)):
            assert_close(got, want, rtol=1e-10, err_msg=f"{name} {mode} HVP")
