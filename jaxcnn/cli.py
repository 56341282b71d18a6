"""The ``jaxcnn`` command: ``train``, ``eval``, ``check-grads`` and ``summary``.

Every user error (a bad flag value, an unknown name, missing or corrupt data,
``--resume`` without a checkpoint, ...) prints one line ``jaxcnn: error: ...``
on stderr and exits with status 2; a training run whose loss becomes NaN or
infinite prints one such line naming the epoch and step and exits with status 3.
Ctrl-C, at any moment, prints one line ``jaxcnn: interrupted; continue with: ...``
(``train``; the other commands say to run again) and exits with status 130
(``jaxcnn.training.interrupt``). A multi-process run that cannot start within
``--init-timeout`` seconds prints what it waited for as one error line, status 2.
A float32 ``train`` run on the CPU with ``--impl auto`` where oneDNN's extension cannot be
built or loaded prints one ``note: ...`` line after its header, saying why and what runs instead.
"""

from __future__ import annotations

from jaxcnn.training import process  # isort: skip  (the standard library only)

# The jaxcnn script (whose entry is main): Ctrl-C handler and allocator setting, before jax is imported.
process.configure_command()

import argparse  # noqa: E402  # pylint: disable=wrong-import-position,wrong-import-order
import dataclasses  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from jaxcnn.nn import models  # noqa: E402
from jaxcnn.nn.summaries import summarize_named  # noqa: E402
from jaxcnn.proof import gradients  # noqa: E402
from jaxcnn.training import augment, checkpoint, data, interrupt, parallel  # noqa: E402
from jaxcnn.training import loop as train  # noqa: E402

USAGE_ERROR = 2
DIVERGED = 3
INTERRUPTED = 130
CHECK_GRADS_TOLERANCE = 1e-4
CHECK_GRADS_TOLERANCES = {"float32": CHECK_GRADS_TOLERANCE, "float64": 1e-10}


