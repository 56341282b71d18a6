"""Training and evaluation on real data: ``train_and_evaluate(config, workdir)``.

The data set lives on the device. Epoch ``e`` is keyed by
``fold_in(train_key, e)`` (shuffling and augmentation), so a resumed run repeats
exactly what an uninterrupted one does. Each epoch runs as a few calls of one
compiled epoch program (``jaxcnn.training.steps``; a tqdm bar advances per call); then
the test split is evaluated, one JSON line is appended to
``WORKDIR/metrics.jsonl`` and the state is checkpointed (``jaxcnn.training.checkpoint``).
At the end, ``jaxcnn.training.plots`` draws the curves and the first layer's filters.

The same code runs on one device, on every device of a host and on several
hosts: the batch is sharded along a ``data`` mesh (``jaxcnn.training.parallel``), and in
a multi-process run only process 0 writes the metrics, the plots and the log.
A non-finite loss stops the run (:class:`Diverged`) before anything of the bad
epoch is written, so the last good checkpoint stays the newest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.nn import models
from jaxcnn.ops import onednn
from jaxcnn.proof import gradients
from jaxcnn.training import augment as augment_lib
from jaxcnn.training import checkpoint, compile_cache, data, interrupt, parallel, plots
from jaxcnn.training.optim import DEFAULT_LR, OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule  # noqa: F401
from jaxcnn.training.steps import EvalSet, batch_for_eval, lax_conv_on_cpu, make_evaluate, make_train_chunk, plan_epoch

SUBSET_SEED = 0
INT32_MAX = 2**31 - 1  # the optimizer's step counter is an int32
SEED_BOUND = 2**32  # jax.random.key(seed) keeps the low 32 bits: seeds >= 2**32 would repeat smaller ones
DEFAULT_WEIGHT_DECAY = 0.05  # adamw's, when weight_decay is None
#: The gradient mode of a model when ``grad`` is None; every other model: ``"autodiff"``.
#: Where oneDNN's extension is unavailable, ResNet-20's hand rules (``"manual"``: XLA's convolution
#: for the forward and the input gradient of its 16-channel layers, im2col for the rest) train it
#: 1.31× faster on the CPU than ``jax.grad`` of its forward (583.3 against 766.6 ms per step,
#: BENCHMARKS.md "ResNet-20: ``resnet_levers.py``"); with it, every mode runs oneDNN's passes. The
#: classic and lecture nets' hand rules are im2col's, no faster than ``jax.grad`` (the classic train
#: path 797.2 against 854.6 img/s, BENCHMARKS.md "Conv impls and train steps"), so they keep ``"autodiff"``.
DEFAULT_GRAD = {"resnet": "manual"}


def default_grad(model: str) -> str:
    """The gradient mode a run of ``model`` takes when ``grad`` is left out (:data:`DEFAULT_GRAD`)."""
    return DEFAULT_GRAD.get(model, "autodiff")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as ``WORKDIR/config.json``).

    Attributes:
      model: a name in ``models.MODELS``; its input shape comes from the data.
      dataset: ``"mnist"`` (TFDS if available, else the bundled sample),
        ``"mnist-sample"``, ``"idx:DIR"`` or a TFDS name (see ``data.load``).
      data_dir: TFDS data directory.
      grad: gradient mode, one of ``gradients.MODES``; ``None`` = the model's
        :data:`DEFAULT_GRAD` (``"manual"`` for ``resnet``, ``"autodiff"`` otherwise).
      impl: convolution implementation, one of ``conv.IMPLS``.
      optimizer: one of :data:`OPTIMIZERS`; ``lr=None`` means its :data:`DEFAULT_LR`.
      lr: the peak learning rate.
      schedule: one of :data:`SCHEDULES`: ``constant``; ``cosine`` (linear warm-up
        over the first epoch, then cosine decay to 0); ``onecycle`` (cosine rise
        from lr/25 to lr over the first 30% of steps, then cosine decay to lr/25e4).
      weight_decay: decoupled weight decay of ``adamw``, on kernels only (not biases);
        ``None`` = :data:`DEFAULT_WEIGHT_DECAY` with ``adamw``. Other optimizers have no
        weight decay, so a value with them is an error.
      epochs, batch_size: as usual; ``epochs`` × steps per epoch must fit the int32 step counter.
      seed: in ``[0, 2**32)``; fixes init, shuffling and augmentation.
      augment: one of ``augment.AUGMENTS``, applied to every training batch.
      train_limit, test_limit: train/test on a fixed random subset of this many
        examples (the same subset for every seed); ``None`` = all.
      eval_batch_size: examples per evaluation batch.
      steps_per_call: the most batches one compiled call runs; ``None`` = the
        whole epoch in one ``lax.scan`` (or chunks of ``steps.UNROLLED_CHUNK``
        where ``steps.plan_epoch`` unrolls).
    """

    model: str = "classic"
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    grad: Optional[str] = None
    impl: str = "auto"
    optimizer: str = "adamw"
    lr: Optional[float] = None
    schedule: str = "onecycle"
    weight_decay: Optional[float] = None
    epochs: int = 20
    batch_size: int = 125
    seed: int = 0
    augment: str = "affine"
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    eval_batch_size: int = 500
    steps_per_call: Optional[int] = None

    def validated(self) -> "TrainConfig":
        """Checks every field; returns the config with ``lr`` (and adamw's ``weight_decay``) filled in.

        Raises:
          ValueError: naming the field, the value received and what is accepted.
        """
        _check_choice("model", self.model, tuple(models.MODELS))
        grad = default_grad(self.model) if self.grad is None else self.grad
        _check_choice("grad", grad, gradients.MODES)
        _check_choice("impl", self.impl, conv_impls())
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        augment_lib.check_augment(self.augment)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check_positive_int(name, getattr(self, name))
        for name in ("train_limit", "test_limit", "steps_per_call"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < SEED_BOUND:
            raise ValueError(f"seed must be an int in [0, 2**32) (jax.random.key keeps only the low 32 bits, "
                             f"so larger seeds repeat smaller ones), got {_short(self.seed)}")
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
        _check_positive_float("lr", lr)
        _check_float32_lr(lr)
        weight_decay = self.weight_decay
        if weight_decay is not None and not (isinstance(weight_decay, (int, float)) and not isinstance(
                weight_decay, bool) and _finite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {_short(weight_decay)}")
        if self.optimizer != "adamw" and weight_decay is not None:
            raise ValueError(f"weight_decay has no effect with optimizer={self.optimizer!r} (only 'adamw' decays "
                             f"weights); leave it out or use optimizer='adamw', got weight_decay={weight_decay!r}")
        if self.optimizer == "adamw" and weight_decay is None:
            weight_decay = DEFAULT_WEIGHT_DECAY
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be None or a directory path (str), got {self.data_dir!r}")
        return dataclasses.replace(self, grad=grad, lr=float(lr),
                                   weight_decay=None if weight_decay is None else float(weight_decay))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config saved by a run; unknown keys raise ``ValueError``."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; accepted: {sorted(names)}")
        if values.get("optimizer", cls.optimizer) != "adamw" and values.get("weight_decay") == DEFAULT_WEIGHT_DECAY:
            values = {**values, "weight_decay": None}  # saved before weight_decay became adamw-only: never applied
        return cls(**values)


def conv_impls() -> tuple:
    """``jaxcnn.ops.convolution.IMPLS``: the ``impl`` names that ``conv`` accepts."""
    from jaxcnn.ops.convolution import IMPLS  # pylint: disable=import-outside-toplevel

    return tuple(IMPLS)


def _check_choice(name, value, accepted):
    if value not in accepted:
        raise ValueError(f"{name} must be one of {tuple(accepted)}, got {value!r}")


def _short(value) -> str:
    """``repr(value)``, its middle cut out when it is long (an int of hundreds of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:12]}...{text[-12:]} ({len(text)} characters)"


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT32_MAX:
        raise ValueError(f"{name} must be a positive int (at most 2**31 - 1 = {INT32_MAX}), got {_short(value)}")


def _check_float32_lr(lr) -> None:
    """Training runs in float32: a learning rate must be a normal float32 number (not 0, not inf)."""
    tiny, largest = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    if lr < tiny:
        raise ValueError(f"lr must be at least {tiny:.3g}: smaller learning rates round to 0 in float32, "
                         f"where training runs; got {lr!r}")
    if lr > largest:
        raise ValueError(f"lr must be at most {largest:.4g}, float32's largest number; got {lr!r}")


def _finite(value) -> bool:
    """``math.isfinite``, and False for an int too large for a float (rather than ``OverflowError``)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {_short(value)}")


# ------------------------------------------------------------------- set-up


def _subset(images, labels, limit):
    """A fixed random subset of ``limit`` examples (all of them if ``limit`` is None or larger)."""
    if limit is None or limit >= len(labels):
        return images, labels
    keep = np.random.default_rng(SUBSET_SEED).permutation(len(labels))[:limit]
    return images[keep], labels[keep]


def load_split(config: TrainConfig, split: str):
    """``config.dataset``'s ``split`` as NumPy ``(images (N, H, W, C), labels (N,))``, limited."""
    images, labels = data.load(config.dataset, split, config.data_dir)
    return _subset(images, labels, config.train_limit if split == "train" else config.test_limit)


def resolve_dataset(config: TrainConfig, notice=print) -> TrainConfig:
    """Replaces ``dataset="mnist"`` by what ``data.resolve_mnist`` picks (TFDS or the sample)."""
    if config.dataset != "mnist":
        return config
    return dataclasses.replace(config, dataset=data.resolve_mnist(config.data_dir, notice))


def onednn_notice(config: TrainConfig, params) -> Optional[str]:
    """The line ``jaxcnn train`` prints after its header when ``impl="auto"`` would run oneDNN's
    convolutions (float32 params on the CPU) but the native extension is unavailable
    (:func:`jaxcnn.ops.onednn.unavailable_reason`), so ``auto`` falls back to XLA's convolution and
    im2col; ``None`` when there is nothing to say."""
    dtypes = {str(jnp.result_type(leaf)) for leaf in jax.tree.leaves(params)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)}
    if config.impl != "auto" or jax.default_backend() != "cpu" or dtypes != {"float32"} or onednn.available():
        return None
    return (f"note: oneDNN convolutions unavailable ({onednn.unavailable_reason()}); "
            "impl auto uses XLA and im2col instead")


