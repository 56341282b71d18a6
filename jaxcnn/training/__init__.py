"""From data to checkpoints: data sets, augmentation, optimisers, compiled steps, the train loop,
checkpoints, data parallelism, plots, and the process settings of a training process.

The names below are imported on first use: ``import jaxcnn.training.interrupt`` (which the
``jaxcnn`` command does before jax is imported) must not pull in jax, optax or orbax.

May import: every other floor (``ops``, ``nn``, ``proof``); nothing imports it but the CLI and the top.
"""

import importlib as _importlib

_EXPORTS = {
    "jaxcnn.training.process": ("configure_process", "ProcessSettings"),
    "jaxcnn.training.loop": ("TrainConfig", "train_and_evaluate", "evaluate_checkpoint", "prepare", "run_epochs"),
    "jaxcnn.training.data": ("load",),
    "jaxcnn.training.optim": ("make_optimizer", "make_schedule"),
    "jaxcnn.training.steps": ("make_train_chunk", "make_evaluate"),
    "jaxcnn.training.augment": ("augment_batch",),
}
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name):
    """Imports an exported name's module on first use (PEP 562)."""
    if name in _SOURCE:
        value = getattr(_importlib.import_module(_SOURCE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
