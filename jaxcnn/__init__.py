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

#: The floors whose whole ``__all__`` is also the top level's, looked up on first use.
_FLOORS = ("jaxcnn.ops", "jaxcnn.nn")
#: The names the top level re-exports from the other floors.
_EXPORTS = {
    "jaxcnn.ops.hand_rule": ("hand_rule",),
    "jaxcnn.proof": ("loss_and_grad", "loss_grad_and_logits", "backprop", "assert_modes_agree"),
    "jaxcnn.lecture": ("conv_matrix", "convolve"),
    "jaxcnn.training": ("TrainConfig", "train_and_evaluate", "evaluate_checkpoint", "configure_process"),
}
_SUBPACKAGES = ("ops", "nn", "proof", "training", "lecture", "testing")
_SOURCE = {name: package for package, names in _EXPORTS.items() for name in names}


def _floor_names() -> list:
    """Every name of the ops and nn floors' ``__all__`` (imports them: jax, no training dependency)."""
    return [name for floor in _FLOORS for name in _importlib.import_module(floor).__all__]


def __getattr__(name):
    """Imports a subpackage, or an exported name's floor, on first use (PEP 562)."""
    if name == "__all__":
        value = [*_SUBPACKAGES, *_floor_names(), *_SOURCE]
    elif name in _SUBPACKAGES:
        value = _importlib.import_module(f"{__name__}.{name}")
    elif name in _SOURCE:
        value = getattr(_importlib.import_module(_SOURCE[name]), name)
    elif not name.startswith("_") and name in _floor_names():
        value = next(getattr(floor, name) for floor in map(_importlib.import_module, _FLOORS)
                     if name in floor.__all__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__getattr__("__all__")))
