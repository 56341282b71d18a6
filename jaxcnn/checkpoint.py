"""What a training run keeps in its work directory, and how it is read back.

``WORKDIR`` holds:

- ``config.json``: the run's :class:`jaxcnn.train.TrainConfig`, as a JSON object;
- ``checkpoints/<epoch>/``: orbax checkpoints of the training state (the
  ``max_to_keep`` most recent epochs), a pytree
  ``{"params", "opt_state", "epoch", "key"}`` with ``key`` the raw data of the
  run's seed key (``jax.random.key_data``);
- ``metrics.jsonl``: one JSON object per finished epoch, in epoch order.

orbax is imported on first use (it is slow to import and only training needs it).
"""

from __future__ import annotations

import json
import pathlib

import jax

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
MAX_TO_KEEP = 2


def save_config(workdir, config: dict) -> None:
    """Writes ``config`` (a JSON-serialisable dict) to ``WORKDIR/config.json``."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


# ------------------------------------------------------------------- metrics


def read_metrics(workdir) -> list:
    """The per-epoch records of ``WORKDIR/metrics.jsonl`` (``[]`` if there is none)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(workdir, record: dict) -> None:
    """Appends one epoch's ``record`` as one JSON line to ``WORKDIR/metrics.jsonl``."""
    with open(pathlib.Path(workdir) / METRICS_FILE, "a", encoding="utf-8") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def truncate_metrics(workdir, last_epoch: int) -> list:
    """Keeps only the records with ``epoch <= last_epoch`` (those a checkpoint covers).

    A run writes an epoch's metrics before its checkpoint, so after a crash the
    file may hold one epoch that resuming will train again; dropping it here
    keeps the sequence free of duplicates.

    Returns:
      The records kept.
    """
    records = [r for r in read_metrics(workdir) if r["epoch"] <= last_epoch]
    path = pathlib.Path(workdir) / METRICS_FILE
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records


# --------------------------------------------------------------- checkpoints


def _manager(workdir, create: bool):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    options = ocp.CheckpointManagerOptions(
        max_to_keep=MAX_TO_KEEP, create=create, enable_async_checkpointing=False
    )
    directory = (pathlib.Path(workdir) / CHECKPOINT_DIR).absolute()
    return ocp.CheckpointManager(directory, options=options)


def latest_epoch(workdir) -> int | None:
    """The epoch of the newest checkpoint in ``WORKDIR``, or ``None`` if there is none."""
    if not (pathlib.Path(workdir) / CHECKPOINT_DIR).is_dir():
        return None
    with _manager(workdir, create=False) as manager:
        return manager.latest_step()


def save(workdir, state: dict) -> None:
    """Checkpoints ``state`` (``{"params", "opt_state", "epoch", "key"}``) as step ``epoch``.

    Synchronous: when it returns the checkpoint is on disk (the next epoch may
    donate, i.e. overwrite, the buffers being saved).
    """
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    with _manager(workdir, create=True) as manager:
        manager.save(int(state["epoch"]), args=ocp.args.StandardSave(state))
        manager.wait_until_finished()


def restore(workdir, like: dict, epoch: int | None = None) -> dict:
    """Restores the checkpoint of ``epoch`` (default: the newest).

    Args:
      workdir: the run's directory.
      like: a state with the same pytree structure, shapes and dtypes (e.g. a
        freshly initialised one); only its structure is used.
      epoch: which checkpoint.

    Raises:
      ValueError: ``WORKDIR`` holds no checkpoint.
    """
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    epoch = latest_epoch(workdir) if epoch is None else epoch
    if epoch is None:
        raise ValueError(f"no checkpoint in {pathlib.Path(workdir) / CHECKPOINT_DIR}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with _manager(workdir, create=False) as manager:
        return manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
