"""Training throughput, side by side: jaxcnn against PyTorch, torch.compile, Flax NNX and Equinox.

    python benchmarks/throughput.py --out runs/throughput                  # the full run
    python benchmarks/throughput.py --out runs/throughput --models classic --rounds 7
    python benchmarks/throughput.py --out runs/throughput --conv-only      # the single-conv table only
    python benchmarks/throughput.py --out /tmp/t --models classic --steps 2 --rounds 1 --batch 8   # smoke

One process, one interleaved run. Every candidate trains the SAME network (``experiments/peer_nets.py``;
``tests/test_peers.py`` proves equal parameter counts and equal logits), from the SAME initial
params (jaxcnn's, copied in), on the SAME data (the 5,000 bundled digits, ``mnist-sample``),
batch 128, Adam lr 1e-3, float32, no augmentation. A round is ``--steps`` training steps
(default: the whole epoch, 39 steps of 128, for classic and lecture; ``--resnet-steps``, default
8, for resnet); each candidate runs one warm-up round (compilation; ``ready s`` in the table is
the seconds from building the candidate to the end of that round), then ``--rounds`` timed
rounds, interleaved: round r of every candidate before round r + 1 of any.
The process keeps freed memory for reuse, as the ``jaxcnn`` command does
(:func:`jaxcnn.configure_process`), for every candidate alike.
The table reports per-round medians as images/s and ms/step, with ratios computed within the run:
× PyTorch eager and × the fastest JAX peer (the faster of Flax NNX and Equinox).

The candidates:

* ``jaxcnn train path``: the compiled epoch program of ``jaxcnn train`` exactly as
  ``jaxcnn.training.loop`` runs it: ``prepare`` (config: dataset ``mnist-sample``, ``train_limit``
  = steps × batch, optimizer ``adam``, lr 1e-3, schedule ``constant``, augment ``none``,
  impl ``auto``), ``_compile`` (``make_train_chunk`` with ``plan_epoch``/``lax_conv_on_cpu``)
  and ``_train_epoch`` (state donated; BatchNorm's ``model_state`` passed and donated). One
  row per ``--grads`` mode; ``default`` (the default) is the model's own mode as ``jaxcnn train``
  takes it (``loop.DEFAULT_GRAD``: ``manual`` for resnet, ``autodiff`` otherwise). The
  row of that mode is labelled ``jaxcnn train path``, any other ``jaxcnn train path (MODE)``.
* ``jaxcnn jit step``: the README quick start: ``jax.jit`` of a step calling
  ``jaxcnn.loss_and_grad`` (``state=`` for resnet) and an ``optax.adam`` update, params and
  optimizer state (and model state) donated, called in a Python loop over batches sliced on the
  device before timing. One row per ``--jit-grads`` mode (``grad=`` of ``loss_and_grad``);
  ``default`` is the model's own mode, the one its train path row uses, so the two rows compare
  the same gradients (labelled ``jaxcnn jit step``; any other mode ``jaxcnn jit step (MODE)``).
* ``pytorch eager``: the ``torch.nn.Module`` (NCHW), ``torch.optim.Adam``, a Python loop.
* ``torch.compile``: the same module through ``torch.compile`` (Inductor; needs a C++
  compiler). If it fails, the row says ``unavailable: <reason>``.
* ``flax nnx``: the NNX module (NHWC, ``lax`` convolutions as Flax does), an ``nnx.jit`` step
  (donating the module's and the optimizer's arrays), ``nnx.Optimizer`` with ``optax.adam``.
* ``equinox``: the Equinox module (per example CHW, vmapped), an ``eqx.filter_jit`` step
  (donating the model, state and optimizer state), ``optax.adam``; BatchNorm through ``eqx.nn.State``.

The single-conv table times ``jaxcnn.conv(impl="auto")`` forward + backward (``jax.grad`` with
respect to x and w, jitted), once with ``grad="autodiff"`` (the default: JAX differentiates the
forward) and once with ``grad="manual"`` (the hand rule, as ``jaxcnn train`` runs ResNet-20), on
the 26×26×32→64 3×3 VALID layer (classic's conv2) at ``--batch``,
against PyTorch ``conv2d`` forward + backward at the same shape in NCHW and channels-last,
interleaved, medians.

Run it on an otherwise idle machine: PyTorch's OpenMP threads collapse when another process
holds the cores (a smoke run on a 2-core machine shared with another job measured PyTorch eager
with 2 threads 19× slower than with 1; ``--torch-threads`` sets the count, reported either way).

A candidate whose framework is not installed, or that fails, becomes an ``unavailable`` row.
Writes ``DIR/throughput.json`` and ``DIR/throughput.png``; prints the CPU model, the versions
and the thread counts.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import traceback

import jaxcnn  # noqa: E402

jaxcnn.configure_process(interrupt=False)  # the `jaxcnn` command's allocator setting, before jax starts (every candidate)

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # peer_nets, when imported from elsewhere
import peer_nets  # noqa: E402

from jaxcnn.nn import models  # noqa: E402
from jaxcnn.proof.gradients import MODES  # noqa: E402
from jaxcnn.training import parallel  # noqa: E402
import _timing as bench  # noqa: E402
from jaxcnn.training import loop  # noqa: E402

DATASET = "mnist-sample"
LR = 1e-3
TRAIN_PATH, JIT_STEP = "jaxcnn train path", "jaxcnn jit step"
TORCH, TORCH_COMPILE, NNX, EQUINOX = "pytorch eager", "torch.compile", "flax nnx", "equinox"
CANDIDATES = {"train-path": TRAIN_PATH, "jit-step": JIT_STEP, "torch": TORCH, "torch-compile": TORCH_COMPILE,
              "nnx": NNX, "equinox": EQUINOX}
JAX_PEERS = (NNX, EQUINOX)
CONV_SHAPE = ((26, 26, 32), (3, 3), 64)  # classic/lecture conv2, VALID


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/throughput", help="output directory")
    parser.add_argument("--models", nargs="+", default=list(peer_nets.MODELS), choices=peer_nets.MODELS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per round for classic/lecture (default: the whole epoch of the 5,000 digits)")
    parser.add_argument("--resnet-steps", type=int, default=8, help="steps per round for resnet")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--grads", nargs="+", default=["default"], choices=("default", *MODES),
                        help="gradient modes of the jaxcnn train path (one row each); default: the model's "
                             "own, as jaxcnn train takes it")
    parser.add_argument("--jit-grads", nargs="+", default=["default"], choices=("default", *MODES),
                        help="modes of the jitted loss_and_grad step (one row each); default: the model's own, "
                             "the mode the train path row uses")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own choice, reported)")
    parser.add_argument("--conv-only", action="store_true", help="only the single-conv table")
    parser.add_argument("--no-conv", action="store_true", help="skip the single-conv table")
    args = parser.parse_args(argv)
    for name in ("batch", "rounds", "resnet_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


# ----------------------------------------------------------------------------- versions


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # pylint: disable=broad-except
        return None


def environment(torch_threads=None):
    info = {"cpu": bench.cpu_model(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "jax_backend": jax.default_backend(), "torch": _version("torch"), "flax": _version("flax"),
            "equinox": _version("equinox"), "optax": optax.__version__, "torch_threads": None,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    if info["torch"]:
        import torch  # pylint: disable=import-outside-toplevel

        if torch_threads:
            torch.set_num_threads(torch_threads)
        info["torch_threads"] = torch.get_num_threads()
    return info


def _reason(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 300 else text[:297] + "..."


# ----------------------------------------------------------------------------- data


def train_config(name, batch, steps, grad=None):
    """The ``jaxcnn train`` config of a round: ``steps`` batches of the bundled digits."""
    return loop.TrainConfig(model=name, dataset=DATASET, grad=grad, impl="auto", optimizer="adam", lr=LR,
                            schedule="constant", augment="none", batch_size=batch, epochs=1, seed=0,
                            train_limit=steps * batch, test_limit=batch)


def full_epoch_steps(batch):
    images, _ = loop.load_split(loop.TrainConfig(model="classic", dataset=DATASET).validated(), "train")
    return len(images) // batch


class Data:
    """A round's ``steps`` batches of the train path's subset: NHWC NumPy and device arrays."""

    def __init__(self, config):
        images, labels = loop.load_split(config.validated(), "train")
        steps, batch = len(labels) // config.batch_size, config.batch_size
        images, labels = images[: steps * batch], labels[: steps * batch].astype(np.int32)
        self.steps, self.batch = steps, batch
        self.x = images.reshape(steps, batch, *images.shape[1:])  # (steps, batch, 28, 28, 1)
        self.y = labels.reshape(steps, batch)

    def device_batches(self, layout="nhwc"):
        x = self.x if layout == "nhwc" else np.ascontiguousarray(self.x.transpose(0, 1, 4, 2, 3))
        return [(jax.device_put(x[i]), jax.device_put(self.y[i])) for i in range(self.steps)]


# ----------------------------------------------------------------------------- candidates
# Each builder returns a zero-argument callable that runs one round (``steps`` training steps)
# and returns something to block on.


class _NoBar:
    def update(self, _):
        pass

    def set_postfix(self, **_):
        pass


def train_path_candidate(config):
    """``jaxcnn train``'s epoch: ``loop.prepare`` + ``loop._compile`` + ``loop._train_epoch``."""
    workdir = tempfile.TemporaryDirectory(prefix="jaxcnn-throughput-")  # removed with the candidate
    run = loop.prepare(config, workdir.name, notice=lambda _: None)
    train_chunk, _, chunk, compile_seconds = loop._compile(run)  # pylint: disable=protected-access
    state = dict(run.state)
    _, train_key = jax.random.split(jax.random.wrap_key_data(jnp.asarray(parallel.to_host(state["key"]))))
    held = {"params": state["params"], "opt_state": state["opt_state"],
            "model_state": state.get("model_state"), "epoch": 0, "workdir": workdir}

    def round_():
        held["epoch"] += 1
        epoch = held["epoch"]
        params, opt_state, _, _, model_state = loop._train_epoch(  # pylint: disable=protected-access
            run, train_chunk, chunk, held["params"], held["opt_state"], epoch,
            jax.random.fold_in(train_key, epoch), _NoBar(), held["model_state"])
        held.update(params=params, opt_state=opt_state, model_state=model_state)
        return params

    info = {"steps": run.steps_per_epoch, "chunk": chunk, "calls_per_round": run.steps_per_epoch // chunk,
            "compile_seconds": compile_seconds}
    return round_, info


