"""One network trained in each gradient mode, side by side, from the same init.

The three modes of :func:`jaxcnn.proof.gradients.loss_and_grad` compute one gradient in three
orders of floating-point operations (autodiff's, the hand rules', the explicit sweep's). Each
rounds differently, by about one unit in the last place of the working precision, and
training feeds every step's parameters into the next step, so the differences are carried
forward and can grow. :func:`train_modes` measures how far apart the modes end up: it trains
``config``'s network once per mode, in memory (nothing is written), with the keys, data and
compiled epoch program of :func:`jaxcnn.training.loop.train_and_evaluate` (the data, init
and optimizer of :func:`jaxcnn.training.loop.build`, init key ``split(key(seed))[0]``, epoch ``e``
keyed by ``fold_in(split(key(seed))[1], e)``), and after
every epoch takes the largest parameter difference between the first mode and each other one:

.. math::
   d_e(m) = \\max_{\\text{leaves}} \\max_i \\left| \\theta^{(e)}_{\\text{autodiff}, i}
   - \\theta^{(e)}_{m, i} \\right|

``dtype="float64"`` runs the same in 64-bit floats (params, optimizer state and images), the
contrast: there one unit in the last place is about 2⁻⁵³ instead of 2⁻²⁴.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.proof import gradients
from jaxcnn.training import parallel
from jaxcnn.training import loop
from jaxcnn.training.steps import batch_for_eval, lax_conv_on_cpu, make_evaluate, make_train_chunk, plan_epoch

DTYPES = ("float32", "float64")


def _check(modes, dtype) -> tuple:
    modes = tuple(modes)
    if len(modes) < 2 or len(set(modes)) != len(modes) or not set(modes) <= set(gradients.MODES):
        raise ValueError(f"modes must be two or more distinct entries of {gradients.MODES}, got {modes!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return modes


def _copy(tree, dtype):
    """A fresh copy of ``tree`` with its float leaves in ``dtype`` (each mode donates its own buffers)."""
    def leaf(a):
        a = jnp.asarray(a)
        return jnp.array(a, dtype=dtype if jnp.issubdtype(a.dtype, jnp.floating) else a.dtype, copy=True)

    return jax.tree.map(leaf, tree)


def max_difference(reference, other) -> tuple:
    """``(max |a - b|, max |a - b| / max |a|)`` over every leaf of two params pytrees (``a`` from ``reference``)."""
    pairs = zip(jax.tree.leaves(reference), jax.tree.leaves(other))
    absolute, scale = 0.0, 0.0
    for a, b in pairs:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        absolute = max(absolute, float(np.max(np.abs(a - b), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(a), initial=0.0)))
    return absolute, absolute / scale if scale > 0 else absolute


def train_modes(config: "loop.TrainConfig", modes=gradients.MODES, *, dtype: str = "float32", log=None) -> dict:
    """Trains ``config``'s network from one init once per gradient mode, epoch by epoch, side by side.

    Nothing is written to disk. Every epoch of every mode is one or more calls of the compiled
    epoch program (:func:`jaxcnn.training.steps.make_train_chunk`), as in a training run.

    Args:
      config: a :class:`jaxcnn.training.loop.TrainConfig`; its ``grad`` is ignored.
      modes: two or more entries of ``gradients.MODES``; the first is the reference.
      dtype: ``"float32"`` (as training runs) or ``"float64"`` (under ``jax.enable_x64``).
      log: receives one line per epoch (default: none).

    Returns:
      A JSON-serialisable dict: ``config``, ``dtype``, ``modes``, ``steps_per_epoch``,
      ``seconds``; per mode (``"runs"``) the loss of every step (``step_loss``), the mean per
      epoch (``epoch_loss``) and the test loss and accuracy after the last epoch (the params
      evaluated in float32); and per other mode (``"max_param_diff"``,
      ``"max_param_rel_diff"``) the largest absolute and relative parameter difference from
      the reference after epochs 0 (the shared init, 0), 1, ..., ``epochs``.

    Raises:
      ValueError: a bad ``config`` (as :meth:`TrainConfig.validated`), ``modes`` or ``dtype``.
    """
    modes = _check(modes, dtype)
    log = log or (lambda line: None)
    start = time.perf_counter()
    config = loop.resolve_dataset(config.validated(), notice=log)
    built = loop.build(config)  # the data, init and optimizer of a training run of config
    model, params, model_state, tx, steps = built.model, built.params, built.model_state, built.tx, built.steps_per_epoch
    train_images, train_labels, test_images, test_labels = built.data
    shape = train_images.shape[1:]
    model_state = () if model_state is None else model_state
    chunk, unroll = plan_epoch(steps, config.steps_per_call,
                               lax_conv_on_cpu(model, params, (config.batch_size, *shape), model_state))
    test = batch_for_eval(test_images, test_labels, config.eval_batch_size)
    evaluate = make_evaluate(model)
    mesh = parallel.data_mesh()
    train_key = jax.random.split(jax.random.key(config.seed))[1]
    runs = {mode: {"step_loss": [], "epoch_loss": []} for mode in modes}
    absolute = {mode: [0.0] for mode in modes[1:]}
    relative = {mode: [0.0] for mode in modes[1:]}
    with jax.enable_x64(dtype == "float64"):
        images, labels = parallel.put_replicated((np.asarray(train_images, dtype), train_labels), mesh)
        programs = {mode: make_train_chunk(model, tx, grad=mode, augment=config.augment,
                                           batch_size=config.batch_size, steps_per_epoch=steps, chunk=chunk,
                                           unroll=unroll, mesh=mesh) for mode in modes}
        states = {}
        for mode in modes:
            mode_params = _copy(params, dtype)
            states[mode] = (mode_params, jax.jit(tx.init)(mode_params), _copy(model_state, dtype))
        for epoch in range(1, config.epochs + 1):
            epoch_key = jax.random.fold_in(train_key, epoch)
            for mode in modes:
                mode_params, opt_state, mode_state = states[mode]
                losses = []
                for index in range(steps // chunk):
                    mode_params, opt_state, step_losses, _, _, mode_state = programs[mode](
                        mode_params, opt_state, images, labels, epoch_key, np.int32(index), mode_state)
                    losses += np.asarray(step_losses, np.float64).tolist()
                states[mode] = (mode_params, opt_state, mode_state)
                runs[mode]["step_loss"] += losses
                runs[mode]["epoch_loss"].append(float(np.mean(losses)))
            for mode in modes[1:]:
                difference = max_difference(states[modes[0]][0], states[mode][0])
                absolute[mode].append(difference[0])
                relative[mode].append(difference[1])
            log(f"{dtype} epoch {epoch}/{config.epochs}: loss " + ", ".join(
                f"{mode} {runs[mode]['epoch_loss'][-1]:.6f}" for mode in modes) + "; max |Δθ| " + ", ".join(
                f"{modes[0]}-{mode} {absolute[mode][-1]:.3g}" for mode in modes[1:]))
        final = {mode: jax.tree.map(lambda a: np.asarray(a, np.float32) if np.issubdtype(np.asarray(a).dtype, np.floating)
                                    else np.asarray(a), (states[mode][0], states[mode][2]))
                 for mode in modes}
    for mode in modes:
        mode_params, mode_state = final[mode]
        loss, correct = evaluate(mode_params, test.images, test.labels, test.mask, mode_state)
        runs[mode]["test_loss"] = float(loss) / test.count
        runs[mode]["test_accuracy"] = int(correct) / test.count
    return {"config": {**dataclasses.asdict(config), "grad": None}, "dtype": dtype, "modes": list(modes),
            "steps_per_epoch": steps, "train_examples": steps * config.batch_size, "test_examples": test.count,
            "runs": runs, "max_param_diff": absolute, "max_param_rel_diff": relative,
            "seconds": time.perf_counter() - start}
