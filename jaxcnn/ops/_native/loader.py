"""Builds, loads and registers the oneDNN convolution extension (``onednn_conv.cc``) once per process.

Dependency: the PyPI wheels ``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp`` 2023.2.0
(oneDNN 3.2, x86-64 Linux): a CPU-only build on GNU OpenMP, whose library needs nothing but
libgomp and libstdc++. The newer ``onednn`` 2026.1 wheel is built for SYCL and pulls in the
DPC++ and OpenCL runtimes (with TBB and Intel's math libraries) for a CPU-only use.

Build: on first use, the machine's ``g++`` (or ``$CXX``) compiles ``onednn_conv.cc``
against those headers and JAX's FFI headers (``jax.ffi.include_dir()``) into
``$XDG_CACHE_HOME/jaxcnn`` (default ``~/.cache/jaxcnn``), named by a hash of the source, the
compiler, JAX's version and oneDNN's paths, so an upgrade rebuilds and every later process loads
it. ``jaxcnn native`` builds it ahead of use (an image build, a machine about to go offline) and
says where it is or why it cannot be. Not at install time: an editable install would need oneDNN's
headers and JAX inside pip's isolated build environment, and a failed build must never fail
``pip install``. Here anything
missing (no compiler, no oneDNN, not x86-64 Linux, an unwritable cache) only makes
:func:`native` return no library and a one-line reason (``jaxcnn.ops.onednn.available``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform as platform_lib
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from typing import NamedTuple, Optional, Tuple

import jax

SOURCE = pathlib.Path(__file__).parent / "onednn_conv.cc"
RUNTIME_PACKAGE = "onednn-cpu-gomp"
HEADERS_PACKAGE = "onednn-devel-cpu-gomp"
TARGETS = {
    "forward": "jaxcnn_onednn_conv_forward",
    "backward_data": "jaxcnn_onednn_conv_backward_data",
    "backward_weights": "jaxcnn_onednn_conv_backward_weights",
}
BUILD_TIMEOUT_S = 600


class Unavailable(Exception):
    """Why the native part cannot be used (one line)."""


class Native(NamedTuple):
    """The loaded extension, or ``None`` and a one-line ``reason``; ``path``: the shared library loaded."""

    library: Optional[ctypes.CDLL]
    reason: str
    path: Optional[str] = None


def onednn_paths() -> Tuple[pathlib.Path, pathlib.Path]:
    """``(lib dir, include dir)`` of the installed oneDNN wheels, found through their file records."""
    try:
        runtime = metadata.distribution(RUNTIME_PACKAGE)
        headers = metadata.distribution(HEADERS_PACKAGE)
    except metadata.PackageNotFoundError as error:
        raise Unavailable(f"oneDNN is not installed (pip package {error.name or error} missing)") from None
    libraries = [runtime.locate_file(f) for f in runtime.files or () if f.name == "libdnnl.so.3"]
    includes = [headers.locate_file(f) for f in headers.files or () if str(f).endswith("oneapi/dnnl/dnnl.hpp")]
    library = next((pathlib.Path(p) for p in libraries if pathlib.Path(p).is_file()), None)
    include = next((pathlib.Path(p) for p in includes if pathlib.Path(p).is_file()), None)
    if library is None or include is None:
        raise Unavailable(f"oneDNN's files are missing from the {RUNTIME_PACKAGE}/{HEADERS_PACKAGE} install")
    return library.resolve().parent, include.resolve().parents[2]


def compiler_path() -> str:
    """``$CXX`` (default ``g++``) on the ``PATH``."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"no C++ compiler to build the oneDNN extension ({name!r} not found)")
    return path


def cache_dir() -> pathlib.Path:
    """Where the compiled extension is kept: ``$XDG_CACHE_HOME/jaxcnn`` (default ``~/.cache/jaxcnn``)."""
    root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(root) / "jaxcnn"


def build(compiler: str, lib_dir: pathlib.Path, include_dir: pathlib.Path) -> pathlib.Path:
    """Compiles the extension into :func:`cache_dir` unless an identical build is there."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), jax.__version__.encode(),
                                     str(lib_dir).encode(), str(include_dir).encode()])).hexdigest()[:16]
    target = cache_dir() / f"onednn_conv-{key}.so"
    if target.is_file():
        return target
    try:
        return compile_extension(compiler, lib_dir, include_dir, target)
    except OSError as error:  # an unwritable cache, a compiler that cannot start
        raise Unavailable(f"building the oneDNN extension failed: {error}") from None


def compile_extension(compiler: str, lib_dir: pathlib.Path, include_dir: pathlib.Path,
                      target: pathlib.Path) -> pathlib.Path:
    """Runs the compiler into a scratch directory beside ``target``, then moves the result into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = pathlib.Path(scratch) / target.name
        command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
                   "-isystem", str(include_dir), "-isystem", jax.ffi.include_dir(), str(SOURCE),
                   "-o", str(built), f"-L{lib_dir}", "-l:libdnnl.so.3", "-fopenmp", f"-Wl,-rpath,{lib_dir}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise Unavailable(f"building the oneDNN extension failed: {error}") from None
        if result.returncode:
            lines = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
            raise Unavailable(f"building the oneDNN extension failed: {lines[0] if lines else result.returncode}")
        os.replace(built, target)  # atomic: a concurrent process sees no half-written file
    return target


@functools.lru_cache(maxsize=None)
def native() -> Native:
    """Builds (first use), loads and registers the extension once per process."""
    try:
        if sys.platform != "linux" or platform_lib.machine() not in ("x86_64", "AMD64"):
            raise Unavailable(f"oneDNN wheels are x86-64 Linux only, this is {sys.platform}/{platform_lib.machine()}")
        if not hasattr(jax, "ffi") or not hasattr(jax.ffi, "include_dir"):
            raise Unavailable(f"jax {jax.__version__} has no jax.ffi.include_dir (JAX's FFI headers)")
        lib_dir, include_dir = onednn_paths()
        path = build(compiler_path(), lib_dir, include_dir)
        try:
            library = ctypes.CDLL(str(path))
        except OSError as error:
            raise Unavailable(f"loading the oneDNN extension failed: {error}") from None
    except Unavailable as error:
        return Native(None, str(error))
    register(library)
    return Native(library, "", str(path))


@functools.lru_cache(maxsize=None)
def register(library: ctypes.CDLL) -> None:
    """Registers the three handlers as XLA FFI targets for the CPU."""
    for target in TARGETS.values():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, target)), platform="cpu")
