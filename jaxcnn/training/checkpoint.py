"""What a training run keeps in its work directory, and how it is read back.

``WORKDIR`` holds:

- ``config.json``: the run's :class:`jaxcnn.training.loop.TrainConfig`, as a JSON object;
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

Ctrl-C (in the ``jaxcnn`` command) never cuts a write: ``save``, ``append_metrics`` and the
atomic replacements are ``interrupt.deferring`` sections, and the command exits when they end.

orbax is imported on first use (it is slow to import and only training needs it).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket

try:
    import fcntl
except ImportError:  # not POSIX: work directories are not locked
    fcntl = None

import jax

from jaxcnn.training import interrupt

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
MAX_TO_KEEP = 2
UNCOMMITTED_MARK = ".orbax-checkpoint-tmp"  # orbax's marker of a step directory not yet committed
LOCK_FILE = ".lock"


# ------------------------------------------------------------ the work dir


def check_workdir(workdir) -> pathlib.Path:
    """Checks that ``workdir`` is, or can be created as, a writable directory; creates nothing.

    Raises:
      ValueError: ``workdir`` is empty, is a file, lies under a file, or its
        nearest existing ancestor is not writable.
    """
    if isinstance(workdir, str) and not workdir.strip():
        raise ValueError(f"workdir must be a directory path, got {workdir!r} (write '.' for the current directory)")
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"workdir {path} is a file; it must be a directory (or not exist yet)")
    existing = next(parent for parent in (path.absolute(), *path.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"workdir {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"workdir {path} is not writable: no write permission on {existing}")
    return path


def fsync_path(path) -> None:
    """Flushes the file or directory ``path`` to disk (``os.fsync`` of a read-only descriptor)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root) -> None:
    """Flushes every file and directory under ``root`` (``root`` included) to disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(directory, name))
        fsync_path(directory)


class WorkdirLock:
    """A work directory held by one run: an exclusive ``fcntl.flock`` on ``WORKDIR/.lock``.

    Made by :func:`lock_workdir` or :func:`lock_new_workdir`; a context manager.
    The operating system drops the lock when the process ends, however it ends.
    """

    def __init__(self, path: pathlib.Path, descriptor, created):
        self.path, self._descriptor, self._created = path, descriptor, created

    def release(self) -> None:
        """Removes ``.lock`` and drops the lock; a run that wrote nothing (it was rejected) also
        removes the directories that :func:`lock_workdir` created, so it leaves nothing behind.

        A run that opened ``.lock`` just before it was removed locks a file that is gone;
        :func:`lock_workdir` sees that and locks the new one instead.
        """
        if self._descriptor is None:
            return
        try:
            lock_path = self.path / LOCK_FILE
            if os.fstat(self._descriptor).st_ino == os.stat(lock_path).st_ino:
                os.unlink(lock_path)
            if self._created is not None:
                for directory in (self.path.absolute(), *self.path.absolute().parents):
                    os.rmdir(directory)  # only while empty
                    if directory == self._created:
                        break
        except OSError:
            pass  # not empty (the run wrote there), or already gone: leave it
        finally:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def _holder(lock_path: pathlib.Path) -> str:
    try:
        holder = lock_path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        holder = []
    return f"process {holder[0]} on {holder[1]}" if len(holder) == 2 else "another process"


def lock_workdir(workdir) -> WorkdirLock:
    """Creates ``workdir`` if needed and locks it for one run: a second run there is refused at once.

    ``jaxcnn train`` and :func:`jaxcnn.training.loop.train_and_evaluate` hold the
    lock for the run's lifetime (in a multi-process run, process 0 holds it).

    Returns:
      The held :class:`WorkdirLock`; ``release()`` it (or use ``with``).

    Raises:
      ValueError: ``workdir`` cannot be a work directory (see :func:`check_workdir`),
        or another run holds it (naming that process).
    """
    path = check_workdir(workdir)
    missing = [parent for parent in (path.absolute(), *path.absolute().parents) if not parent.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"workdir {path} cannot be created: {error.strerror or error}") from error
    return _lock(path, missing[-1] if missing else None)


def lock_new_workdir(name) -> WorkdirLock:
    """Creates and locks a new work directory ``name``, or ``name-2``, ``name-3``, ... when that exists.

    Creating a directory is atomic, so runs started in the same second (the
    default work directory is named after the time) get one directory each.
    """
    for number in range(1, 10_000):
        path = check_workdir(name if number == 1 else f"{name}-{number}")
        missing = [parent for parent in path.absolute().parents if not parent.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as error:
            raise ValueError(f"workdir {path} cannot be created: {error.strerror or error}") from error
        return _lock(path, missing[-1] if missing else path.absolute())
    raise ValueError(f"workdir {name}: every name up to {name}-9999 is taken")


def _lock(path: pathlib.Path, created) -> WorkdirLock:
    lock_path = path / LOCK_FILE
    for _ in range(100):
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a rejected run removed the directory it had created: make it again
            path.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as error:
            raise ValueError(f"cannot lock workdir {path}: {error.strerror or error}") from error
        if fcntl is None:  # no locking here: the file only marks the run
            break
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            raise ValueError(f"workdir {path} is in use by another run ({_holder(lock_path)} holds "
                             f"{lock_path}); wait until it ends, or choose another --workdir") from error
        try:  # a rejected run may have removed the file between our open and our lock: lock the new one
            if os.fstat(descriptor).st_ino == os.stat(lock_path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    else:
        raise ValueError(f"cannot lock workdir {path}: its lock file keeps disappearing")
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return WorkdirLock(path, descriptor, created)


@interrupt.deferring  # Ctrl-C waits until the file is replaced
def _write_atomically(path: pathlib.Path, text: str) -> None:
    """Replaces ``path`` by ``text`` whole: a kill leaves the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())  # the content is on disk before the rename makes it the file
        os.replace(temporary, path)
        fsync_path(path.parent)  # and the rename itself
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from error


