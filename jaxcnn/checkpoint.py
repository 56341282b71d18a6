"""What a training run keeps in its work directory, and how it is read back.

``WORKDIR`` holds:

- ``config.json``: the run's :class:`jaxcnn.train.TrainConfig`, as a JSON object;
- ``checkpoints/<epoch>/``: orbax checkpoints of the training state (the
  ``MAX_TO_KEEP`` most recent epochs), a pytree
  ``{"params", "opt_state", "epoch", "key"}`` with ``key`` the raw data of the
  run's seed key (``jax.random.key_data``);
- ``metrics.jsonl``: one JSON object per finished epoch, in epoch order.

A run killed at any instant (SIGKILL, out of memory) leaves nothing that loads wrong:

- a checkpoint is committed by a rename: orbax writes epoch ``e`` into
  ``checkpoints/e.orbax-checkpoint-tmp`` and renames it to ``checkpoints/e``
  once every file is written, and ``latest_epoch``/``restore`` see committed
  epochs only. Old epochs are pruned by renaming them back to a temporary name
  before deleting them, so a half-deleted epoch is never taken for a
  checkpoint; ``save`` sweeps such leftovers away;
- ``config.json`` (and ``metrics.jsonl`` when truncated) is replaced whole:
  written to a temporary file, then ``os.replace``;
- ``metrics.jsonl`` grows by one ``O_APPEND`` write per epoch and a record is
  committed by its newline: a torn last line is ignored by ``read_metrics``
  and cut off by the next ``append_metrics`` or ``truncate_metrics``.

For tests only, ``JAXCNN_TEST_KILL_IN_SAVE=EPOCH`` makes ``save`` kill its own
process (SIGKILL) while saving epoch ``EPOCH``: after orbax has written every
file, just before the commit rename.

orbax is imported on first use (it is slow to import and only training needs it).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal

import jax

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
MAX_TO_KEEP = 2
UNCOMMITTED_MARK = ".orbax-checkpoint-tmp"  # orbax's marker of a step directory not yet committed
KILL_IN_SAVE_ENV = "JAXCNN_TEST_KILL_IN_SAVE"


# ------------------------------------------------------------ the work dir


def check_workdir(workdir) -> pathlib.Path:
    """Checks that ``workdir`` is, or can be created as, a writable directory; creates nothing.

    Raises:
      ValueError: ``workdir`` is a file, lies under a file, or its nearest
        existing ancestor is not writable.
    """
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"workdir {path} is a file; it must be a directory (or not exist yet)")
    existing = next(parent for parent in (path.absolute(), *path.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"workdir {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"workdir {path} is not writable: no write permission on {existing}")
    return path


def _write_atomically(path: pathlib.Path, text: str) -> None:
    """Replaces ``path`` by ``text`` whole: a kill leaves the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from error


