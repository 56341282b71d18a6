"""Layers (quadruples of pure functions), combinators, the named models and their summaries.

May import: ``jaxcnn.ops``.

Each module names its public layers, combinators or models in its own ``__all__``, which this
face takes whole: a layer defined there (and listed in its module's ``__all__``) is exported
here and at ``jaxcnn``'s top level with no further edit.
"""

from jaxcnn.nn import combinators, layers, models, protocol, stateful, summaries
from jaxcnn.nn.combinators import *  # noqa: F403  (combinators.__all__)
from jaxcnn.nn.layers import *  # noqa: F403  (layers.__all__)
from jaxcnn.nn.models import *  # noqa: F403  (models.__all__)
from jaxcnn.nn.protocol import *  # noqa: F403  (protocol.__all__)
from jaxcnn.nn.stateful import *  # noqa: F403  (stateful.__all__)
from jaxcnn.nn.summaries import *  # noqa: F403  (summaries.__all__)

__all__ = []
__all__ += protocol.__all__  # the protocol
__all__ += layers.__all__  # a layer from an op with its hand rule, and the layers
__all__ += stateful.__all__  # layers with state or randomness
__all__ += combinators.__all__
__all__ += models.__all__  # the named models
__all__ += summaries.__all__