def build_model(config: TrainConfig, input_shape, num_classes: int):
    """The model of ``config`` and its freshly initialised params (key: ``split(seed)[0]``).

    ``init`` runs under ``jit``: one compile instead of one per eager op.
    """
    model = models.get_model(config.model, num_classes=num_classes, impl=config.impl)
    shape = (-1, *input_shape)
    params = jax.jit(lambda key: model.init(jax.random.split(key)[0], shape)[1])(jax.random.key(config.seed))
    return model, params


def initial_model_state(model, input_shape):
    """The model's initial state (BatchNorm's running statistics), or ``None`` for a model without state."""
    if "state" not in model.needs:
        return None
    shape = (-1, *input_shape)
    return jax.jit(lambda: model.init_with_state(jax.random.key(0), shape)[2])()


def initial_state(config: TrainConfig, params, tx, model_state=None) -> dict:
    """Epoch-0 state: ``{"params", "opt_state", "epoch": 0, "key": key_data(key(seed))}``, and
    ``"model_state"`` for a model that keeps state."""
    state = {"params": params, "opt_state": jax.jit(tx.init)(params), "epoch": 0,
             "key": jax.random.key_data(jax.random.key(config.seed))}
    if model_state is not None:
        state["model_state"] = model_state
    return state


class Diverged(RuntimeError):
    """The loss (or, at an epoch's end, a parameter) became NaN or infinite."""


