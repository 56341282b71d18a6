"""Layers (quadruples of pure functions), combinators, the named models and their summaries.

May import: ``jaxcnn.ops``.
"""

from jaxcnn.nn.combinators import FanInConcat, FanInSum, FanOut, Identity, parallel, residual, serial
from jaxcnn.nn.layers import (
    AvgPool,
    Conv,
    ConvTranspose,
    Dense,
    Elu,
    Flatten,
    Gelu,
    GlobalAvgPool,
    GroupNorm,
    LayerNorm,
    LeakyRelu,
    MaxPool,
    Mish,
    Relu,
    Sigmoid,
    Silu,
    Softplus,
    Tanh,
    check_input_shape,
    layer_from_op,
    op_layer,
)
from jaxcnn.nn.models import (
    basic_block,
    classic_dropout_net,
    classic_net,
    get_model,
    lecture_net,
    resnet,
    sequence_net,
)
from jaxcnn.nn.protocol import Layer, check_structure, stateless_layer
from jaxcnn.nn.stateful import BatchNorm, Dropout
from jaxcnn.nn.summaries import layer_rows, param_count, summarize_named, summary

__all__ = [
    # the protocol
    "Layer", "stateless_layer", "check_structure", "check_input_shape",
    # a layer from an op with its hand rule (the user's own, or one of jaxcnn.ops)
    "layer_from_op", "op_layer",
    # layers
    "Conv", "ConvTranspose", "Dense", "Flatten", "MaxPool", "AvgPool", "GlobalAvgPool",
    "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Gelu", "Softplus", "Silu", "Mish",
    "LayerNorm", "GroupNorm", "BatchNorm", "Dropout",
    # combinators
    "serial", "parallel", "residual", "FanOut", "FanInSum", "FanInConcat", "Identity",
    # named models
    "lecture_net", "classic_net", "sequence_net", "classic_dropout_net", "basic_block", "resnet", "get_model",
    # summaries
    "summary", "summarize_named", "param_count", "layer_rows",
]
