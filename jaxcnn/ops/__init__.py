"""The math: each op (conv, pooling, dense, activations, losses, …) beside its hand-derived backward.

Every op ``f`` is exported here with its hand rule ``f_backward``; ``padding`` is the
one place that does shape arithmetic, ``hand_rule`` (the module, whose
:func:`~jaxcnn.ops.hand_rule.hand_rule` is also ``jaxcnn.hand_rule``) the one way to
attach a hand rule. May import: nothing of jaxcnn outside ``jaxcnn.ops``.

The modules that hold many ops (activations, losses, norms, pooling) name them in their own
``__all__``, which this face takes whole: an op declared there (and listed in its module's
``__all__``) is exported here and at ``jaxcnn``'s top level with no further edit.
"""

from jaxcnn.ops import activations, losses, norms, pool
from jaxcnn.ops.activations import *  # noqa: F403  (activations.__all__)
from jaxcnn.ops.convolution import conv, conv_backward
from jaxcnn.ops.hand_rule import ForwardModeError, Op, declare
from jaxcnn.ops.linear import dense, dense_backward
from jaxcnn.ops.losses import *  # noqa: F403  (losses.__all__)
from jaxcnn.ops.norms import *  # noqa: F403  (norms.__all__)
from jaxcnn.ops.padding import conv_output_size, conv_transpose_output_size
from jaxcnn.ops.pool import *  # noqa: F403  (pool.__all__)
from jaxcnn.ops.stochastic import dropout, dropout_backward
from jaxcnn.ops.transposed_conv import conv_transpose, conv_transpose_backward

__all__ = []
__all__ += activations.__all__
__all__ += [
    # convolutions, dense, dropout
    "conv", "conv_backward", "conv_transpose", "conv_transpose_backward",
    "dense", "dense_backward", "dropout", "dropout_backward",
]
__all__ += losses.__all__
__all__ += norms.__all__
__all__ += pool.__all__
__all__ += [
    # declaring an op with its hand rule
    "declare", "Op", "ForwardModeError",
    # shape arithmetic
    "conv_output_size", "conv_transpose_output_size",
]