class Run(NamedTuple):
    """A prepared run: data and state replicated on the mesh's devices, model, optimizer, history."""

    config: TrainConfig
    workdir: pathlib.Path
    model: object
    tx: optax.GradientTransformation
    train_images: jax.Array
    train_labels: jax.Array
    test: EvalSet
    steps_per_epoch: int
    state: dict
    history: list
    mesh: object


def _check_resumable(config: TrainConfig, saved: TrainConfig) -> None:
    differ = [field.name for field in dataclasses.fields(TrainConfig)
              if field.name != "epochs" and getattr(config, field.name) != getattr(saved, field.name)]
    if differ:
        shown = ", ".join(f"{n}={getattr(config, n)!r} (run has {getattr(saved, n)!r})" for n in differ)
        raise ValueError(f"resume continues a run with its saved config; only epochs may change, got {shown}")


def _check_fresh(workdir: pathlib.Path) -> None:
    if checkpoint.latest_epoch(workdir) is not None or checkpoint.read_metrics(workdir):
        raise ValueError(f"{workdir} already holds a run; resume it or choose another workdir")
    foreign = _foreign_entries(workdir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(f"workdir {workdir} holds files that are not a jaxcnn run ({shown}); a new run would "
                         "write over them: choose a new or empty directory")


def _foreign_entries(workdir: pathlib.Path) -> list:
    """The entries of ``workdir`` that no jaxcnn run wrote, sorted: all but its lock, its temporary
    files and a ``config.json`` holding a :class:`TrainConfig` (a run stopped before its first epoch)."""
    if not workdir.is_dir():
        return []
    foreign = []
    for entry in sorted(workdir.iterdir()):
        if entry.name == checkpoint.LOCK_FILE or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        if entry.name == checkpoint.CONFIG_FILE:
            try:
                TrainConfig.from_dict(checkpoint.load_config(workdir))
                continue
            except (ValueError, TypeError):
                pass
        foreign.append(entry.name)
    return foreign


def _image_size(shape) -> str:
    return "×".join(str(n) for n in shape)


def _check_images(config: TrainConfig, train_shape, test_shape, num_classes: int) -> None:
    """The two splits hold images of one size, and the model accepts it.

    Raises:
      ValueError: the sizes differ, or the images are too small for ``config.model``
        (no pixels, or smaller than its windows).
    """
    if tuple(train_shape) != tuple(test_shape):
        raise ValueError(f"the train and test images of {config.dataset!r} differ in size: train "
                         f"{_image_size(train_shape)}, test {_image_size(test_shape)}; both splits need one size")
    if not all(train_shape[:-1]):
        raise ValueError(f"the {_image_size(train_shape)} images of {config.dataset!r} are too small for the model "
                         f"{config.model!r}: they have no pixels")
    model = models.get_model(config.model, num_classes=num_classes, impl=config.impl)
    try:
        jax.eval_shape(lambda key: model.init_with_state(key, (-1, *train_shape))[1], jax.random.key(0))
    except ValueError as error:
        raise ValueError(f"the {_image_size(train_shape)} images of {config.dataset!r} are too small for the model "
                         f"{config.model!r}: {' '.join(str(error).split())}") from error


def _check_steps(config: TrainConfig, steps_per_epoch: int) -> None:
    """``epochs × steps_per_epoch`` fits the optimizer's int32 step counter."""
    if config.epochs * steps_per_epoch > INT32_MAX:
        raise ValueError(f"epochs must be at most {INT32_MAX // steps_per_epoch} here: {config.epochs} epochs of "
                         f"{steps_per_epoch} steps overflow the int32 step counter (at most 2**31 - 1 steps)")


class Built(NamedTuple):
    """What every run of a config starts from (:func:`build`): its data as NumPy arrays
    ``(train_images, train_labels, test_images, test_labels)``, the model, its initial params and
    state (``None`` without state), the optimizer and the number of steps per epoch."""

    data: tuple
    model: object
    params: list
    model_state: object
    tx: optax.GradientTransformation
    steps_per_epoch: int


def build(config: TrainConfig) -> Built:
    """Loads ``config``'s data, checks it against the config, builds the model, its init and the optimizer.

    ``config`` is validated and its dataset resolved (:func:`resolve_dataset`). Shared by
    :func:`prepare` and the modes comparison (:func:`jaxcnn.training.compare.train_modes`), so both
    start from the same data, init and optimizer.

    Raises:
      ValueError: missing or malformed data, a batch larger than the training set, images the
        model does not accept, or more steps than the optimizer's int32 step counter holds.
    """
    train_images, train_labels = load_split(config, "train")
    test_images, test_labels = load_split(config, "test")
    if config.batch_size > len(train_labels):
        raise ValueError(f"batch_size must be at most the {len(train_labels)} training examples, "
                         f"got {config.batch_size}")
    classes = data.num_classes(config.dataset, config.data_dir)
    _check_images(config, train_images.shape[1:], test_images.shape[1:], classes)
    steps = len(train_labels) // config.batch_size
    _check_steps(config, steps)
    model, params = build_model(config, train_images.shape[1:], classes)
    return Built((train_images, train_labels, test_images, test_labels), model, params,
                 initial_model_state(model, train_images.shape[1:]), make_optimizer(config, steps), steps)


def prepare(config: TrainConfig, workdir, *, resume: bool = False, notice=print) -> Run:
    """Validates ``config``, loads the data onto the device, builds or restores the state.

    With ``resume``, ``WORKDIR`` must hold a run (its ``config.json``) whose
    saved config equals ``config`` except perhaps ``epochs`` (a longer run keeps
    going; the schedule then stretches, so only ``schedule="constant"``
    continues exactly). A run killed before its first checkpoint resumes from
    epoch 1.

    Raises:
      TypeError: ``config`` is not a :class:`TrainConfig`.
      ValueError: a bad config, an unwritable ``workdir``, missing or malformed
        data, a batch larger than the training set, ``resume`` where no run was
        started, or a fresh run in a work directory that already holds one.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jaxcnn.TrainConfig, got {type(config).__name__}")
    workdir = checkpoint.check_workdir(workdir)
    compile_cache.enable()
    mesh = parallel.data_mesh()
    config = resolve_dataset(config.validated(), notice)
    last = checkpoint.latest_epoch(workdir) if resume else None
    if resume:
        _check_resumable(config, TrainConfig.from_dict(checkpoint.load_config(workdir)))
        if last is not None and config.epochs < last:
            raise ValueError(f"epochs must be at least the {last} epochs already trained, got {config.epochs}")
    else:
        _check_fresh(workdir)
    built = build(config)
    model, tx, steps = built.model, built.tx, built.steps_per_epoch
    train_images, train_labels, test_images, test_labels = built.data
    state = initial_state(config, built.params, tx, built.model_state)
    history = []
    if resume and last is not None:
        state = checkpoint.restore(workdir, state, last)
    if resume:
        history = checkpoint.truncate_metrics(workdir, last or 0)
    if parallel.is_writer():
        checkpoint.save_config(workdir, dataclasses.asdict(config))
    test = batch_for_eval(test_images, test_labels, config.eval_batch_size)
    arrays = parallel.put_replicated(
        (train_images, train_labels, (test.images, test.labels, test.mask), parallel.to_host(state)), mesh)
    train_images, train_labels, test_arrays, state = arrays
    return Run(config, workdir, model, tx, train_images, train_labels, EvalSet(*test_arrays, test.count),
               steps, state, history, mesh)


# ------------------------------------------------------------------ the loop


class Result(NamedTuple):
    """What :func:`train_and_evaluate` returns: the final state and every epoch's metrics."""

    params: list
    opt_state: object
    history: list
    model_state: object = None


def _compile(run: Run):
    """Compiles the epoch program and the evaluation ahead of time; returns them, the chunk and the seconds taken."""
    start = time.perf_counter()
    config, state, mesh = run.config, run.state, run.mesh
    model_state = state.get("model_state", ())
    penalty = lax_conv_on_cpu(run.model, state["params"], (config.batch_size, *run.train_images.shape[1:]),
                              model_state)
    chunk, unroll = plan_epoch(run.steps_per_epoch, config.steps_per_call, penalty)
    key, index = parallel.put_replicated((jax.random.key_data(jax.random.key(0)), np.int32(0)), mesh)
    train_chunk = make_train_chunk(
        run.model, run.tx, grad=config.grad, augment=config.augment, batch_size=config.batch_size,
        steps_per_epoch=run.steps_per_epoch, chunk=chunk, unroll=unroll, mesh=mesh).lower(
        state["params"], state["opt_state"], run.train_images, run.train_labels,
        jax.random.wrap_key_data(key), index, model_state).compile()
    evaluate = make_evaluate(run.model, mesh).lower(
        state["params"], run.test.images, run.test.labels, run.test.mask, model_state).compile()
    return train_chunk, evaluate, chunk, time.perf_counter() - start


def _check_finite(losses, finite, epoch: int, first_step: int, workdir) -> None:
    bad = np.flatnonzero(~finite)
    if bad.size:
        step, loss = first_step + int(bad[0]), losses[bad[0]]
        what = f"the training loss became {loss}" if not np.isfinite(loss) else "a gradient became NaN or infinite"
        raise Diverged(f"{what} at epoch {epoch}, step {step}; stopped. {_kept(workdir, epoch)}")


def _kept(workdir, epoch: int) -> str:
    if epoch == 1:
        return "No checkpoint was written."
    return f"The last good checkpoint (epoch {epoch - 1}) in {pathlib.Path(workdir) / checkpoint.CHECKPOINT_DIR} is kept."


def _train_epoch(run: Run, train_chunk, chunk: int, params, opt_state, epoch: int, epoch_key, bar, model_state=None):
    """Runs one epoch as ``steps_per_epoch / chunk`` calls; returns the params, optimizer state,
    loss sum, correct count and model state (``None`` for a model without state).

    Raises:
      Diverged: a step's loss or gradient is not finite (steps counted from 1 in the epoch).
    """
    loss_sum, correct, done = 0.0, 0, 0
    for index in range(run.steps_per_epoch // chunk):
        key, position = parallel.put_replicated((jax.random.key_data(epoch_key), np.int32(index)), run.mesh)
        params, opt_state, losses, hits, finite, new_state = train_chunk(
            params, opt_state, run.train_images, run.train_labels, jax.random.wrap_key_data(key), position,
            () if model_state is None else model_state)
        model_state = None if model_state is None else new_state
        losses, hits, finite = parallel.to_host((losses, hits, finite))
        _check_finite(losses, finite, epoch, done + 1, run.workdir)
        loss_sum += float(np.sum(losses.astype(np.float64)))
        correct += int(np.sum(hits))
        done += chunk
        bar.update(chunk)
        bar.set_postfix(loss=f"{loss_sum / done:.4f}")
        interrupt.phase(f"epoch {epoch} step {done}")  # a named moment (interrupt.phase)
    return params, opt_state, loss_sum, correct, model_state


def _record(run: Run, epoch: int, train: tuple, test: tuple, seconds: tuple) -> dict:
    config, examples = run.config, run.steps_per_epoch * run.config.batch_size
    (loss_sum, correct), (test_loss, test_correct), (epoch_seconds, eval_seconds) = train, test, seconds
    return {
        "epoch": epoch, "train_loss": loss_sum / run.steps_per_epoch, "train_accuracy": correct / examples,
        "test_loss": float(test_loss) / run.test.count, "test_accuracy": int(test_correct) / run.test.count,
        "epoch_seconds": epoch_seconds, "eval_seconds": eval_seconds, "images_per_second": examples / epoch_seconds,
        "train_examples": examples, "test_examples": run.test.count, "devices": run.mesh.devices.size,
        "processes": jax.process_count(), "platform": jax.devices()[0].platform, "model": config.model, "dataset": config.dataset,
        "grad": config.grad, "impl": config.impl, "optimizer": config.optimizer, "schedule": config.schedule,
        "lr": config.lr, "batch_size": config.batch_size, "augment": config.augment, "seed": config.seed,
    }


def _log_line(record: dict, epochs: int) -> str:
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.2%}  test loss {record['test_loss']:.4f} "
            f"acc {record['test_accuracy']:.2%}  {record['epoch_seconds']:.1f} s "
            f"({record['images_per_second']:.0f} img/s)")