def save_config(workdir, config: dict) -> None:
    """Writes ``config`` (a JSON-serialisable dict) to ``WORKDIR/config.json``, creating ``WORKDIR``.

    Raises:
      ValueError: ``WORKDIR`` cannot be created or written (see :func:`check_workdir`).
    """
    path = check_workdir(workdir) / CONFIG_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"workdir {path.parent} cannot be created: {error.strerror or error}") from error
    _write_atomically(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_config(workdir) -> dict:
    """Reads ``WORKDIR/config.json``.

    Raises:
      ValueError: the file is missing or is not a JSON object.
    """
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{path} does not exist: {workdir} holds no training run")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


# ------------------------------------------------------------------- metrics


def _parse_record(line: str, path: pathlib.Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} line {number} is not valid JSON ({error})") from error
    epoch = record.get("epoch") if isinstance(record, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ValueError(f'{path} line {number} must be a JSON object with an int "epoch", got {line[:80]!r}')
    return record


def read_metrics(workdir) -> list:
    """The per-epoch records of ``WORKDIR/metrics.jsonl`` (``[]`` if there is none).

    A record counts once its newline is written: text after the last newline
    (the torn write of a killed run) is ignored.

    Raises:
      ValueError: a complete line is not a JSON object with an int ``"epoch"``.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    *lines, _torn = path.read_text(encoding="utf-8", errors="replace").split("\n")
    return [_parse_record(line, path, number) for number, line in enumerate(lines, 1) if line.strip()]


def _cut_torn_line(path: pathlib.Path) -> None:
    """Cuts ``path`` back to its last newline (drops a torn last line), if it exists."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)


def append_metrics(workdir, record: dict) -> None:
    """Appends one epoch's ``record`` as one JSON line to ``WORKDIR/metrics.jsonl``.

    One ``O_APPEND`` write: a kill leaves the line whole or torn (see :func:`read_metrics`).
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    _cut_torn_line(path)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while line:
            line = line[os.write(descriptor, line):]
    finally:
        os.close(descriptor)


def truncate_metrics(workdir, last_epoch: int) -> list:
    """Keeps only the records with ``epoch <= last_epoch`` (those a checkpoint covers).

    A run writes an epoch's metrics before its checkpoint, so after a crash the
    file may hold one epoch that resuming will train again (and a torn line);
    dropping them here keeps the sequence free of duplicates. The file is
    replaced whole (a kill leaves the old file or the new one).

    Returns:
      The records kept.
    """
    records = [r for r in read_metrics(workdir) if r["epoch"] <= last_epoch]
    path = pathlib.Path(workdir) / METRICS_FILE
    _write_atomically(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records


# --------------------------------------------------------------- checkpoints


def _directory(workdir) -> pathlib.Path:
    return (pathlib.Path(workdir) / CHECKPOINT_DIR).absolute()


def _manager(workdir, create: bool, temporary_path_class=None):
    """An orbax manager that keeps every step (``save`` prunes them itself, see :func:`_prune`)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=create, enable_async_checkpointing=False,
        temporary_path_class=temporary_path_class,
    )
    return ocp.CheckpointManager(_directory(workdir), options=options)


def committed_epochs(workdir) -> list:
    """The epochs with a committed checkpoint in ``WORKDIR``, ascending (``[]`` if none)."""
    if not _directory(workdir).is_dir():
        return []
    with _manager(workdir, create=False) as manager:
        return sorted(int(step) for step in manager.all_steps())


def latest_epoch(workdir) -> int | None:
    """The epoch of the newest committed checkpoint in ``WORKDIR``, or ``None`` if there is none."""
    committed = committed_epochs(workdir)
    return committed[-1] if committed else None


def _sweep_uncommitted(directory: pathlib.Path) -> None:
    """Deletes what killed saves and prunes left behind (names with orbax's uncommitted marker)."""
    if directory.is_dir():
        for path in directory.iterdir():
            if UNCOMMITTED_MARK in path.name and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def _prune(directory: pathlib.Path, keep: int) -> None:
    """Deletes all but the ``keep`` newest committed epochs: each is first renamed to an
    uncommitted name (atomic), so a kill mid-delete never leaves a partial ``checkpoints/<epoch>``."""
    committed = sorted(int(path.name) for path in directory.iterdir()
                       if path.name.isdigit() and str(int(path.name)) == path.name and path.is_dir())
    for epoch in committed[:-keep]:
        doomed = directory / f"{epoch}{UNCOMMITTED_MARK}-pruned"
        os.rename(directory / str(epoch), doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _killed_before_commit(epoch: int):
    """orbax's default temporary path (``None``), or under ``JAXCNN_TEST_KILL_IN_SAVE=epoch``
    one whose commit of the step directory SIGKILLs the process instead."""
    if os.environ.get(KILL_IN_SAVE_ENV) != str(epoch):
        return None
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    class KilledBeforeCommit(ocp.path.atomicity.AtomicRenameTemporaryPath):
        async def finalize(self, *args, **kwargs):
            if self.get_final().name == str(epoch):  # the step directory, not an item inside it
                os.kill(os.getpid(), signal.SIGKILL)
            return await super().finalize(*args, **kwargs)

    return KilledBeforeCommit


def save(workdir, state: dict) -> None:
    """Checkpoints ``state`` (``{"params", "opt_state", "epoch", "key"}``) as step ``epoch``,
    then deletes all but the ``MAX_TO_KEEP`` newest checkpoints.

    Synchronous: when it returns the checkpoint is committed on disk (the next
    epoch may donate, i.e. overwrite, the buffers being saved).
    """
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    epoch, primary = int(state["epoch"]), jax.process_index() == 0  # one process tidies a shared directory
    if primary:
        _sweep_uncommitted(_directory(workdir))
    with _manager(workdir, create=True, temporary_path_class=_killed_before_commit(epoch)) as manager:
        manager.save(epoch, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
    if primary:
        _prune(_directory(workdir), MAX_TO_KEEP)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def restore(workdir, like: dict | None, epoch: int | None = None) -> dict:
    """Restores the checkpoint of ``epoch`` (default: the newest committed one).

    Args:
      workdir: the run's directory.
      like: a state with the same pytree structure, shapes and dtypes (e.g. a
        freshly initialised one); only its structure is used. ``None``: the
        structure as saved (lists of dicts of ``jax.Array``, for inspection).
      epoch: which checkpoint.

    Raises:
      ValueError: ``WORKDIR`` holds no checkpoint of ``epoch``, or the checkpoint
        does not fit ``like`` (written by another model or optimizer).
    """
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    committed = committed_epochs(workdir)
    if not committed:
        raise ValueError(f"no checkpoint in {pathlib.Path(workdir) / CHECKPOINT_DIR}")
    epoch = committed[-1] if epoch is None else epoch
    if epoch not in committed:
        raise ValueError(f"epoch must be one with a checkpoint in {pathlib.Path(workdir) / CHECKPOINT_DIR}, "
                         f"one of {committed}; got {epoch!r}")
    abstract = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        with _manager(workdir, create=False) as manager:
            return manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many kinds
        raise ValueError(
            f"checkpoint {epoch} in {pathlib.Path(workdir) / CHECKPOINT_DIR} does not fit this run's state "
            f"(it was written for another model, optimizer or data shape, or is damaged): {_first_line(error)}"
        ) from error
