"""Ctrl-C (SIGINT) in the ``jaxcnn`` command: one line, exit status 130, never a traceback or a crash.

The ``jaxcnn`` command installs :func:`handler` before jax is imported
(``jaxcnn/__main__.py`` and the top of ``jaxcnn/cli.py`` call
:func:`jaxcnn.training.process.configure_command`, which calls :func:`install_if_command`),
and ``cli.main`` installs it again for each call; a user's script gets the same
handler from :func:`jaxcnn.training.process.configure_process`. On SIGINT:

- outside a *deferred* section the process exits at once: stdout and stderr are
  flushed, the one line of :func:`message` goes to stderr and ``os._exit(130)``
  ends the process without unwinding. Nothing is half-written by that (files are
  only written inside deferred sections), and no interpreter shutdown runs, so no
  XLA thread (a compilation, a computation, a distributed client that is still
  connecting) can be torn down under a live C++ caller — the cause of the
  segmentation faults and C++ aborts that a ``KeyboardInterrupt`` unwinding through
  jax produced;
- inside a deferred section (:func:`deferred`, :func:`deferring`: checkpoint,
  metrics and config writes) the signal is only noted, and the process exits as
  above when the outermost section ends: the file is then whole and committed.

The signal is handled between Python bytecodes, so a long call into XLA (a
compilation, or a computation the host waits for) would delay it; the train
loop therefore waits for results with :func:`wait_ready`, which polls, and
exits within milliseconds of the signal even mid-epoch.

Where the handler is installed by ``cli.main`` called in-process (tests, a
notebook) it raises ``KeyboardInterrupt`` instead of exiting (``hard_exit=False``);
``cli.main`` turns that into the same line and returns 130.

The run's named moments (``imports``, ``setup``, ``compile``, ``epoch E step S``,
``check-grads``, ``eval``) are marked by :func:`phase`, which does nothing:
a wrapper that drives the command (the tests) replaces it to observe or pause a run.

Imports only the standard library at module level: it runs before jax is imported.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import time

INTERRUPTED = 130
COMMAND_NAMES = ("jaxcnn", "jaxcnn.exe", "jaxcnn-script.py")


class _State:  # pylint: disable=too-few-public-methods
    def __init__(self):
        self.installed = False  # our handler is SIGINT's handler
        self.hard_exit = True  # exit the process (the command) rather than raise KeyboardInterrupt
        self.command = False  # this process is the jaxcnn command (install_if_command saw it)
        self.depth = 0  # nesting of deferred sections
        self.pending = False  # a SIGINT arrived inside a deferred section
        self.message = None  # a callable returning the line to print, or None for DEFAULT_MESSAGE
        self.cleanups = []  # callables exit_now runs first (e.g. releasing the work directory's lock)


DEFAULT_MESSAGE = "jaxcnn: interrupted"
_state = _State()


def message() -> str:
    """The line printed on an interrupt (what :func:`set_message` set last)."""
    try:
        return _state.message() if _state.message is not None else DEFAULT_MESSAGE
    except Exception:  # pylint: disable=broad-except  # the exit must not fail on a bad hint
        return DEFAULT_MESSAGE


def set_message(line) -> None:
    """Sets the interrupt line: a string, or a callable evaluated when the signal arrives."""
    _state.message = line if callable(line) or line is None else (lambda: line)


def at_exit(cleanup):
    """Registers ``cleanup()`` to run in :func:`exit_now` (newest first); returns a function that unregisters it."""
    _state.cleanups.append(cleanup)

    def forget():
        if cleanup in _state.cleanups:
            _state.cleanups.remove(cleanup)

    return forget


def exit_now(line: str, status: int = INTERRUPTED) -> None:
    """Runs the :func:`at_exit` clean-ups, flushes stdout and stderr, writes ``line`` to stderr and ends
    the process with ``os._exit(status)``.

    Used where unwinding is unsafe: an interrupt, or a start-up that left a jax
    thread blocked in C++ (see ``parallel.initialize``). A terminal gets a
    newline first, so the line does not land after a progress bar or ``^C``.
    """
    for cleanup in reversed(list(_state.cleanups)):
        try:
            cleanup()
        except Exception:  # pylint: disable=broad-except  # best effort: the exit must happen
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pylint: disable=broad-except  # a closed or reentered stream
            pass
    try:
        prefix = "\n" if os.isatty(2) else ""
        os.write(2, f"{prefix}{line}\n".encode("utf-8", "replace"))
    finally:
        os._exit(status)  # pylint: disable=protected-access


def _act() -> None:
    if _state.hard_exit:
        exit_now(message())
    raise KeyboardInterrupt


def handler(signum, frame) -> None:  # pylint: disable=unused-argument
    """The SIGINT handler: exit now (:func:`exit_now`), or note the signal inside a deferred section."""
    if _state.depth:
        _state.pending = True
        return
    _act()


def install(*, hard_exit: bool = True):
    """Makes :func:`handler` SIGINT's handler (main thread only; elsewhere nothing happens).

    Args:
      hard_exit: exit the process on an interrupt (the command); ``False``:
        raise ``KeyboardInterrupt`` (``cli.main`` called in-process).

    Returns:
      The previous handler, for :func:`restore`, or ``None`` where nothing was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGINT, handler)
    _state.installed, _state.hard_exit, _state.pending = True, hard_exit, False
    return previous