def run_epochs(run: Run, *, progress: bool = True, stop_after: Optional[int] = None, log=print) -> Result:
    """Trains ``run`` from its state's epoch to ``config.epochs``, evaluating, logging and
    checkpointing after each epoch, then writes the plots.

    Args:
      progress: show a tqdm bar per epoch (running loss).
      stop_after: stop after this many epochs in this call (an interruption;
        ``resume`` continues exactly).
      log: receives one line per epoch.
    """
    from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

    config, state = run.config, run.state
    params, opt_state, history = state["params"], state["opt_state"], list(run.history)
    model_state = state.get("model_state")
    _, train_key = jax.random.split(jax.random.wrap_key_data(jnp.asarray(parallel.to_host(state["key"]))))
    writer = parallel.is_writer()
    interrupt.phase("compile")  # a named moment (interrupt.phase)
    train_chunk, evaluate, chunk, compile_seconds = _compile(run)
    first, last = int(state["epoch"]) + 1, config.epochs
    if stop_after is not None:
        last = min(last, int(state["epoch"]) + stop_after)
    for epoch in range(first, last + 1):
        with tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                  leave=False, disable=not (progress and writer)) as bar:
            start = time.perf_counter()
            params, opt_state, *train, model_state = _train_epoch(
                run, train_chunk, chunk, params, opt_state, epoch, jax.random.fold_in(train_key, epoch), bar,
                model_state)
            epoch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        test = parallel.to_host(evaluate(params, run.test.images, run.test.labels, run.test.mask,
                                         () if model_state is None else model_state))
        record = _record(run, epoch, tuple(train), test, (epoch_seconds, time.perf_counter() - start))
        if epoch == first:
            record["compile_seconds"] = compile_seconds
        history.append(record)
        if writer:
            checkpoint.append_metrics(run.workdir, record)
        saved = {"params": params, "opt_state": opt_state, "epoch": epoch, "key": state["key"]}
        if model_state is not None:
            saved["model_state"] = model_state
        checkpoint.save(run.workdir, saved)
        if writer:
            log(_log_line(record, config.epochs))
    if writer:
        write_plots(run.workdir, history, parallel.to_host(params))
    return Result(params, opt_state, history, model_state)


