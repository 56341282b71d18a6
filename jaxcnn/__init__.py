"""jaxcnn: pure-functional JAX CNNs whose every op has a hand-derived gradient.

The package is organised by floor, and imports only run downward:
``ops`` (math and hand rules) < ``nn`` (layers, models) < ``proof`` (gradient modes, checks)
< ``training`` (data to checkpoints); ``lecture`` holds the notes' alternative views.
This module is the public face; the old flat module paths (``jaxcnn.layers``,
``jaxcnn.train``, ``jaxcnn.conv`` as a module, …) stay importable as aliases.
"""

# First, before jax imports: in the ``jaxcnn`` command (only there), Ctrl-C from now on exits with one line.
from jaxcnn.training import interrupt as _interrupt  # isort: skip

_interrupt.install_if_command()

# Also before jax starts its threads: keep the memory XLA:CPU frees (fresh pages cost a step up to a third).
from jaxcnn.training import allocator as _allocator  # noqa: E402  # isort: skip

_allocator.keep_freed_memory()

import importlib as _importlib  # noqa: E402
import sys as _sys

from jaxcnn.lecture.toeplitz import conv_matrix, convolve
from jaxcnn.nn.layers import AvgPool, Conv, Dense, Flatten, Layer, MaxPool, Relu, serial
from jaxcnn.nn.summary import param_count, summarize_named, summary
from jaxcnn.ops.activations import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
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
from jaxcnn.ops.conv import conv, conv_backward
from jaxcnn.ops.conv_transpose import conv_transpose, conv_transpose_backward
from jaxcnn.ops.dense import dense, dense_backward
from jaxcnn.ops.dropout import dropout, dropout_backward
from jaxcnn.ops.hand_rule import hand_rule
from jaxcnn.ops.losses import (
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
from jaxcnn.ops.padding import conv_output_size
from jaxcnn.ops.pool import (
    avg_pool,
    avg_pool_backward,
    global_avg_pool,
    global_avg_pool_backward,
    max_pool,
    max_pool_backward,
)
from jaxcnn.proof.gradients import backprop, loss_and_grad
from jaxcnn import testing  # jaxcnn.testing.assert_hand_rule, the public checker
from jaxcnn.training.loop import TrainConfig, evaluate_checkpoint, train_and_evaluate

# The flat layout's module paths, kept working: ``import jaxcnn.layers as L``,
# ``from jaxcnn import data``, ``from jaxcnn.conv import IMPLS``, ...
_MOVED = {
    "activations": "jaxcnn.ops.activations", "conv": "jaxcnn.ops.conv", "dense": "jaxcnn.ops.dense",
    "fft": "jaxcnn.ops.fft", "losses": "jaxcnn.ops.losses", "manual": "jaxcnn.ops.hand_rule",
    "padding": "jaxcnn.ops.padding", "patches": "jaxcnn.ops.patches", "pool": "jaxcnn.ops.pool",
    "layers": "jaxcnn.nn.layers", "models": "jaxcnn.nn.models", "summary": "jaxcnn.nn.summary",
    "gradients": "jaxcnn.proof.gradients", "gradcheck": "jaxcnn.proof.mode_comparison",
    "augment": "jaxcnn.training.augment", "bench": "jaxcnn.training.bench",
    "checkpoint": "jaxcnn.training.checkpoint", "data": "jaxcnn.training.data",
    "optim": "jaxcnn.training.optim", "parallel": "jaxcnn.training.parallel",
    "plots": "jaxcnn.training.plots", "steps": "jaxcnn.training.steps", "train": "jaxcnn.training.loop",
    "kernels": "jaxcnn.lecture.kernels", "toeplitz": "jaxcnn.lecture.toeplitz", "views": "jaxcnn.lecture.views",
}
for _old, _new in _MOVED.items():
    _module = _importlib.import_module(_new)
    _sys.modules.setdefault(f"{__name__}.{_old}", _module)
    if _old not in globals():  # ``jaxcnn.conv``, ``jaxcnn.dense``, ``jaxcnn.summary`` stay the functions
        globals()[_old] = _module
del _old, _new, _module

__version__ = "0.1.0"