def initial_params(config):
    """The params (and model state) the train path starts from: ``loop.build_model`` with the config's seed."""
    config = config.validated()
    model, params = loop.build_model(config, peer_nets.INPUT_SHAPE, peer_nets.NUM_CLASSES)
    return model, jax.device_get(params), loop.initial_model_state(model, peer_nets.INPUT_SHAPE)


def jit_step_candidate(name, params, model_state, data, grad="autodiff"):
    """The README quick start's step: ``jax.jit`` of ``loss_and_grad(..., grad=grad)`` + ``optax.adam``, donated."""
    model = models.get_model(name, impl="auto")
    tx = optax.adam(LR)
    stateful = model_state is not None

    if stateful:
        def step(params, opt_state, model_state, x, y):
            loss, grads, model_state = jaxcnn.loss_and_grad(model, params, x, y, grad=grad,
                                                                   state=model_state)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, model_state, loss

        step = jax.jit(step, donate_argnums=(0, 1, 2))
    else:
        def step(params, opt_state, x, y):
            loss, grads, _ = jaxcnn.loss_and_grad(model, params, x, y, grad=grad)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        step = jax.jit(step, donate_argnums=(0, 1))
    params = jax.device_put(params)
    # fresh device copies: the step donates them, and other candidates start from the same values
    model_state = jax.tree.map(jnp.array, model_state)
    held = {"params": params, "opt_state": jax.jit(tx.init)(params), "model_state": model_state}
    batches = data.device_batches("nhwc")

    def round_():
        p, o, s = held["params"], held["opt_state"], held["model_state"]
        for x, y in batches:
            if stateful:
                p, o, s, _ = step(p, o, s, x, y)
            else:
                p, o, _ = step(p, o, x, y)
        held.update(params=p, opt_state=o, model_state=s)
        return p

    return round_, {"steps": data.steps}


