"""The proof registry: one row per exported op, layer and combinator.

``OPS[name]`` draws the public arguments of op ``name`` (hypothesis): ``draw -> (args, kwargs)``.
``LAYERS[name]`` builds a small net that holds layer ``name`` and gives its input shape (no batch):
``() -> (model, input_shape)``. ``tests/proof/test_registry.py`` proves every row and fails when an
exported op or layer has none (:func:`uncovered`).
"""

import importlib
import inspect
import pkgutil

import jax
import numpy as np
from hypothesis import strategies as st

import jaxcnn.nn
import jaxcnn.ops
from jaxcnn.nn import layers as L
from jaxcnn.ops.hand_rule import Op



def _submodules(package):
    return tuple(importlib.import_module(f"{package.__name__}.{info.name}") for info in pkgutil.iter_modules(package.__path__))


OP_MODULES = _submodules(jaxcnn.ops)  # every module of the ops floor: a new op file is seen at once
LAYER_MODULES = _submodules(jaxcnn.nn)
COMBINATORS = ("serial", "parallel", "residual")


def _normal(draw, shape, scale=1.0):
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).normal(size=shape) * scale


def _elementwise(**config):
    def draw_args(draw):
        shape = draw(st.sampled_from([(3,), (2, 5), (2, 3, 4)]))
        x = _normal(draw, shape, 2.0)
        x.flat[0] = 0.75  # an element with an O(1) derivative (see assert_hand_rule's note)
        return (x,), dict(config)
    return draw_args


def _with_channels(rank_min=0, rank_max=2):
    def shape(draw, channels=None):
        batch = draw(st.integers(1, 3))
        spatial = tuple(draw(st.lists(st.integers(2, 5), min_size=rank_min, max_size=rank_max)))
        return (batch, *spatial, channels or draw(st.integers(1, 4)))
    return shape


def _norm(op_name):
    def draw_args(draw):
        groups = draw(st.integers(1, 2)) if op_name == "group_norm" else None
        channels = (groups or 1) * draw(st.integers(1, 3))
        shape = _with_channels()(draw, channels)
        x = _normal(draw, shape)
        scale, offset = _normal(draw, (channels,)), _normal(draw, (channels,))
        return (x, scale, offset), ({"eps": 1e-3, "groups": groups} if groups else {"eps": 1e-3})
    return draw_args


def _batch_norm_inference(draw):
    shape = _with_channels()(draw)
    channels = shape[-1]
    variance = np.abs(_normal(draw, (channels,))) + 0.5
    arrays = (_normal(draw, shape), _normal(draw, (channels,)), variance, _normal(draw, (channels,)),
              _normal(draw, (channels,)))
    return arrays, {"eps": 1e-3}


def _pool(op_name):
    def draw_args(draw):
        size = draw(st.integers(3, 6))
        x = _normal(draw, (draw(st.integers(1, 2)), size, size + 1, draw(st.integers(1, 3))))
        window = draw(st.integers(1, 3))
        padding = draw(st.sampled_from(["VALID", "SAME"]))
        kwargs = {"count_include_pad": draw(st.booleans())} if op_name == "avg_pool" else {}
        return (x, window, None, padding), kwargs
    return draw_args


def _global_avg_pool(draw):
    return (_normal(draw, _with_channels(rank_min=1, rank_max=3)(draw)),), {}


def _dense(draw):
    batch, fan_in, fan_out = (draw(st.integers(1, 4)) for _ in range(3))
    bias = _normal(draw, (fan_out,)) if draw(st.booleans()) else None
    return (_normal(draw, (batch, fan_in)), _normal(draw, (fan_in, fan_out)), bias), {}


def _dropout(draw):
    x = _normal(draw, (draw(st.integers(1, 3)), draw(st.integers(2, 6))))
    return (x, jax.random.key(draw(st.integers(0, 99)))), {"rate": draw(st.sampled_from([0.0, 0.25, 0.5]))}


def _classification(draw):
    batch, classes = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    labels = np.random.default_rng(draw(st.integers(0, 99))).integers(0, classes, batch)
    return (_normal(draw, (batch, classes), 2.0), labels), {}


def _regression(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)))
    return (_normal(draw, shape), _normal(draw, shape)), {}


def _conv(draw):
    channels = draw(st.integers(1, 3))
    x = _normal(draw, (draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(3, 6)), channels))
    w = _normal(draw, (2, 2, channels, draw(st.integers(1, 3))))
    stride = draw(st.integers(1, 2))
    return (x, w, _normal(draw, (w.shape[-1],))), {"stride": stride, "padding": draw(st.sampled_from(["VALID", "SAME"]))}


def _conv_transpose(draw):
    channels = draw(st.integers(1, 3))
    y = _normal(draw, (draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(2, 4)), channels))
    out = draw(st.integers(1, 3))
    w = _normal(draw, (2, 2, out, channels))
    return (y, w, _normal(draw, (out,))), {"stride": draw(st.integers(1, 2))}


