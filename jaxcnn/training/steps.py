"""The compiled pieces of training: an epoch (or a chunk of one) and a masked, batched evaluation.

An epoch shuffles the device-resident data set with ``jax.random.permutation``,
drops the ragged last batch (``N mod batch_size`` examples, a different few each
epoch) and runs as ONE compiled ``lax.scan`` over its batches that donates the
params and optimizer state. Every array is placed on a 1-D ``data`` mesh
(:mod:`jaxcnn.training.parallel`): data and state replicated, each batch sharded.

One exception, chosen by :func:`plan_epoch`: XLA:CPU runs ``lax.conv`` ops whose
dimension numbers are not canonical (the kernel and input gradients) about 20×
slower inside a while-loop body (jax-ml/jax#12868; 3.7 s against 0.19 s per
classic-net step, measured here). When that applies the epoch runs as
``steps_per_epoch / chunk`` calls of one compiled, *unrolled* scan of ``chunk``
batches instead. Evaluation is one compiled ``lax.scan`` over fixed-size,
zero-padded batches with a mask, so every example counts exactly once.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxcnn.ops.convolution import forward_only
from jaxcnn.ops.activations import log_softmax
from jaxcnn.proof import gradients
from jaxcnn.training import augment as augment_lib
from jaxcnn.training import parallel

UNROLLED_CHUNK = 8
# fold_in(epoch_key, DROPOUT_STREAM) keys the epoch's dropout masks, one fold_in per step after it:
# the masks derive from the seed, the epoch and the step, so a resumed run draws the same ones.
DROPOUT_STREAM = 0x0D50


def chunk_size(steps_per_epoch: int, steps_per_call: int) -> int:
    """The largest divisor of ``steps_per_epoch`` that is at most ``steps_per_call``.

    Every chunk then has the same length, so one compiled program runs them all
    (e.g. 40 steps, at most 8 per call: 5 calls of 8; 39 steps: 13 calls of 3).
    """
    return max(d for d in range(1, min(steps_per_epoch, steps_per_call) + 1) if steps_per_epoch % d == 0)


def plan_epoch(steps_per_epoch: int, steps_per_call, loop_penalty: bool):
    """``(chunk, unroll)``: how many batches one compiled call runs, and whether its scan is unrolled.

    Args:
      steps_per_call: the most batches per call; ``None`` = the whole epoch,
        or :data:`UNROLLED_CHUNK` when ``loop_penalty``.
      loop_penalty: the model's convolutions run slowly inside a while loop on
        this backend (``lax`` convolutions on CPU), so the scan is unrolled.
    """
    if steps_per_call is None:
        steps_per_call = UNROLLED_CHUNK if loop_penalty else steps_per_epoch
    return chunk_size(steps_per_epoch, steps_per_call), loop_penalty


def lax_conv_on_cpu(model, params, x_shape, model_state=()) -> bool:
    """Whether ``model.apply`` on a ``x_shape`` batch runs ``lax`` convolutions on the CPU backend
    (``impl="lax"``, or what ``impl="auto"`` resolves to there), i.e. whether :func:`plan_epoch` must unroll."""
    if jax.default_backend() != "cpu":
        return False
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (params, model_state))
    jaxpr = jax.make_jaxpr(lambda p, s, x: model.apply_with_state(p, s, x)[0])(
        *abstract, jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32))
    return "conv_general_dilated" in str(jaxpr)


def _epoch_batches(key, count: int, steps: int, batch_size: int):
    """This epoch's ``(steps, batch_size)`` example indices: a permutation, ragged tail dropped."""
    return jax.random.permutation(key, count)[: steps * batch_size].reshape(steps, batch_size)


