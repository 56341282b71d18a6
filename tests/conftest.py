"""Shared test set-up: hypothesis profiles and float64 on demand.

Every property test draws its examples under a profile chosen by ``JAXCNN_HYPOTHESIS``:

- ``ci`` (the default): the example counts written in the tests (``examples(n)``) and
  ``CI_EXAMPLES`` for properties without their own count; sized so the whole suite stays
  within its ten-minute budget on two cores;
- ``thorough``: ``THOROUGH_FACTOR`` times as many examples, with hypothesis's own
  randomisation instead of the fixed derandomised sequence (run before resolving a change).
"""

import atexit
import os
import shutil
import tempfile

# Training runs switch on the persistent compilation cache (jaxcnn.training.compile_cache): keep the
# suite's programs in one directory of its own (shared with the CLI subprocesses), not in ~/.cache,
# and remove it when the session ends.
if "JAXCNN_COMPILATION_CACHE" not in os.environ:
    os.environ["JAXCNN_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxcnn-test-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAXCNN_COMPILATION_CACHE"], ignore_errors=True)

from hypothesis_profiles import CI_EXAMPLES, PROFILE, THOROUGH_FACTOR  # noqa: E402

# Most of the suite's time is XLA compiling small programs, each run a few times. In the default
# profile XLA's CPU backend compiles at optimisation level 0 (LLVM without its optimisation passes):
# the same programs and the same IEEE arithmetic (XLA:CPU does not enable fast math), compiled in
# about half the time and run slower. It reaches the CLI's subprocesses through the environment.
# The thorough profile, and a run with an optimisation level of its own in XLA_FLAGS, compile as
# users do. docs/testing.md gives the measurements.
SUITE_XLA_FLAG = "--xla_backend_optimization_level=0"
if PROFILE != "thorough" and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAG}".strip()

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, derandomize=True,
                          suppress_health_check=_QUIET)
settings.register_profile("thorough", max_examples=CI_EXAMPLES * THOROUGH_FACTOR, deadline=None,
                          suppress_health_check=_QUIET)
settings.load_profile(PROFILE)

# Equivalence tests compare float32 gradients; pin matmul precision so that
# accelerators (TF32 by default on GPU) compute what the CPU does.
jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled (float64 equivalence at 1e-10)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=jax.devices(), ids=lambda d: f"{d.platform}{d.id}")
def device(request):
    """Every device JAX offers: CPU in CI, GPU/TPU where present."""
    return request.param


def pytest_addoption(parser):
    parser.addoption("--benchmarks", action="store_true",
                     help="also run the performance scripts' smoke runs (tests marked benchmark)")


def pytest_collection_modifyitems(config, items):
    """``thorough`` tests run in the thorough profile only; ``benchmark`` tests (the performance scripts' smoke
    runs) with ``--benchmarks`` or in the thorough profile."""
    thorough = PROFILE == "thorough"
    benchmarks = thorough or config.getoption("--benchmarks")
    for item in items:
        if "thorough" in item.keywords and not thorough:
            item.add_marker(pytest.mark.skip(reason="thorough profile only: JAXCNN_HYPOTHESIS=thorough"))
        if "benchmark" in item.keywords and not benchmarks:
            item.add_marker(pytest.mark.skip(reason="a performance script's smoke run: add --benchmarks"))