def write_plots(workdir, history, params) -> None:
    """``WORKDIR/curves.png`` (loss and accuracy per epoch) and ``filters.png`` (first conv layer)."""
    workdir = pathlib.Path(workdir)
    if history:
        plots.plot_curves(history, workdir / plots.CURVES_FILE)
    kernel = plots.first_conv_kernel(params)
    if kernel is not None:
        plots.plot_filters(kernel, workdir / plots.FILTERS_FILE)


def train_and_evaluate(config: TrainConfig, workdir, *, resume: bool = False, progress: bool = True,
                       stop_after: Optional[int] = None, log=print) -> Result:
    """Trains ``config`` in ``workdir`` (created if needed) and evaluates after every epoch.

    ``WORKDIR`` receives ``config.json``, ``metrics.jsonl`` (one JSON object per
    epoch), ``checkpoints/`` and the PNG plots (see ``jaxcnn.training.checkpoint``).

    The run holds ``WORKDIR/.lock`` while it lasts (``checkpoint.lock_workdir``).

    Returns:
      A :class:`Result`: final params and optimizer state, and the metrics of
      every epoch of the run (earlier ones included when resuming).

    Raises:
      ValueError: as :func:`prepare`, or another run holds ``workdir``.
    """
    # Process 0 holds the work directory for the run's lifetime: a second run there is refused at once.
    with checkpoint.lock_workdir(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        run = prepare(config, workdir, resume=resume, notice=log)
        return run_epochs(run, progress=progress, stop_after=stop_after, log=log)


def evaluate_checkpoint(workdir, epoch: Optional[int] = None) -> dict:
    """Evaluates a run's checkpoint (default: the newest) on its test split.

    Returns:
      ``{"epoch", "test_loss", "test_accuracy", "test_examples", "correct"}``.
    """
    config = TrainConfig.from_dict(checkpoint.load_config(workdir)).validated()
    images, labels = load_split(config, "test")
    model, params = build_model(config, images.shape[1:], data.num_classes(config.dataset, config.data_dir))
    tx = make_optimizer(config, steps_per_epoch=1)
    template = initial_state(config, params, tx, initial_model_state(model, images.shape[1:]))
    state = checkpoint.restore(workdir, template, epoch)
    mesh = parallel.data_mesh()
    test = batch_for_eval(images, labels, config.eval_batch_size)
    extra = (state["model_state"],) if "model_state" in state else ()
    arrays = parallel.put_replicated(
        (parallel.to_host(state["params"]), test.images, test.labels, test.mask, *parallel.to_host(extra)), mesh)
    loss, correct = parallel.to_host(make_evaluate(model, mesh)(*arrays))
    return {"epoch": int(state["epoch"]), "test_loss": float(loss) / test.count,
            "test_accuracy": int(correct) / test.count, "test_examples": test.count, "correct": int(correct)}
