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
    Relu,
    Sigmoid,
    Silu,
    Softplus,
    Tanh,
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
from jaxcnn.nn.protocol import Layer, apply_with_state, forward_with_state, init_with_state, stateful_layer
from jaxcnn.nn.stateful import BatchNorm, Dropout
from jaxcnn.nn.summary import layer_rows, param_count, summarize_named, summary

__all__ = [
    # the protocol
    "Layer", "init_with_state", "apply_with_state", "forward_with_state", "stateful_layer",
    # layers
    "Conv", "ConvTranspose", "Dense", "Flatten", "MaxPool", "AvgPool", "GlobalAvgPool",
    "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Gelu", "Softplus", "Silu",
    "LayerNorm", "GroupNorm", "BatchNorm", "Dropout",
    # combinators
    "serial", "parallel", "residual", "FanOut", "FanInSum", "FanInConcat", "Identity",
    # named models
    "lecture_net", "classic_net", "sequence_net", "classic_dropout_net", "basic_block", "resnet", "get_model",
    # summaries
    "summary", "summarize_named", "param_count", "layer_rows",
]
