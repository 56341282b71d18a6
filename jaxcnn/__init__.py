"""jaxcnn: pure-functional JAX CNNs whose every op has a hand-derived gradient.

The package is organised by floor, and imports only run downward:
``jaxcnn.ops`` (math and hand rules) < ``jaxcnn.nn`` (layers, models) < ``jaxcnn.proof``
(gradient modes, checks) < ``jaxcnn.training`` (data to checkpoints); ``jaxcnn.lecture``
holds the notes' alternative views and ``jaxcnn.testing`` the checker for a user's hand rule.

This module is the public face: every op with its hand rule, every layer, combinator
and named model, the gradient modes, and the training entry points, each under one
name (``jaxcnn.conv``, ``jaxcnn.Conv``, ``jaxcnn.loss_and_grad``, ``jaxcnn.TrainConfig``).
The names are imported on first use, so ``import jaxcnn`` alone loads nothing else and
changes nothing in the process: the ``jaxcnn`` command's Ctrl-C handling and allocator
setting are :func:`configure_process`, an explicit call.
"""

import importlib as _importlib

__version__ = "0.2.0"

_EXPORTS = {
    "jaxcnn.ops": (
        "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward",
        "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "gelu", "gelu_backward",
        "softplus", "softplus_backward", "silu", "silu_backward", "mish", "mish_backward", "softmax", "log_softmax",
        "conv", "conv_backward", "conv_transpose", "conv_transpose_backward",
        "dense", "dense_backward", "dropout", "dropout_backward",
        "softmax_cross_entropy", "softmax_cross_entropy_backward",
        "softmax_binary_cross_entropy", "softmax_binary_cross_entropy_backward",
        "mean_squared_error", "mean_squared_error_backward",
        "batch_moments", "batch_norm", "batch_norm_backward", "batch_norm_inference", "batch_norm_inference_backward",
        "layer_norm", "layer_norm_backward", "group_norm", "group_norm_backward",
        "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "global_avg_pool", "global_avg_pool_backward",
        "conv_output_size", "conv_transpose_output_size", "declare", "Op", "ForwardModeError",
    ),
    "jaxcnn.ops.hand_rule": ("hand_rule",),
    "jaxcnn.nn": (
        "Layer", "stateless_layer", "layer_from_op", "op_layer", "check_structure", "check_input_shape",
        "Conv", "ConvTranspose", "Dense", "Flatten", "MaxPool", "AvgPool", "GlobalAvgPool",
        "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Gelu", "Softplus", "Silu", "Mish",
        "LayerNorm", "GroupNorm", "BatchNorm", "Dropout",
        "serial", "parallel", "residual", "FanOut", "FanInSum", "FanInConcat", "Identity",
        "lecture_net", "classic_net", "sequence_net", "classic_dropout_net", "basic_block", "resnet", "get_model",
        "summary", "summarize_named", "param_count", "layer_rows",
    ),
    "jaxcnn.proof": ("loss_and_grad", "loss_grad_and_logits", "backprop", "assert_modes_agree"),
    "jaxcnn.lecture": ("conv_matrix", "convolve"),
    "jaxcnn.training": ("TrainConfig", "train_and_evaluate", "evaluate_checkpoint", "configure_process"),
}
_SUBPACKAGES = ("ops", "nn", "proof", "training", "lecture", "testing")
_SOURCE = {name: package for package, names in _EXPORTS.items() for name in names}

__all__ = [*_SUBPACKAGES, *_SOURCE]


def __getattr__(name):
    """Imports a subpackage, or an exported name's floor, on first use (PEP 562)."""
    if name in _SUBPACKAGES:
        value = _importlib.import_module(f"{__name__}.{name}")
    elif name in _SOURCE:
        value = getattr(_importlib.import_module(_SOURCE[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