def torch_candidate(name, params, data, compiled=False):
    import torch  # pylint: disable=import-outside-toplevel

    net = peer_nets.build("torch", name, params)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    forward = torch.compile(net) if compiled else net
    x = np.ascontiguousarray(data.x.transpose(0, 1, 4, 2, 3))
    batches = [(torch.from_numpy(x[i].copy()), torch.from_numpy(data.y[i].astype(np.int64))) for i in range(data.steps)]

    def round_():
        for xb, yb in batches:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(forward(xb), yb).backward()
            optimizer.step()

    return round_, {"steps": data.steps}


def nnx_candidate(name, params, data):
    from flax import nnx  # pylint: disable=import-outside-toplevel

    net = peer_nets.build("nnx", name, params)
    net.train()
    optimizer = nnx.Optimizer(net, optax.adam(LR), wrt=nnx.Param)

    @nnx.jit(donate_argnums=(0, 1))  # the model's and the optimizer's arrays, as the other JAX candidates
    def step(net, optimizer, x, y):
        def loss_fn(net):
            return optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        optimizer.update(net, grads)
        return loss

    batches = data.device_batches("nhwc")

    def round_():
        loss = None
        for x, y in batches:
            loss = step(net, optimizer, x, y)
        return loss

    return round_, {"steps": data.steps}