def save_config(workdir, config: dict) -> None:
    """Writes ``config`` (a JSON-serialisable dict) to ``WORKDIR/config.json``, creating ``WORKDIR``.

    Raises:
      ValueError: ``WORKDIR`` cannot be created or written (see :func:`check_workdir`).
    """
    path = check_workdir(workdir) / CONFIG_FILE
    created = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if created:
            fsync_path(path.parent.absolute().parent)  # the new directory's entry
    except OSError as error:
        raise ValueError(f"workdir {path.parent} cannot be created: {error.strerror or error}") from error
    _write_atomically(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_config(workdir) -> dict:
    """Reads ``WORKDIR/config.json``.

    Raises:
      ValueError: ``workdir`` is empty, or the file is missing or is not a JSON object.
    """
    if isinstance(workdir, str) and not workdir.strip():
        raise ValueError(f"workdir must be a directory path, got {workdir!r} (write '.' for the current directory)")
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


@interrupt.deferring  # Ctrl-C waits until the line is written
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
        os.fsync(descriptor)  # the record counts once it is on disk
    finally:
        os.close(descriptor)
    fsync_path(path.parent)  # the file's entry, when this append created it


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


@interrupt.deferring  # Ctrl-C waits until the checkpoint is committed
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
    with _manager(workdir, create=True, temporary_path_class=_durable_commit()) as manager:
        manager.save(epoch, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
    if primary:
        _prune(_directory(workdir), MAX_TO_KEEP)


def _durable_commit():
    """orbax's commit by rename (``AtomicRenameTemporaryPath``), made durable: every file and
    directory of the step is flushed to disk before the rename, and after it the files orbax
    writes last (its commit marker and metadata), the step and ``checkpoints/`` itself."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    class DurableCommit(ocp.path.atomicity.AtomicRenameTemporaryPath):
        async def finalize(self, *args, **kwargs):
            final = pathlib.Path(self.get_final())
            step = final.parent.name == CHECKPOINT_DIR  # the step directory, not an item inside it
            if step:
                _fsync_tree(pathlib.Path(self.get()))
            result = await super().finalize(*args, **kwargs)
            if step:
                for entry in os.scandir(final):
                    if entry.is_file():
                        fsync_path(entry.path)
                fsync_path(final)
                fsync_path(final.parent)
            return result

    return DurableCommit


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

    The checkpoint is first read whole, synchronously (:func:`_inspect`), and
    compared with ``like``, so a damaged or mismatched checkpoint is reported
    before orbax's concurrent reads start (whose failure would leave reads
    pending on a closed event loop, each printing a ``RuntimeError``).

    Raises:
      ValueError: ``WORKDIR`` holds no checkpoint of ``epoch``; the checkpoint is
        damaged (one line naming the part, and which earlier checkpoint is intact
        and how to fall back to it); or it does not fit ``like`` (written by
        another model, optimizer or data shape).
    """
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    committed = committed_epochs(workdir)
    if not committed:
        raise ValueError(f"no checkpoint in {pathlib.Path(workdir) / CHECKPOINT_DIR}")
    epoch = committed[-1] if epoch is None else epoch
    if epoch not in committed:
        raise ValueError(f"epoch must be one with a checkpoint in {pathlib.Path(workdir) / CHECKPOINT_DIR}, "
                         f"one of {committed}; got {epoch!r}")
    shapes = _check_intact(workdir, epoch, committed)
    if like is not None and shapes is not None:
        _check_fits(workdir, epoch, shapes, like)
    abstract = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        with _manager(workdir, create=False) as manager:
            return manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many kinds
        raise ValueError(
            f"checkpoint {epoch} in {pathlib.Path(workdir) / CHECKPOINT_DIR} does not fit this run's state "
            f"(it was written for another model, optimizer or data shape, or is damaged): {_first_line(error)}"
        ) from error


def _status(error: Exception, limit: int = 60) -> str:
    """A short reason: tensorstore's status code (``DATA_LOSS``, ``NOT_FOUND``, ...) or the error's first words."""
    line = _first_line(error)
    code = line.split(":", 1)[0]
    if code.replace("_", "").isalpha() and code.isupper():
        return code
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _inspect(step: pathlib.Path):
    """Reads the checkpoint in the step directory ``step`` whole, with tensorstore's synchronous API.

    Returns:
      ``(shapes, problem)``: ``{"params.0.w": shape, ...}`` of every array (``None`` if
      the checkpoint is not in orbax's OCDBT layout, which orbax then checks itself),
      and ``None`` or a short description of the damaged part.
    """
    import tensorstore as ts  # pylint: disable=import-outside-toplevel

    shapes = None
    for item in sorted(path for path in step.iterdir() if path.is_dir()):
        metadata = item / "_METADATA"
        if metadata.is_file():
            try:
                json.loads(metadata.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return None, f"{item.name}/_METADATA is not valid JSON"
        if not (item / "manifest.ocdbt").is_file():
            continue
        store = {"driver": "ocdbt", "base": {"driver": "file", "path": f"{item}/"}}
        try:
            keys = ts.KvStore.open(store).result().list().result()
        except Exception as error:  # pylint: disable=broad-except  # tensorstore raises ValueError and others
            return None, f"{item.name}/manifest.ocdbt: {_status(error)}"
        shapes = {} if shapes is None else shapes
        for name in sorted({key.decode().rsplit("/", 1)[0] for key in keys if key.endswith(b"/.zarray")}):
            try:
                array = ts.open({"driver": "zarr", "kvstore": {**store, "path": f"{name}/"}}, open=True).result()
                array.read().result()
            except Exception as error:  # pylint: disable=broad-except
                return None, f"array {name}: {_status(error)}"
            shapes[name] = tuple(array.shape)
    return shapes, None


def _check_intact(workdir, epoch: int, committed: list):
    """The array shapes of checkpoint ``epoch`` (see :func:`_inspect`).

    Raises:
      ValueError: it is damaged: one line naming the part, the newest earlier
        checkpoint that is intact and how to fall back to it.
    """
    shapes, problem = _inspect(_directory(workdir) / str(epoch))
    if problem is None:
        return shapes
    intact = next((e for e in reversed(committed) if e < epoch and _inspect(_directory(workdir) / str(e))[1] is None),
                  None)
    fallback = (f"checkpoint {intact} is intact: move {epoch}/ out of {CHECKPOINT_DIR}/ to fall back to it"
                if intact is not None else "no earlier checkpoint is intact")
    raise ValueError(f"checkpoint {pathlib.Path(workdir) / CHECKPOINT_DIR / str(epoch)} is damaged ({problem}); "
                     f"{fallback}")


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _check_fits(workdir, epoch: int, shapes: dict, like) -> None:
    """Raises ``ValueError`` naming the first array whose name or shape differs between the checkpoint and ``like``."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    wanted = {".".join(_key_name(key) for key in path): tuple(np.shape(leaf))
              for path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]}
    if wanted == shapes:
        return
    differing = set(wanted) ^ set(shapes) or {n for n in wanted if wanted[n] != shapes[n]}
    name = min(differing, key=lambda n: (not n.startswith("params"), n))  # a parameter rather than its moments
    there = f"{shapes[name]}" if name in shapes else "absent"
    here = f"{wanted[name]}" if name in wanted else "absent"
    raise ValueError(f"checkpoint {epoch} in {pathlib.Path(workdir) / CHECKPOINT_DIR} does not fit this run's state "
                     f"(it was written for another model, optimizer or data shape): {name} is {there} there, "
                     f"{here} in this run")
