"""The ``jaxcnn`` command: ``train``, ``eval``, ``check-grads`` and ``summary``.

Every user error (a bad flag value, an unknown name, missing or corrupt data,
``--resume`` without a checkpoint, ...) prints one line ``jaxcnn: error: ...``
on stderr and exits with status 2; a training run whose loss becomes NaN or
infinite prints one such line naming the epoch and step and exits with status 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import pathlib
import sys
import time

import jax

from jaxcnn import augment, checkpoint, gradients, models, parallel, train

USAGE_ERROR = 2
DIVERGED = 3
INTERRUPTED = 130
CHECK_GRADS_TOLERANCE = 1e-4


class CliError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`CliError` instead of printing usage and exiting."""

    def error(self, message):
        raise CliError(message)


def _number(cast, *, positive: bool, accepted: str):
    """An argparse type: ``cast(text)``, finite, and > 0 (``positive``) or >= 0."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, positive=True, accepted="a positive int")
_positive_float = _number(float, positive=True, accepted="a positive finite number")
_non_negative_float = _number(float, positive=False, accepted="a finite number >= 0")
_non_negative_int = _number(int, positive=False, accepted="an int >= 0")


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
    flag("--grad", choices=gradients.MODES, help=f"gradient mode (default {defaults.grad})")
    flag("--impl", choices=train.conv_impls(), help=f"convolution implementation (default {defaults.impl})")
    flag("--optimizer", choices=train.OPTIMIZERS, help=f"optimizer (default {defaults.optimizer})")
    flag("--lr", type=_positive_float, help=f"peak learning rate (default per optimizer: {train.DEFAULT_LR})")
    flag("--schedule", choices=train.SCHEDULES, help=f"learning-rate schedule (default {defaults.schedule})")
    flag("--weight-decay", type=_non_negative_float,
         help=f"adamw's decoupled weight decay (default {defaults.weight_decay})")
    flag("--augment", choices=augment.AUGMENTS, help=f"training-batch augmentation (default {defaults.augment})")
    flag("--epochs", type=_positive_int, help=f"number of epochs (default {defaults.epochs})")
    flag("--batch-size", type=_positive_int, help=f"training batch size (default {defaults.batch_size})")
    flag("--seed", type=_non_negative_int, help=f"seed of init, shuffling, augmentation (default {defaults.seed})")
    flag("--train-limit", type=_positive_int, help="train on a fixed random subset of this many examples")
    flag("--test-limit", type=_positive_int, help="evaluate on a fixed random subset of this many examples")
    flag("--eval-batch-size", type=_positive_int, help=f"evaluation batch size (default {defaults.eval_batch_size})")
    flag("--steps-per-call", type=_positive_int,
         help="most batches per compiled call (default: the whole epoch in one lax.scan; "
              "chunks of 8 unrolled batches for impl=lax on CPU)")
    flag("--workdir", help="run directory (default runs/YYYYmmdd-HHMMSS)")
    flag("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    flag("--no-progress", action="store_true", help="no progress bar")
    cluster = parser.add_argument_group(
        "multi-process (several hosts)", "start one process per host with the same flags and its own "
        "--process-id. JAX_COORDINATOR_ADDRESS may replace --coordinator; under Slurm or Open MPI, JAX "
        "reads the process count and id from the scheduler")
    cluster.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator service")
    cluster.add_argument("--num-processes", type=_positive_int, help="number of processes in the run")
    cluster.add_argument("--process-id", type=_non_negative_int, help="this process's index, 0 ... N-1")
    parser.set_defaults(handler=_train)


def _explicit_config(args) -> dict:
    names = {field.name for field in dataclasses.fields(train.TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in names and value is not None}


def _notice(line: str) -> None:
    print(line, file=sys.stderr)


def _train(args) -> int:
    explicit = _explicit_config(args)
    try:
        parallel.initialize(parallel.Cluster(args.coordinator, args.num_processes, args.process_id))
        if args.resume:
            if args.workdir is None:
                raise CliError("--resume needs --workdir DIR, the run to continue")
            saved = train.TrainConfig.from_dict(checkpoint.load_config(args.workdir))
            config = dataclasses.replace(saved, **explicit)
        else:
            config = train.TrainConfig(**explicit)
        workdir = pathlib.Path(args.workdir or time.strftime("runs/%Y%m%d-%H%M%S"))  # checked by train.prepare
        run = train.prepare(config, workdir, resume=args.resume, notice=_notice)
    except (ValueError, ImportError, RuntimeError) as error:
        raise CliError(error) from error
    writer = parallel.is_writer()
    if writer:
        print(f"jaxcnn: training {run.config.model} on {run.config.dataset} in {workdir} "
              f"({_count(run.mesh.devices.size, 'device')}, {_count(jax.process_count(), 'process')})", flush=True)
    try:
        result = train.run_epochs(run, progress=not args.no_progress, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        _notice(f"jaxcnn: interrupted; continue with: jaxcnn train --resume --workdir {workdir}")
        return INTERRUPTED
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
                    "backprop (b), on the first --batch bundled MNIST test digits. Exit status 1 if a "
                    f"relative difference exceeds {CHECK_GRADS_TOLERANCE:g}.")
    parser.add_argument("--model", default="classic", choices=tuple(models.MODELS))
    parser.add_argument("--impl", default="auto", choices=train.conv_impls())
    parser.add_argument("--batch", type=_positive_int, default=32, help="number of test digits (default 32)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="init seed (default 0)")
    parser.set_defaults(handler=_check_grads)


def _check_grads(args) -> int:
    from jaxcnn import gradcheck  # pylint: disable=import-outside-toplevel

    try:
        rows = gradcheck.compare_modes(args.model, args.impl, batch=args.batch, seed=args.seed)
    except ValueError as error:
        raise CliError(error) from error
    print(gradcheck.format_rows(rows))
    worst = max(max(row.rel_manual, row.rel_backprop) for row in rows)
    verdict = "ok" if worst <= CHECK_GRADS_TOLERANCE else "FAILED"
    print(f"largest relative difference {worst:.2e} (tolerance {CHECK_GRADS_TOLERANCE:g}): {verdict}")
    return 0 if verdict == "ok" else 1


# ------------------------------------------------------------------- summary


def _add_summary_parser(commands) -> None:
    parser = commands.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    parser.add_argument("model", help=f"one of {tuple(models.MODELS)}")
    parser.set_defaults(handler=_summary)


def _summary(args) -> int:
    try:
        # By module name: the package re-exports a function called ``summary``.
        summary = importlib.import_module("jaxcnn.summary")
        print(summary.summarize_named(args.model))
    except (ImportError, ValueError) as error:
        raise CliError(error) from error
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
    return parser


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("s") else "s")


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None) -> int:
    """Runs the ``jaxcnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except CliError as error:
        print(f"jaxcnn: error: {_one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