def make_train_chunk(model, tx, *, grad: str, augment: str, batch_size: int, steps_per_epoch: int, chunk: int,
                     unroll: bool = False, mesh=None):
    """``train_chunk(params, opt_state, images, labels, epoch_key, index, model_state=())``, jitted.

    Runs batches ``index * chunk ... (index + 1) * chunk - 1`` of the epoch that
    ``epoch_key`` shuffles (``split(epoch_key) = order_key, augment_key``); each
    step augments its batch (``augment``, keyed by ``fold_in(augment_key, step)``),
    takes ``gradients.loss_and_grad`` in ``grad`` mode and applies one update of
    the optax optimizer ``tx``.

    Args:
      model: a :class:`jaxcnn.nn.Layer`; tx: an ``optax.GradientTransformation``.
      chunk: must divide ``steps_per_epoch`` (see :func:`plan_epoch`);
        ``chunk == steps_per_epoch`` makes one call the whole epoch.
      unroll: unroll the scan over the chunk's batches.
      mesh: the ``data`` mesh (default :func:`jaxcnn.training.parallel.data_mesh`); each
        batch's indices, hence its examples, are sharded along it, and the
        returned state, losses and counts are replicated.

    Returns:
      The jitted ``train_chunk``, donating ``params``, ``opt_state`` and
      ``model_state``. Its ``images`` are ``(N, H, W, C)``, ``labels`` ``(N,)``
      ints, ``index`` an int32 scalar, ``model_state`` the model's state (``()``
      for a model without state); it always returns ``(params, opt_state,
      losses, correct, finite, model_state)``: per step the mean batch loss
      ``(chunk,)``, the count of correct predictions ``(chunk,)`` (on the
      augmented batch, before the update) and whether the loss and every
      gradient entry were finite ``(chunk,)``, and the updated states. A model
      with dropout draws step ``t``'s masks from ``fold_in(fold_in(epoch_key,
      DROPOUT_STREAM), t)``.
    """

    mesh = parallel.data_mesh() if mesh is None else mesh
    split_batch = parallel.batch_sharded(mesh)

    random = "key" in model.needs

    def step(images, labels, augment_key, dropout_key, state, inputs):
        params, opt_state, model_state = state
        indices, step_index = inputs
        indices = lax.with_sharding_constraint(indices, split_batch)
        x = augment_lib.augment_batch(augment, jax.random.fold_in(augment_key, step_index), images[indices])
        y = labels[indices]
        key = jax.random.fold_in(dropout_key, step_index) if random else None
        # The logits come out of the differentiated forward itself: a second apply here for the accuracy
        # was not merged with it under autodiff (BENCHMARKS.md, "One forward per step").
        loss, grads, new_state, logits = gradients.loss_grad_and_logits(
            model, params, x, y, grad=grad, state=model_state, key=key)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, new_state), (loss, correct, finite)

    def train_chunk(params, opt_state, images, labels, epoch_key, index, model_state=()):
        order_key, augment_key = jax.random.split(epoch_key)
        dropout_key = jax.random.fold_in(epoch_key, DROPOUT_STREAM)
        batches = _epoch_batches(order_key, images.shape[0], steps_per_epoch, batch_size)
        first = index * chunk
        inputs = (lax.dynamic_slice_in_dim(batches, first, chunk), first + jnp.arange(chunk))
        body = functools.partial(step, images, labels, augment_key, dropout_key)
        (params, opt_state, model_state), per_step = lax.scan(
            body, (params, opt_state, model_state), inputs, unroll=unroll)
        return (params, opt_state, *per_step, model_state)

    return jax.jit(train_chunk, donate_argnums=(0, 1, 6), out_shardings=parallel.replicated(mesh))


class EvalSet(NamedTuple):
    """A split in fixed-size batches: images ``(B, E, H, W, C)``, labels and mask ``(B, E)``."""

    images: jax.Array
    labels: jax.Array
    mask: jax.Array
    count: int


def batch_for_eval(images, labels, batch_size: int) -> EvalSet:
    """Zero-pads ``(N, ...)`` to a multiple of ``min(batch_size, N)``; mask 1 on real examples."""
    count = len(labels)
    size = min(batch_size, count)
    batches = -(-count // size)
    pad = batches * size - count
    images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
    mask = (np.arange(batches * size) < count).astype(np.float32)
    shape = (batches, size)
    return EvalSet(jnp.asarray(images.reshape(*shape, *images.shape[1:])), jnp.asarray(labels.reshape(shape)),
                   jnp.asarray(mask.reshape(shape)), count)


def make_evaluate(model, mesh=None):
    """``evaluate(params, images, labels, mask[, model_state]) -> (loss_sum, correct)``, jitted.

    The model runs in evaluation mode: BatchNorm with its running statistics
    (``model_state``), dropout off, and ``impl="auto"`` convolutions resolved for a
    forward alone (:func:`jaxcnn.ops.convolution.forward_only`).

    Args:
      images: ``(B, E, H, W, C)``; labels, mask: ``(B, E)`` (see :class:`EvalSet`).
      mesh: as in :func:`make_train_chunk`; each batch is sharded along ``data``.

    Returns:
      The summed cross-entropy and the number of correct predictions over the
      examples whose mask is 1.
    """

    mesh = parallel.data_mesh() if mesh is None else mesh

    def batch_totals(params, model_state, totals, batch):
        x, y, mask = batch
        x = lax.with_sharding_constraint(x, parallel.batch_sharded(mesh))
        logits, _ = model.apply_with_state(params, model_state, x, train=False)
        nll = -jnp.take_along_axis(log_softmax(logits), y[:, None], axis=1)[:, 0]
        correct = jnp.sum((jnp.argmax(logits, axis=-1) == y) * (mask > 0))
        return (totals[0] + jnp.sum(nll * mask), totals[1] + correct), None

    def evaluate(params, images, labels, mask, model_state=()):
        start = (jnp.float32(0), jnp.int32(0))
        with forward_only():  # traced inside: "auto" picks the fastest forward (conv.resolve_impl)
            totals, _ = lax.scan(lambda t, b: batch_totals(params, model_state, t, b), start, (images, labels, mask))
        return totals

    return jax.jit(evaluate, out_shardings=parallel.replicated(mesh))
