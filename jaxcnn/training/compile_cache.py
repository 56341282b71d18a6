"""The persistent compilation cache for training runs: a second run of the same program skips XLA.

``jaxcnn train`` (and :func:`jaxcnn.train_and_evaluate`, through
:func:`jaxcnn.training.loop.prepare`) switches on JAX's persistent compilation
cache before it compiles: the epoch program and the evaluation are written to
the cache directory, and a later run with the same model, batch, data shapes,
optimizer, jax version and machine loads them instead of compiling (measured in
docs/performance.md, "The persistent compilation cache").

The directory is, in this order: the one already configured in jax
(``jax.config.jax_compilation_cache_dir`` or ``JAX_COMPILATION_CACHE_DIR``: the
user's choice is kept); ``$JAXCNN_COMPILATION_CACHE``; ``$XDG_CACHE_HOME/jaxcnn/xla``;
``~/.cache/jaxcnn/xla``. ``JAXCNN_COMPILATION_CACHE=0`` (or ``off``) leaves the cache
off. JAX only caches programs that took at least
``jax_persistent_cache_min_compile_time_secs`` (default 1 s) to compile. JAX's own warning
applies: the cache is trusted code, so never point it at a directory others may write to.
"""

from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "JAXCNN_COMPILATION_CACHE"
OFF = ("0", "off", "false", "no")


def default_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/jaxcnn/xla``, or ``~/.cache/jaxcnn/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxcnn" / "xla"


def enable() -> str | None:
    """Switches the persistent compilation cache on (see the module docstring); returns its directory,
    or None where it stays off (``JAXCNN_COMPILATION_CACHE=0``, or the directory cannot be created)."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    choice = os.environ.get(ENV, "").strip()
    if choice.lower() in OFF:
        return None
    path = pathlib.Path(choice).expanduser() if choice else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a cache is an optimisation: an unwritable home must not stop training
    jax.config.update("jax_compilation_cache_dir", str(path))
    # jax decides once per process whether a cache is in use; forget a decision taken before the
    # directory was set (an earlier compilation in this process), so the next compilation sees it.
    compilation_cache.reset_cache()
    return str(path)
