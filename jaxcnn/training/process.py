"""Process-wide settings for a training process: the Ctrl-C handler and the memory allocator.

Importing jaxcnn changes nothing in the process. A training process may want two
process-wide changes, which the ``jaxcnn`` command makes at its start and a user's
own script asks for with one call, :func:`configure_process`:

- the Ctrl-C handler of :mod:`jaxcnn.training.interrupt`: SIGINT prints one line
  and ends the process with status 130 at once, except inside a checkpoint or
  metrics write, which finishes first (never a traceback out of a running XLA call);
- glibc's allocator keeps the memory XLA:CPU frees (:mod:`jaxcnn.training.allocator`),
  so a repeated jitted call does not fault fresh pages in; resident memory then
  does not shrink after a large computation.

Imports only the standard library: it runs before jax is imported.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxcnn.training import allocator as allocator_lib
from jaxcnn.training import interrupt as interrupt_lib


class ProcessSettings(NamedTuple):
    """What :func:`configure_process` changed: ``interrupt`` (the SIGINT handler is installed) and
    ``allocator`` (glibc's ``mallopt`` settings were applied)."""

    interrupt: bool
    allocator: bool


def configure_process(*, interrupt: bool = True, allocator: bool = True) -> ProcessSettings:
    """Gives the calling process the ``jaxcnn`` command's Ctrl-C handling and allocator setting.

    Call it first in a training script, before ``import jax``: glibc binds an
    allocator arena to a thread at its first allocation, so the allocator setting
    takes full effect only before jax starts its threads, and Ctrl-C during the
    imports is then handled too. Process-wide and not undone; call it from the
    main thread.

    Args:
      interrupt: install the SIGINT handler: Ctrl-C prints ``jaxcnn: interrupted``
        on stderr and exits with status 130 (``os._exit``, no unwinding through
        jax); a checkpoint or metrics write in progress is finished first.
      allocator: set glibc's ``M_ARENA_MAX=1``, ``M_MMAP_MAX=0`` and
        ``M_TRIM_THRESHOLD=2**31-1`` with ``mallopt``: freed memory is kept for
        the next call. Nothing happens on a C library other than glibc, or when
        the environment variable ``JAXCNN_KEEP_FREED_MEMORY=0`` is set.

    Returns:
      A :class:`ProcessSettings` saying what was changed.
    """
    installed = interrupt_lib.install(hard_exit=True) is not None if interrupt else False
    kept = allocator_lib.keep_freed_memory() if allocator else False
    return ProcessSettings(interrupt=installed, allocator=kept)


def configure_command() -> bool:
    """In the ``jaxcnn`` command only (``python -m jaxcnn`` or the ``jaxcnn`` script): installs the
    handler (its line says to run the same command again until ``cli.main`` sets a better one) and
    applies the allocator setting, before jax is imported. Elsewhere it does nothing.

    Returns:
      Whether this process is the command (and was configured, now or by an earlier call).
    """
    if interrupt_lib.install_if_command():
        allocator_lib.keep_freed_memory()
    return interrupt_lib.is_command()