class CliError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`CliError` instead of printing usage and exiting."""

    def error(self, message):
        raise CliError(message)


def _shown(text: str) -> str:
    """``repr(text)``, its middle cut out when it is long (a number of hundreds of digits)."""
    return repr(text) if len(text) <= 40 else f"{text[:12]!r}...{text[-12:]!r} ({len(text)} characters)"


def _number(cast, *, positive: bool, accepted: str, maximum=None):
    """An argparse type: ``cast(text)``, finite, > 0 (``positive``) or >= 0, and at most ``maximum``."""

    def parse(text: str):
        try:
            value = cast(text)
            finite = math.isfinite(value)
        except (ValueError, OverflowError):  # not a number; an int too large for a float
            value, finite = math.nan, False
        if not finite or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {_shown(text)}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be {accepted} (at most {maximum}), got {_shown(text)}")
        return value

    return parse


INT_MAX = train.INT32_MAX  # integer flags count steps, examples, epochs: int32 is the bound
_positive_int = _number(int, positive=True, accepted="a positive int", maximum=INT_MAX)
_positive_float = _number(float, positive=True, accepted="a positive finite number")
_non_negative_float = _number(float, positive=False, accepted="a finite number >= 0")
_non_negative_int = _number(int, positive=False, accepted="an int >= 0", maximum=INT_MAX)
_seed = _number(int, positive=False, accepted="an int in [0, 2**32)", maximum=train.SEED_BOUND - 1)
SEED_HELP = "an int in [0, 2**32): jax.random.key keeps 32 bits, so larger seeds would repeat smaller ones"
DEFAULT_WORKDIR = "runs/%Y%m%d-%H%M%S"


# --------------------------------------------------------------------- train


def _add_train_parser(commands) -> None:
    defaults = train.TrainConfig()
    parser = commands.add_parser(
        "train", help="train a model, evaluating and checkpointing every epoch",
        description="Train a CNN; WORKDIR receives config.json, metrics.jsonl, checkpoints/ and PNG plots. "
                    "Flags left out take the defaults shown (with --resume: the run's saved values).")
    flag = parser.add_argument
    flag("--model", choices=tuple(models.MODELS), help=f"network (default {defaults.model})")
    flag("--dataset", help='mnist (TFDS, else the bundled sample), mnist-sample, fashion_mnist, cifar10, '
                           f'idx:DIR, or another TFDS name (default {defaults.dataset})')
    flag("--data-dir", help="TFDS data directory (default: TFDS' own)")
    flag("--grad", choices=gradients.MODES,
         help="gradient mode (default: " + ", ".join(f"{mode} for {model}" for model, mode in train.DEFAULT_GRAD.items())
         + f", {train.default_grad('')} otherwise)")
    flag("--impl", choices=train.conv_impls(), help=f"convolution implementation (default {defaults.impl})")
    flag("--optimizer", choices=train.OPTIMIZERS, help=f"optimizer (default {defaults.optimizer})")
    flag("--lr", type=_positive_float, help=f"peak learning rate (default per optimizer: {train.DEFAULT_LR})")
    flag("--schedule", choices=train.SCHEDULES, help=f"learning-rate schedule (default {defaults.schedule})")
    flag("--weight-decay", type=_non_negative_float,
         help=f"adamw's decoupled weight decay (default {train.DEFAULT_WEIGHT_DECAY}; "
              "an error with the other optimizers, which have none)")
    flag("--augment", choices=augment.AUGMENTS, help=f"training-batch augmentation (default {defaults.augment})")
    flag("--epochs", type=_positive_int, help=f"number of epochs (default {defaults.epochs})")
    flag("--batch-size", type=_positive_int, help=f"training batch size (default {defaults.batch_size})")
    flag("--seed", type=_seed, help=f"seed of init, shuffling, augmentation, {SEED_HELP} (default {defaults.seed})")
    flag("--train-limit", type=_positive_int, help="train on a fixed random subset of this many examples")
    flag("--test-limit", type=_positive_int, help="evaluate on a fixed random subset of this many examples")
    flag("--eval-batch-size", type=_positive_int, help=f"evaluation batch size (default {defaults.eval_batch_size})")
    flag("--steps-per-call", type=_positive_int,
         help="most batches per compiled call (default: the whole epoch in one lax.scan; "
              "chunks of 8 unrolled batches for impl=lax on CPU)")
    flag("--workdir", help="run directory, locked while the run lasts (default: a new runs/YYYYmmdd-HHMMSS, "
                           "with -2, -3, ... added when that exists)")
    flag("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    flag("--no-progress", action="store_true", help="no progress bar")
    cluster = parser.add_argument_group(
        "multi-process (several hosts)", "start one process per host with the same flags and its own "
        "--process-id. JAX_COORDINATOR_ADDRESS may replace --coordinator; under Slurm or Open MPI, JAX "
        "reads the process count and id from the scheduler")
    cluster.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator service")
    cluster.add_argument("--num-processes", type=_positive_int, help="number of processes in the run")
    cluster.add_argument("--process-id", type=_non_negative_int, help="this process's index, 0 ... N-1")
    cluster.add_argument("--init-timeout", type=_positive_float, default=parallel.DEFAULT_INIT_TIMEOUT,
                         metavar="SECONDS", help="give up joining the run after this long, with one error line "
                         f"(default {parallel.DEFAULT_INIT_TIMEOUT:g})")
    parser.set_defaults(handler=_releasing(_train))


def _explicit_config(args) -> dict:
    names = {field.name for field in dataclasses.fields(train.TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in names and value is not None}


def _notice(line: str) -> None:
    print(line, file=sys.stderr)


def _join_cluster(args) -> None:
    """``parallel.initialize`` with the multi-process flags. A start-up that gave up while jax was still
    connecting (a thread blocked in C++, which no interpreter shutdown can stop) ends the command at once,
    after its one error line."""
    try:
        parallel.initialize(parallel.Cluster(args.coordinator, args.num_processes, args.process_id),
                            timeout=args.init_timeout, notice=_notice)
    except parallel.StartupFailed as error:
        if error.stuck and interrupt.is_command():
            interrupt.exit_now(f"jaxcnn: error: {_one_line(error)}", USAGE_ERROR)
        raise


def _train_interrupted(args, workdir: pathlib.Path):
    """The interrupt line of ``train``: ``--resume`` (with the cluster flags) once the run's config.json has
    been written since the command started (the run exists), else the same command again (nothing was written)."""
    config = workdir / checkpoint.CONFIG_FILE

    def signature():
        try:
            stat = config.stat()
            return stat.st_ino, stat.st_mtime_ns
        except OSError:
            return None

    before, rerun = signature(), interrupt.rerun_message(getattr(args, "argv", ["train"]))
    cluster = [f"--{flag.replace('_', '-')}={value}" for flag in ("coordinator", "num_processes", "process_id")
               if (value := getattr(args, flag, None)) is not None]  # a multi-process run continues as one
    command = shlex.join(["jaxcnn", "train", "--resume", "--workdir", str(workdir), *cluster])
    resume = f"jaxcnn: interrupted; continue with: {command}"
    return lambda: resume if args.resume or signature() not in (None, before) else rerun


def _releasing(handler):
    """``handler(args)``, then every callable it appended to ``args.release`` (the work directory's lock)."""

    def run(args) -> int:
        args.release = []
        forget = interrupt.at_exit(lambda: [release() for release in reversed(args.release)])  # Ctrl-C too
        try:
            return handler(args)
        finally:
            forget()
            for release in reversed(args.release):
                release()

    return run


def _lock_workdir(args) -> pathlib.Path:
    """The run's work directory: ``--workdir`` or a new ``runs/YYYYmmdd-HHMMSS[-N]``, locked by
    process 0 until ``train`` returns (``checkpoint.lock_workdir``: a second run there is refused)."""
    if not parallel.is_writer():
        return pathlib.Path(args.workdir or time.strftime(DEFAULT_WORKDIR))
    if args.workdir is not None:
        lock = checkpoint.lock_workdir(args.workdir)
    else:
        lock = checkpoint.lock_new_workdir(time.strftime(DEFAULT_WORKDIR))
    args.release.append(lock.release)
    return lock.path


def _train(args) -> int:
    interrupt.phase("setup")
    explicit = _explicit_config(args)
    try:
        _join_cluster(args)
        if args.resume:
            if args.workdir is None:
                raise CliError("--resume needs --workdir DIR, the run to continue")
            saved = train.TrainConfig.from_dict(checkpoint.load_config(args.workdir))
            config = dataclasses.replace(saved, **explicit)
        else:
            config = train.TrainConfig(**explicit)
        workdir = _lock_workdir(args)
        interrupt.set_message(_train_interrupted(args, workdir))
        run = train.prepare(config, workdir, resume=args.resume, notice=_notice)
    except (ValueError, ImportError, RuntimeError) as error:
        raise CliError(error) from error
    writer = parallel.is_writer()
    if writer:
        print(f"jaxcnn: training {run.config.model} on {run.config.dataset} in {workdir} "
              f"({_count(run.mesh.devices.size, 'device')}, {_count(jax.process_count(), 'process')})", flush=True)
        note = train.onednn_notice(run.config, run.state["params"])
        if note is not None:
            print(note, flush=True)
    try:  # Ctrl-C: interrupt.handler exits with the line of _train_interrupted (main catches it in-process)
        result = train.run_epochs(run, progress=not args.no_progress, log=lambda line: print(line, flush=True))
    except train.Diverged as error:
        _notice(f"jaxcnn: error: {_one_line(error)}")
        return DIVERGED
    if result.history and writer:
        last = result.history[-1]
        print(f"test accuracy {last['test_accuracy']:.2%} after epoch {last['epoch']}; "
              f"metrics, checkpoints and plots in {workdir}")
    return 0


# ---------------------------------------------------------------------- eval


def _add_eval_parser(commands) -> None:
    parser = commands.add_parser("eval", help="evaluate a run's checkpoint on its test split")
    parser.add_argument("--workdir", required=True, help="the run's directory")
    parser.add_argument("--epoch", type=_positive_int, help="which checkpoint (default: the newest)")
    parser.set_defaults(handler=_eval)


def _eval(args) -> int:
    interrupt.phase("eval")
    try:
        result = train.evaluate_checkpoint(args.workdir, args.epoch)
    except (ValueError, ImportError, RuntimeError, FileNotFoundError) as error:
        raise CliError(error) from error
    print(f"epoch {result['epoch']}: test accuracy {result['test_accuracy']:.2%} "
          f"({result['correct']}/{result['test_examples']}), test loss {result['test_loss']:.4f}")
    return 0


# --------------------------------------------------------------- check-grads


def _add_check_grads_parser(commands) -> None:
    parser = commands.add_parser(
        "check-grads", help="compare the three gradient modes on a batch of real digits",
        description="For every parameter, the largest absolute difference max|a - b| and the relative "
                    "difference max|a - b| / max|a| between autodiff (a) and manual, and autodiff and "
                    "backprop (b), on the first --batch bundled MNIST test digits, in training mode (batch "
                    "statistics, dropout on with one fixed key). Exit status 1 if a relative difference "
                    f"exceeds {CHECK_GRADS_TOLERANCE:g} in float32 or {CHECK_GRADS_TOLERANCES['float64']:g} "
                    "in float64.")
    parser.add_argument("--model", default="classic", choices=tuple(models.MODELS))
    parser.add_argument("--impl", default="auto", choices=train.conv_impls())
    parser.add_argument("--batch", type=_positive_int, default=32, help="number of test digits (default 32)")
    parser.add_argument("--seed", type=_seed, default=0, help=f"init seed, {SEED_HELP} (default 0)")
    parser.add_argument("--dtype", default="float32", choices=tuple(CHECK_GRADS_TOLERANCES),
                        help="precision of params, state and digits (default float32; float64 is held to 1e-10)")
    parser.set_defaults(handler=_check_grads)


def _grads_progress(batch: int, chunk: int, every: float = 2.0):
    """check-grads' progress on stderr when the batch takes several slices of ``chunk`` digits:
    a line after the first slice, then at most one per ``every`` seconds, and one at the end."""
    if batch <= chunk:
        return None
    last = [None]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if last[0] is None or done == total or now - last[0] >= every:
            _notice(f"check-grads: {done}/{total} digits through the three gradient modes")
            last[0] = now

    return report


def _check_grads(args) -> int:
    from jaxcnn.proof import mode_comparison  # pylint: disable=import-outside-toplevel

    interrupt.phase("check-grads")
    try:
        images, labels = data.load(data.SAMPLE_NAME, "test")
        rows = mode_comparison.compare_modes(images, labels, args.model, args.impl, batch=args.batch, seed=args.seed,
                                       dtype=args.dtype, chunk=mode_comparison.CHUNK,
                                       progress=_grads_progress(args.batch, mode_comparison.CHUNK))
    except ValueError as error:
        raise CliError(error) from error
    print(mode_comparison.format_rows(rows))
    worst = max(max(row.rel_manual, row.rel_backprop) for row in rows)
    tolerance = CHECK_GRADS_TOLERANCES[args.dtype]
    verdict = "ok" if worst <= tolerance else "FAILED"
    print(f"largest relative difference {worst:.2e} (tolerance {tolerance:g}): {verdict}")
    return 0 if verdict == "ok" else 1


# ------------------------------------------------------------------- summary


def _add_summary_parser(commands) -> None:
    parser = commands.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    parser.add_argument("model", help=f"one of {tuple(models.MODELS)}")
    parser.set_defaults(handler=_summary)


def _summary(args) -> int:
    try:
        print(summarize_named(args.model))
    except (ImportError, ValueError) as error:
        raise CliError(error) from error
    return 0


# -------------------------------------------------------------------- native


def _add_native_parser(commands) -> None:
    parser = commands.add_parser(
        "native", help="build (unless built already) and load oneDNN's convolution extension now, and say where "
                       "it is or why it cannot be used (status 1)")
    parser.set_defaults(handler=_native)


def _native(args) -> int:
    from jaxcnn.ops._native import loader  # pylint: disable=import-outside-toplevel

    native = loader.native()
    if native.library is None:
        print(f"oneDNN convolutions unavailable ({native.reason}); impl auto uses XLA and im2col instead")
        return 1
    print(f"oneDNN convolutions ready: {native.path}")
    return 0


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxcnn`` argument parser, one sub-command per action."""
    parser = _Parser(prog="jaxcnn", description="Pure-functional JAX CNNs with hand-derived gradients.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(commands)
    _add_eval_parser(commands)
    _add_check_grads_parser(commands)
    _add_summary_parser(commands)
    _add_native_parser(commands)
    return parser


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("s") else "s")


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None) -> int:
    """Runs the ``jaxcnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Ctrl-C at any moment prints one line (how to continue) and gives status 130
    (``jaxcnn.training.interrupt``): the command exits there and then; called
    in-process, ``main`` returns 130.
    """
    argv = [str(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    previous = interrupt.install(hard_exit=interrupt.is_command())
    interrupt.set_message(interrupt.rerun_message(argv))
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.handler(args)
    except CliError as error:
        print(f"jaxcnn: error: {_one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        _notice(interrupt.message())
        return INTERRUPTED
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    finally:
        if not interrupt.is_command():  # the command keeps the handler until it exits
            interrupt.restore(previous)
