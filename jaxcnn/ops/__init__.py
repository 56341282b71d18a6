"""The math: each op (conv, pooling, dense, activations, losses, …) beside its hand-derived backward.

Every op ``f`` is exported here with its hand rule ``f_backward``; ``padding`` is the
one place that does shape arithmetic, ``hand_rule`` (the module, whose
:func:`~jaxcnn.ops.hand_rule.hand_rule` is also ``jaxcnn.hand_rule``) the one way to
attach a hand rule. May import: nothing of jaxcnn outside ``jaxcnn.ops``.
"""

from jaxcnn.ops.activations import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    mish,
    mish_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from jaxcnn.ops.convolution import conv, conv_backward
from jaxcnn.ops.transposed_conv import conv_transpose, conv_transpose_backward
from jaxcnn.ops.linear import dense, dense_backward
from jaxcnn.ops.stochastic import dropout, dropout_backward
from jaxcnn.ops.hand_rule import ForwardModeError, Op, declare
from jaxcnn.ops.losses import (
    mean_squared_error,
    mean_squared_error_backward,
    softmax_binary_cross_entropy,
    softmax_binary_cross_entropy_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
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
from jaxcnn.ops.padding import conv_output_size, conv_transpose_output_size
from jaxcnn.ops.pool import (
    avg_pool,
    avg_pool_backward,
    global_avg_pool,
    global_avg_pool_backward,
    max_pool,
    max_pool_backward,
)

__all__ = [
    # activations
    "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward",
    "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "gelu", "gelu_backward",
    "softplus", "softplus_backward", "silu", "silu_backward", "mish", "mish_backward", "softmax", "log_softmax",
    # convolutions, dense, dropout
    "conv", "conv_backward", "conv_transpose", "conv_transpose_backward",
    "dense", "dense_backward", "dropout", "dropout_backward",
    # losses
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "softmax_binary_cross_entropy", "softmax_binary_cross_entropy_backward",
    "mean_squared_error", "mean_squared_error_backward",
    # normalisations
    "batch_moments", "batch_norm", "batch_norm_backward", "batch_norm_inference", "batch_norm_inference_backward",
    "layer_norm", "layer_norm_backward", "group_norm", "group_norm_backward",
    # pooling
    "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "global_avg_pool", "global_avg_pool_backward",
    # declaring an op with its hand rule
    "declare", "Op", "ForwardModeError",
    # shape arithmetic
    "conv_output_size", "conv_transpose_output_size",
]
