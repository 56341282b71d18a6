"""Keep the memory XLA:CPU frees, so that the next call does not fault it back in page by page.

Why (measured; docs/performance.md, "Freed memory is kept"): every call of a compiled program
on the CPU allocates its temporaries as one buffer (106 MB for a classic-net
train step at batch 128) with ``posix_memalign`` and frees it at the end. glibc
serves a request that large with a fresh ``mmap`` (a per-thread arena cannot
hold more than 64 MB, and the main arena's ``mmap`` threshold is at most 32 MB),
and gives it back with ``munmap`` on free. The next call gets fresh pages again,
and the kernel zero-fills every 4 KiB page on first touch: a classic-net step
made about 48,800 minor page faults, and a ResNet-20 step about 85,000. A
whole-epoch ``lax.scan`` allocates once per epoch, so only the per-call path
(a user's own ``jax.jit`` step, evaluation, the benchmark) pays this every call.

:func:`keep_freed_memory` sets three ``mallopt`` parameters of glibc:

- ``M_ARENA_MAX = 1``: every thread allocates from the main arena, which grows
  with ``brk`` and so can hold a buffer of any size;
- ``M_MMAP_MAX = 0``: no allocation is served by a private ``mmap``;
- ``M_TRIM_THRESHOLD = 2**31 - 1``: freed memory at the top of the heap is kept
  (up to 2 GiB of it) instead of being returned to the kernel.

The process then keeps its peak heap for reuse: the price is resident memory
that does not shrink after a large computation, which is what a training
process wants. Importing jaxcnn does not call it: the ``jaxcnn`` command does, at its
start, and a user's script asks for it with :func:`jaxcnn.training.configure_process`,
before jax starts its threads (an arena is bound to a thread at its first allocation,
so it must run before the first computation to take full effect). Set the environment variable
``JAXCNN_KEEP_FREED_MEMORY=0`` to leave the allocator alone. On anything but
glibc (macOS, musl) it does nothing. The same settings can be given to any
process without jaxcnn through glibc's tunables:
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.

Imports only the standard library: it runs before jax is imported.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "JAXCNN_KEEP_FREED_MEMORY"
# mallopt parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))

applied = False  # whether keep_freed_memory() changed the allocator in this process


def _glibc():
    """The process's C library if it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 — only glibc has it
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Applies :data:`SETTINGS` with glibc's ``mallopt``; returns whether it did.

    It does nothing (and returns False) when ``JAXCNN_KEEP_FREED_MEMORY=0``, or the
    C library is not glibc, or glibc refused a setting.
    """
    global applied
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in SETTINGS)
    applied = applied or ok
    return ok