def restore(previous) -> None:
    """Puts back the handler :func:`install` returned (if it installed one)."""
    if previous is None or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, previous)
    _state.installed = previous is handler


def is_command() -> bool:
    """Whether this process is the ``jaxcnn`` command (``python -m jaxcnn`` or the ``jaxcnn`` script)."""
    return _state.command


def _launched_as_command() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    main_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__main__.py")
    # python -m jaxcnn: argv[0] is "-m" while the package imports, then the path of jaxcnn/__main__.py
    if argv0 == "-m" or (argv0 and os.path.abspath(argv0) == main_file):
        original = list(getattr(sys, "orig_argv", []))
        for index, arg in enumerate(original):
            if arg == "-m":
                return original[index + 1:index + 2] == ["jaxcnn"]
            if arg.startswith("-m"):
                return arg[2:] == "jaxcnn"
        return argv0 != "-m"  # python .../jaxcnn/__main__.py
    return os.path.basename(argv0) in COMMAND_NAMES


def install_if_command() -> bool:
    """In the ``jaxcnn`` command only: installs the exiting handler (the command calls it before jax is imported).

    Until ``cli.main`` sets a better one, the line says to run the same command again.

    Returns:
      Whether it installed the handler.
    """
    if _state.command or not _launched_as_command():
        return False
    _state.command = True
    install(hard_exit=True)
    set_message(rerun_message(sys.argv[1:]))
    phase("imports")
    return True


def rerun_message(argv) -> str:
    """``jaxcnn: interrupted; continue with: jaxcnn ARGV`` (``train``) or ``…; run again with: …``."""
    import shlex  # pylint: disable=import-outside-toplevel

    command = shlex.join(["jaxcnn", *[str(arg) for arg in argv]])
    if list(argv[:1]) == ["train"]:
        return f"jaxcnn: interrupted; continue with: {command}"
    return f"jaxcnn: interrupted; nothing was written; run again with: {command}"


@contextlib.contextmanager
def deferred():
    """A section that SIGINT does not cut: an interrupt inside it acts when the outermost section ends.

    Without the handler installed (plain library use) it changes nothing.
    """
    _state.depth += 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending and _state.installed:
            _state.pending = False
            if _state.hard_exit or not failed:  # never replace an exception that is already on its way
                _act()


def deferring(function):
    """Decorator: ``function`` runs as a :func:`deferred` section."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with deferred():
            return function(*args, **kwargs)

    return wrapper


def wait_ready(tree, *, longest_sleep: float = 0.005):
    """Waits until every array of ``tree`` is computed, polling, so that an interrupt is handled at once.

    Blocking in XLA (``np.asarray`` of a result that is not ready) would hold the
    signal until the computation ends, possibly the whole epoch.

    Returns:
      ``tree``, unchanged.
    """
    import jax  # pylint: disable=import-outside-toplevel

    leaves = [leaf for leaf in jax.tree.leaves(tree) if callable(getattr(leaf, "is_ready", None))]
    pause = 0.0002
    while not all(leaf.is_ready() for leaf in leaves):
        time.sleep(pause)
        pause = min(2 * pause, longest_sleep)
    return tree


def phase(name: str) -> None:  # pylint: disable=unused-argument
    """Marks the named moment ``name`` of a run (``imports``, ``setup``, ``compile``, ``epoch E step S``,
    ``check-grads``, ``eval``). Does nothing; a wrapper that drives the command replaces
    it (``interrupt.phase = ...``) to observe the moments or pause at one."""