OPS = {
    "relu": _elementwise(), "tanh": _elementwise(), "sigmoid": _elementwise(),
    "leaky_relu": _elementwise(negative_slope=0.2), "elu": _elementwise(alpha=0.7),
    "gelu": _elementwise(approximate=False), "softplus": _elementwise(), "silu": _elementwise(), "mish": _elementwise(),
    "dense": _dense, "dropout": _dropout,
    "softmax_cross_entropy": _classification, "softmax_binary_cross_entropy": _classification,
    "mean_squared_error": _regression,
    "batch_norm": _norm("batch_norm"), "batch_norm_inference": _batch_norm_inference,
    "layer_norm": _norm("layer_norm"), "group_norm": _norm("group_norm"),
    "max_pool": _pool("max_pool"), "avg_pool": _pool("avg_pool"), "global_avg_pool": _global_avg_pool,
    "conv": _conv, "conv_transpose": _conv_transpose,
}

# the positional arrays an op differentiates, where not every floating one (a loss's target gets no gradient)
WRT = {"mean_squared_error": (0,)}


def _head(*body):
    """``body`` between a flattening input stage and a 3-class dense output."""
    return L.serial(*body, L.Flatten(), L.Dense(3))


def _after_dense(layer):
    return lambda: (L.serial(L.Flatten(), L.Dense(4), layer, L.Dense(3)), (2, 3))


def _after_conv(layer, channels=4, shape=(5, 4, 2)):
    return lambda: (_head(L.Conv(channels, 1), layer), shape)


LAYERS = {
    "Conv": lambda: (_head(L.Conv(3, 2, stride=2, padding="SAME")), (5, 4, 2)),
    "ConvTranspose": lambda: (_head(L.ConvTranspose(3, 2, stride=2)), (3, 2, 2)),
    "Dense": lambda: (L.serial(L.Flatten(), L.Dense(4), L.Dense(3)), (2, 3)),
    "Flatten": lambda: (_head(L.Conv(2, 1)), (3, 3, 2)),
    "Relu": _after_dense(L.Relu()), "Tanh": _after_dense(L.Tanh()), "Sigmoid": _after_dense(L.Sigmoid()),
    "LeakyRelu": _after_dense(L.LeakyRelu(0.2)), "Elu": _after_dense(L.Elu(0.7)),
    "Gelu": _after_dense(L.Gelu(approximate=True)), "Softplus": _after_dense(L.Softplus()),
    "Silu": _after_dense(L.Silu()), "Mish": _after_dense(L.Mish()),
    "MaxPool": _after_conv(L.MaxPool(2, padding="SAME")), "AvgPool": _after_conv(L.AvgPool(2, stride=1)),
    "GlobalAvgPool": lambda: (L.serial(L.Conv(4, 1), L.GlobalAvgPool(), L.Dense(3)), (4, 3, 2)),
    "LayerNorm": _after_conv(L.LayerNorm()), "GroupNorm": _after_conv(L.GroupNorm(2)),
    "BatchNorm": _after_conv(L.BatchNorm(momentum=0.8)),
    "Dropout": _after_dense(L.Dropout(0.5)),
    "Identity": _after_dense(L.Identity()),
    "FanOut": lambda: (L.serial(L.Flatten(), L.Dense(4), L.FanOut(2), L.parallel(L.Tanh(), L.Relu()),
                                L.FanInSum(), L.Dense(3)), (2, 3)),
    "FanInSum": lambda: (L.serial(L.Flatten(), L.Dense(4), L.FanOut(3), L.parallel(L.Dense(4), L.Identity(), L.Elu()),
                                  L.FanInSum(), L.Dense(3)), (2, 3)),
    "FanInConcat": lambda: (L.serial(L.Conv(2, 1), L.FanOut(2), L.parallel(L.Conv(2, 1), L.Conv(3, 3, padding="SAME")),
                                     L.FanInConcat(), L.Flatten(), L.Dense(3)), (3, 3, 2)),
    "parallel": lambda: (L.serial(L.Flatten(), L.FanOut(2), L.parallel(L.Dense(4), L.serial(L.Dense(4), L.Tanh())),
                                  L.FanInSum(), L.Dense(3)), (2, 3)),
    "serial": lambda: (L.serial(L.serial(L.Flatten(), L.Dense(4)), L.serial(L.Silu(), L.Dense(3))), (2, 3)),
    "residual": lambda: (_head(L.Conv(2, 1), L.residual(L.serial(L.Conv(2, 3, padding="SAME"), L.BatchNorm(), L.Relu())),
                               L.Dropout(0.25)), (4, 4, 2)),
}


def exported_ops(modules=OP_MODULES) -> dict:
    """Every exported op: a public :class:`Op`, or a public function with a public ``<name>_backward``."""
    found = {}
    for module in modules:
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            if isinstance(value, Op) or (inspect.isfunction(value) and callable(vars(module).get(f"{name}_backward"))
                                         and value.__module__ == module.__name__):
                found[name] = value
    return found


def exported_layers(modules=LAYER_MODULES) -> dict:
    """Every exported layer constructor (a capitalised public function of ``jaxcnn.nn``) and combinator."""
    found = {}
    for module in modules:
        for name, value in vars(module).items():
            if not (inspect.isfunction(value) and value.__module__.startswith("jaxcnn.nn")):
                continue
            if name[0].isupper() or name in COMBINATORS:
                found[name] = value
    return found


def uncovered(ops=None, layers=None) -> list:
    """The exported ops and layers that have no row."""
    ops = exported_ops() if ops is None else ops
    layers = exported_layers() if layers is None else layers
    return sorted({f"op {name}" for name in ops if name not in OPS}
                  | {f"layer {name}" for name in layers if name not in LAYERS})
