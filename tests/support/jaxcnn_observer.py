"""Observes, pauses and kills a real ``python -m jaxcnn`` process at its named moments, from the test side.

A test starts the command with :func:`env`, which puts this folder on ``PYTHONPATH``; Python's
``site`` then imports its ``sitecustomize``, which calls :func:`arm` before the command starts.
With one of these variables set, :func:`arm` replaces :func:`jaxcnn.training.interrupt.phase`
(the library's marks of a run's moments, which do nothing) and, once the checkpoint module is
loaded, wraps the commit of :func:`jaxcnn.training.checkpoint.save`:

- ``JAXCNN_OBSERVE_PHASES=1``: each moment prints ``jaxcnn-test: phase NAME`` on stderr
  (``imports``, ``setup``, ``compile``, ``epoch E step S``, ``save E``, ``check-grads``, ``eval``),
  so a test can send SIGINT at a known moment; ``save E`` is reached inside epoch E's checkpoint
  write, after every file is written and before the commit rename;
- ``JAXCNN_OBSERVE_PAUSE_AT=NAME``: the moment ``NAME`` also pauses :data:`PAUSE_SECONDS`;
- ``JAXCNN_OBSERVE_KILL_IN_SAVE=E``: the process kills itself (SIGKILL) at ``save E``.

Imports only the standard library and ``jaxcnn.training.interrupt`` at arming time (no jax: the
command installs its Ctrl-C handler before jax is imported, and this must not change that).
"""

import os
import pathlib
import signal
import sys
import time

PHASES_ENV = "JAXCNN_OBSERVE_PHASES"
PAUSE_ENV = "JAXCNN_OBSERVE_PAUSE_AT"
KILL_IN_SAVE_ENV = "JAXCNN_OBSERVE_KILL_IN_SAVE"
VARIABLES = (PHASES_ENV, PAUSE_ENV, KILL_IN_SAVE_ENV)
MARK = "jaxcnn-test: phase "
PAUSE_SECONDS = 3.0
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def env(base=None, **extra) -> dict:
    """The environment for an observed ``python -m jaxcnn``: ``base`` (default ``os.environ``) without
    any observer variable, this repository and this folder put first on ``PYTHONPATH``, then ``extra``."""
    base = {key: value for key, value in (os.environ if base is None else base).items() if key not in VARIABLES}
    path = os.pathsep.join(filter(None, [str(ROOT), str(HERE), base.get("PYTHONPATH")]))
    return {**base, "PYTHONPATH": path, **extra}


def _phase(name: str) -> None:
    _wrap_checkpoint_commit()
    if os.environ.get(PHASES_ENV):
        os.write(2, f"{MARK}{name}\n".encode())
    if os.environ.get(PAUSE_ENV) == name:
        end = time.monotonic() + PAUSE_SECONDS
        while time.monotonic() < end:
            time.sleep(min(0.05, max(end - time.monotonic(), 0)))
    if os.environ.get(KILL_IN_SAVE_ENV) and name == f"save {os.environ[KILL_IN_SAVE_ENV]}":
        os.kill(os.getpid(), signal.SIGKILL)


def _wrap_checkpoint_commit() -> None:
    """Once ``jaxcnn.training.checkpoint`` is loaded: its step commit reaches the moment ``save E`` first."""
    checkpoint = sys.modules.get("jaxcnn.training.checkpoint")
    if checkpoint is None or getattr(checkpoint, "_observed", False):
        return
    durable_commit = checkpoint._durable_commit  # pylint: disable=protected-access

    def observed_commit():
        class ObservedCommit(durable_commit()):
            async def finalize(self, *args, **kwargs):
                final = pathlib.Path(self.get_final())
                if final.parent.name == checkpoint.CHECKPOINT_DIR:  # the step directory, not an item inside it
                    _phase(f"save {final.name}")
                return await super().finalize(*args, **kwargs)

        return ObservedCommit

    checkpoint._durable_commit = observed_commit  # pylint: disable=protected-access
    checkpoint._observed = True  # pylint: disable=protected-access


def arm() -> None:
    """Replaces ``interrupt.phase`` when an observer variable is set; otherwise changes nothing."""
    if not any(os.environ.get(name) for name in VARIABLES):
        return
    from jaxcnn.training import interrupt  # pylint: disable=import-outside-toplevel

    interrupt.phase = _phase
