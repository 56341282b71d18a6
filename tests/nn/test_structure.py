"""Structure is checked: each bad input is a row, each error names what is wrong and how to fix it."""

import jax
import jax.numpy as jnp
import pytest

from jaxcnn.nn import layers as L
from jaxcnn.nn import models, summaries as summary
from jaxcnn.ops.activations import relu
from jaxcnn.ops.hand_rule import ForwardModeError
from jaxcnn.proof.gradients import loss_and_grad

X = jnp.ones((2, 28, 28, 1))
LABELS = jnp.array([1, 2])


def _params(model, shape=(-1, 28, 28, 1)):
    return model.init(jax.random.key(0), shape)[1]


def _state(model, shape=(-1, 28, 28, 1)):
    return model.init_with_state(jax.random.key(0), shape)[2]


CLASSIC = models.classic_net()
RESNET = models.resnet(blocks_per_stage=1, channels=(2, 2, 2))

# (name, call, error type, substrings of the message)
BAD_INPUTS = [
    ("too few params", lambda: CLASSIC.apply(_params(CLASSIC)[:-1], X), ValueError,
     ["params do not fit model serial", "have 8 arrays, these have 6", "Dense10", "init_with_state"]),
    ("too few params, in the explicit sweep", lambda: CLASSIC.forward_with_state(_params(CLASSIC)[:-1], (), X),
     ValueError, ["serial of 9 layers", "Dense10", "expects params with one entry per layer, got 8 entries"]),
    ("too few params in loss_and_grad", lambda: loss_and_grad(CLASSIC, _params(CLASSIC)[:-1], X, LABELS), ValueError,
     ["params do not fit model serial", "have 8 arrays, these have 6", "layer Dense10 expects an entry 8/b"]),
    ("another model's params", lambda: loss_and_grad(CLASSIC, _params(models.lecture_net()), X, LABELS), ValueError,
     ["params do not fit model serial", "layer", "init_with_state"]),
    ("another model's params in backprop", lambda: loss_and_grad(
        CLASSIC, _params(models.lecture_net()), X, LABELS, grad="backprop"), ValueError, ["params do not fit model"]),
    ("params of the right count, wrong shapes", lambda: loss_and_grad(
        CLASSIC, _params(models.classic_net(num_classes=7)), X, LABELS), ValueError,
     ["entry 8/b of layer Dense10", "shape (7,)", "expected (10,)"]),
    ("state with the wrong count", lambda: RESNET.apply_with_state(_params(RESNET), _state(RESNET)[:-1], X),
     ValueError, ["expects state with one entry per layer"]),
    ("a stateful model without state", lambda: RESNET.apply_with_state(_params(RESNET), (), X), ValueError,
     ["got no state", "BatchNorm keeps state"]),
    ("input shape without the batch", lambda: CLASSIC.init(jax.random.key(0), (28, 28, 1)), ValueError,
     ["Conv", "batch placeholder -1", "(-1, 28, 28, 1)", "got (28, 28, 1)"]),
    ("a flattening model without the batch", lambda: L.serial(L.Flatten(), L.Dense(3)).init(
        jax.random.key(0), (28, 28)), ValueError, ["Dense", "batch placeholder"]),
    ("channels-first input shape", lambda: CLASSIC.init(jax.random.key(0), (-1, 1, 28, 28)), ValueError,
     ["looks channels-first", "channels-last", "(-1, 28, 28, 1)"]),
    ("a layer from a function without a hand rule", lambda: L.layer_from_op(jnp.sin), TypeError,
     ["op must be a jaxcnn op with its hand rule", "hand_rule(forward, backward)"]),
    ("jvp under the hand rules", lambda: jax.jvp(lambda v: relu(v, grad="manual"), (X,), (X,)), ForwardModeError,
     ["relu", "reverse mode only", "grad='autodiff'"]),
    ("jacfwd of a model under the hand rules", lambda: jax.jacfwd(
        lambda v: CLASSIC.apply(_params(CLASSIC), v, grad="manual"))(X[:1]), ForwardModeError,
     ["grad='autodiff'", "Hessian-vector products"]),
]


@pytest.mark.parametrize("name,call,error,parts", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_structure_is_a_clear_error(name, call, error, parts):
    with pytest.raises(error) as caught:
        call()
    for part in parts:
        assert part in str(caught.value), (name, str(caught.value))


def test_a_model_that_draws_random_numbers_only_in_training_is_evaluated_without_state():
    model = models.classic_dropout_net()
    _, params = model.init(jax.random.key(0), (-1, 28, 28, 1))
    assert model.init_with_state(jax.random.key(0), (-1, 28, 28, 1))[2] == ()
    plain = L.serial(*[layer for layer in model.layers if not layer.name.startswith("Dropout")])
    kept = [p for layer, p in zip(model.layers, params) if not layer.name.startswith("Dropout")]
    assert jnp.array_equal(model.apply(params, X), plain.apply(kept, X))


def test_summary_gives_conv_transpose_its_own_formula():
    rows = summary.layer_rows(L.serial(L.ConvTranspose(8, 3, stride=2), L.ConvTranspose(6, 3, groups=2)), (5, 5, 4))
    # w: (3, 3, 8, 4) and b: (8,) = 8 filters of 3·3·4 weights and a bias; grouped: 6 × (3·3·8/2 + 1)
    assert [(row.params, row.formula) for row in rows] == [(296, "8×(3·3·4+1)"), (222, "6×(3·3·4+1)")]