def equinox_candidate(name, params, data):
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    net, state = peer_nets.build("equinox", name, params)
    tx = optax.adam(LR)
    opt_state = tx.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit(donate="all-except-first")
    def step(batch, net, state, opt_state):
        x, y = batch

        def loss_fn(net):
            logits, new_state = peer_nets.equinox_logits(net, state, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

        (loss, new_state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(net)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), new_state, opt_state, loss

    held = {"net": net, "state": state, "opt_state": opt_state}
    batches = data.device_batches("nchw")

    def round_():
        n, s, o = held["net"], held["state"], held["opt_state"]
        for batch in batches:
            n, s, o, _ = step(batch, n, s, o)
        held.update(net=n, state=s, opt_state=o)
        return eqx.filter(n, eqx.is_array)

    return round_, {"steps": data.steps}


# ----------------------------------------------------------------------------- timing


def interleaved(candidates: dict, rounds: int):
    """``candidates``: name -> round callable. One warm-up call each (a failure there makes the
    candidate unavailable), then ``rounds`` interleaved timed calls (``bench.interleaved_times``).
    Returns name -> dict with ``first_seconds`` and ``seconds`` (every timed round), or ``unavailable``."""
    results, live = {}, {}
    for name, fn in candidates.items():
        start = time.perf_counter()
        try:
            jax.block_until_ready(fn())
        except Exception as error:  # pylint: disable=broad-except
            results[name] = {"unavailable": _reason(error)}
            traceback.print_exc(limit=3, file=sys.stderr)
            continue
        results[name] = {"first_seconds": time.perf_counter() - start}
        live[name] = fn
    for name, seconds in bench.interleaved_times(live, rounds, warm_up=False).items():
        results[name]["seconds"] = seconds
    return results


# ----------------------------------------------------------------------------- one model


def model_table(name, args, steps):
    """Builds every requested candidate of ``name``, times them interleaved, returns the rows."""
    wanted = {CANDIDATES[c] for c in args.candidates}
    config = train_config(name, args.batch, steps)
    data = Data(config)
    builders = {}
    _, params, model_state = initial_params(config)
    if TRAIN_PATH in wanted:
        for grad in dict.fromkeys(loop.default_grad(name) if g == "default" else g for g in args.grads):
            # the row of the model's default mode is the train path as `jaxcnn train` runs it
            label = TRAIN_PATH if grad == loop.default_grad(name) else f"{TRAIN_PATH} ({grad})"
            builders[label] = lambda grad=grad: train_path_candidate(train_config(name, args.batch, steps, grad))
    if JIT_STEP in wanted:
        for grad in dict.fromkeys(loop.default_grad(name) if g == "default" else g for g in args.jit_grads):
            # the row of the model's default mode is the step a user writes to match `jaxcnn train`
            label = JIT_STEP if grad == loop.default_grad(name) else f"{JIT_STEP} ({grad})"
            builders[label] = lambda grad=grad: jit_step_candidate(name, params, model_state, data, grad)
    if TORCH in wanted:
        builders[TORCH] = lambda: torch_candidate(name, params, data)
    if TORCH_COMPILE in wanted:
        builders[TORCH_COMPILE] = lambda: torch_candidate(name, params, data, compiled=True)
    if NNX in wanted:
        builders[NNX] = lambda: nnx_candidate(name, params, data)
    if EQUINOX in wanted:
        builders[EQUINOX] = lambda: equinox_candidate(name, params, data)

    candidates, infos, unavailable = {}, {}, {}
    for label, build in builders.items():
        start = time.perf_counter()
        try:
            candidates[label], infos[label] = build()
            infos[label]["setup_seconds"] = time.perf_counter() - start
        except Exception as error:  # pylint: disable=broad-except
            unavailable[label] = _reason(error)
            traceback.print_exc(limit=3, file=sys.stderr)
    timed = interleaved(candidates, args.rounds)
    rows = []
    for label in builders:
        row = {"model": name, "candidate": label, "batch": args.batch, "steps": data.steps}
        result = timed.get(label, {"unavailable": unavailable.get(label)})
        if "unavailable" in result:
            row["unavailable"] = result["unavailable"]
        else:
            median = statistics.median(result["seconds"])
            row.update(infos[label])
            row.update(round_seconds=result["seconds"], median_round_seconds=median,
                       images_per_second=data.steps * args.batch / median, ms_per_step=1e3 * median / data.steps,
                       first_round_seconds=result["first_seconds"],
                       ready_seconds=infos[label]["setup_seconds"] + result["first_seconds"])
        rows.append(row)
    rates = {r["candidate"]: r["images_per_second"] for r in rows if "images_per_second" in r}
    jax_peers = [rates[c] for c in JAX_PEERS if c in rates]
    for row in rows:
        if "images_per_second" in row:
            row["vs_pytorch_eager"] = row["images_per_second"] / rates[TORCH] if TORCH in rates else None
            row["vs_fastest_jax_peer"] = row["images_per_second"] / max(jax_peers) if jax_peers else None
    summary = {"model": name, "steps": data.steps, "batch": args.batch, "rows": rows,
               "fastest_jax_peer": max((c for c in JAX_PEERS if c in rates), key=rates.get, default=None)}
    if TRAIN_PATH in rates and JIT_STEP in rates:
        summary["jit_step_over_train_path"] = rates[TRAIN_PATH] / rates[JIT_STEP]  # = time(jit) / time(path)
    return summary


def _ratio(value):
    return f"{value:7.2f}" if value is not None else "      -"


def print_model(summary):
    print(f"\n{summary['model']}: {summary['steps']} steps of {summary['batch']} per round, median over rounds")
    print(f"{'candidate':34s} {'img/s':>9s} {'ms/step':>9s} {'×pytorch':>9s} {'×JAX peer':>10s} {'ready s':>8s}")
    for row in summary["rows"]:
        if "unavailable" in row:
            print(f"{row['candidate']:34s} unavailable: {row['unavailable']}")
            continue
        print(f"{row['candidate']:34s} {row['images_per_second']:9.1f} {row['ms_per_step']:9.2f} "
              f"{_ratio(row['vs_pytorch_eager']):>9s} {_ratio(row['vs_fastest_jax_peer']):>10s} "
              f"{row['ready_seconds']:8.1f}")
    print("(ready s: seconds to build, compile and run the warm-up round: compilation included)")
    if summary.get("fastest_jax_peer"):
        print(f"(×JAX peer: against {summary['fastest_jax_peer']}, the faster of {' and '.join(JAX_PEERS)})")
    if "jit_step_over_train_path" in summary:
        print(f"jit step / train path = {summary['jit_step_over_train_path']:.2f} "
              "(seconds per round; above 1: the compiled epoch path is faster)")


# ----------------------------------------------------------------------------- one conv


def conv_table(batch, rounds, with_torch=True):
    """``jaxcnn.conv(impl="auto")`` fwd+bwd vs PyTorch ``conv2d`` fwd+bwd (NCHW, channels-last)."""
    from jaxcnn.ops.convolution import conv_config, resolve_impl  # pylint: disable=import-outside-toplevel

    spatial, window, out_channels = CONV_SHAPE
    x = jax.random.normal(jax.random.key(0), (batch, *spatial), jnp.float32)
    w = 0.1 * jax.random.normal(jax.random.key(1), (*window, spatial[-1], out_channels), jnp.float32)
    out_spatial = tuple(n - k + 1 for n, k in zip(spatial[:2], window))
    ct = jax.random.normal(jax.random.key(2), (batch, *out_spatial, out_channels), jnp.float32)
    config = conv_config(x.shape, w.shape, stride=1, padding="VALID", dilation=1, groups=1)
    resolved = resolve_impl("auto", x.shape, w.shape, config, jax.default_backend(), dtype=x.dtype)
    by_hand = resolve_impl("auto", x.shape, w.shape, config, jax.default_backend(), dtype=x.dtype,
                           manual=True)
    candidates = {}
    for grad, impl in (("autodiff", resolved), ("manual", by_hand)):
        both = jax.jit(jax.grad(lambda x, w, grad=grad: jnp.sum(jaxcnn.conv(x, w, impl="auto", grad=grad) * ct),
                                argnums=(0, 1)))
        candidates[f"jaxcnn.conv auto→{impl} {grad} (NHWC)"] = lambda both=both: both(x, w)
    unavailable = {}
    if with_torch:
        try:
            import torch  # pylint: disable=import-outside-toplevel

            def torch_pair(channels_last):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).to(memory_format=fmt)
                wt = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).to(memory_format=fmt)
                ctt = torch.from_numpy(np.asarray(ct).transpose(0, 3, 1, 2).copy()).to(memory_format=fmt)
                xt.requires_grad_(True), wt.requires_grad_(True)

                def run():
                    xt.grad, wt.grad = None, None
                    torch.nn.functional.conv2d(xt, wt).backward(ctt)

                return run

            candidates["pytorch conv2d (NCHW)"] = torch_pair(False)
            candidates["pytorch conv2d (channels-last)"] = torch_pair(True)
        except Exception as error:  # pylint: disable=broad-except
            unavailable["pytorch conv2d"] = _reason(error)
    timed = interleaved(candidates, rounds)
    reference = next(iter(candidates))
    rows = []
    for label, result in timed.items():
        if "unavailable" in result:
            rows.append({"candidate": label, "unavailable": result["unavailable"]})
            continue
        rows.append({"candidate": label, "ms": 1e3 * statistics.median(result["seconds"]),
                     "round_seconds": result["seconds"]})
    rows += [{"candidate": k, "unavailable": v} for k, v in unavailable.items()]
    base = next((r["ms"] for r in rows if r["candidate"] == reference and "ms" in r), None)
    for row in rows:
        if "ms" in row and base:
            row["vs_jaxcnn"] = base / row["ms"]
    return {"shape": f"{batch}x26x26x32 -> 64, 3x3 VALID", "batch": batch, "resolves_to": resolved,
            "hand_rule_resolves_to": by_hand, "rows": rows}


def print_conv(table):
    print(f"\nsingle conv fwd+bwd, {table['shape']}, median over rounds")
    print(f"{'candidate':44s} {'ms':>9s} {'×jaxcnn':>8s}")
    for row in table["rows"]:
        if "unavailable" in row:
            print(f"{row['candidate']:44s} unavailable: {row['unavailable']}")
        else:
            print(f"{row['candidate']:44s} {row['ms']:9.2f} {row.get('vs_jaxcnn', 0):8.2f}")
    print("(×jaxcnn: the first row's time / this row's; above 1 the row is faster; autodiff = jax.grad of the "
          "forward, manual = grad=\"manual\", the hand rule)")


# ----------------------------------------------------------------------------- plot


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

    panels = list(result["models"].values()) + ([result["conv"]] if result.get("conv") else [])
    figure = Figure(figsize=(4.5 * max(len(panels), 1), 4.2))
    for index, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, max(len(panels), 1), index)
        rows = panel["rows"]
        is_conv = "model" not in panel
        values = [r.get("ms" if is_conv else "images_per_second", 0.0) for r in rows]
        colors = ["tab:blue" if r["candidate"].startswith("jaxcnn") else "tab:gray" for r in rows]
        axes.barh(range(len(rows)), values, color=colors)
        for position, row in enumerate(rows):
            if "unavailable" in row:
                axes.text(0, position, " unavailable", va="center", fontsize=7, color="tab:red")
        axes.set_yticks(range(len(rows)), [r["candidate"] for r in rows], fontsize=7)
        axes.invert_yaxis()
        if is_conv:
            axes.set_title(f"one conv fwd+bwd\n{panel['shape']}", fontsize=8)
            axes.set_xlabel("ms (lower is better)")
        else:
            axes.set_title(f"{panel['model']}: batch {panel['batch']}, {panel['steps']} steps/round", fontsize=8)
            axes.set_xlabel("training images/s (median)")
    figure.suptitle(f"{result['environment']['cpu']}, jax {result['environment']['jax']}", fontsize=8)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))


# ----------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.torch_threads)
    print(f"CPU {env['cpu']} ({env['cpu_count']} logical CPUs), backend {env['jax_backend']}")
    print(f"jax {env['jax']}, torch {env['torch']} ({env['torch_threads']} threads), flax {env['flax']}, "
          f"equinox {env['equinox']}, optax {env['optax']}")
    result = {"environment": env, "args": vars(args), "models": {}, "conv": None}
    if not args.conv_only:
        full = full_epoch_steps(args.batch)
        for name in args.models:
            steps = args.resnet_steps if name == "resnet" else (args.steps or full)
            if steps > full:
                raise SystemExit(f"--steps {steps} exceeds the {full} batches of {args.batch} in {DATASET}")
            summary = model_table(name, args, steps)
            print_model(summary)
            result["models"][name] = summary
    if args.conv_only or not args.no_conv:
        result["conv"] = conv_table(args.batch, args.rounds, with_torch=env["torch"] is not None)
        print_conv(result["conv"])
    (out / "throughput.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "throughput.png")
    print(f"\nwrote {out / 'throughput.json'} and {out / 'throughput.png'}")
    return result


if __name__ == "__main__":
    main()
