"""The compiled pieces of training: an epoch chunk and a masked, batched evaluation.

An epoch shuffles the device-resident data set with ``jax.random.permutation``,
drops the ragged last batch (``N mod batch_size`` examples, a different few each
epoch) and runs as ``steps_per_epoch / chunk`` calls of ONE compiled function,
each a ``lax.scan`` over ``chunk`` batches that donates the params and optimizer
state. The scan is unrolled: XLA:CPU runs a convolution whose dimension numbers
are not canonical (the kernel and input gradients) up to 30× slower inside a
while-loop body (jax-ml/jax#12868), and one compile still covers every chunk.
Evaluation is one compiled ``lax.scan`` over fixed-size, zero-padded batches
with a mask, so every example counts exactly once.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxcnn import augment as augment_lib
from jaxcnn import gradients
from jaxcnn.activations import log_softmax


def chunk_size(steps_per_epoch: int, steps_per_call: int) -> int:
    """The largest divisor of ``steps_per_epoch`` that is at most ``steps_per_call``.

    Every chunk then has the same length, so one compiled program runs them all
    (e.g. 40 steps, at most 8 per call: 5 calls of 8; 39 steps: 13 calls of 3).
    """
    return max(d for d in range(1, min(steps_per_epoch, steps_per_call) + 1) if steps_per_epoch % d == 0)


def _epoch_batches(key, count: int, steps: int, batch_size: int):
    """This epoch's ``(steps, batch_size)`` example indices: a permutation, ragged tail dropped."""
    return jax.random.permutation(key, count)[: steps * batch_size].reshape(steps, batch_size)


def make_train_chunk(model, tx, *, grad: str, augment: str, batch_size: int, steps_per_epoch: int, chunk: int):
    """``train_chunk(params, opt_state, images, labels, epoch_key, index)``, jitted.

    Runs batches ``index * chunk ... (index + 1) * chunk - 1`` of the epoch that
    ``epoch_key`` shuffles (``split(epoch_key) = order_key, augment_key``); each
    step augments its batch (``augment``, keyed by ``fold_in(augment_key, step)``),
    takes ``gradients.loss_and_grad`` in ``grad`` mode and applies one update of
    the optax optimizer ``tx``.

    Args:
      model: a :class:`jaxcnn.layers.Layer`; tx: an ``optax.GradientTransformation``.
      chunk: must divide ``steps_per_epoch`` (see :func:`chunk_size`).

    Returns:
      The jitted ``train_chunk``, donating ``params`` and ``opt_state``. Its
      ``images`` are ``(N, H, W, C)``, ``labels`` ``(N,)`` ints, ``index`` an int32
      scalar; it returns ``(params, opt_state, losses, correct)``: the updated
      state, and per step the mean batch loss ``(chunk,)`` and the count of
      correct predictions ``(chunk,)`` (on the augmented batch, before the update).
    """

    def step(images, labels, augment_key, state, inputs):
        params, opt_state = state
        indices, step_index = inputs
        x = augment_lib.augment_batch(augment, jax.random.fold_in(augment_key, step_index), images[indices])
        y = labels[indices]
        loss, grads = gradients.loss_and_grad(model, params, x, y, mode=grad)
        # The same forward as inside loss_and_grad: XLA computes it once (CSE).
        correct = jnp.sum(jnp.argmax(model.apply(params, x), axis=-1) == y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, correct)

    def train_chunk(params, opt_state, images, labels, epoch_key, index):
        order_key, augment_key = jax.random.split(epoch_key)
        batches = _epoch_batches(order_key, images.shape[0], steps_per_epoch, batch_size)
        first = index * chunk
        inputs = (lax.dynamic_slice_in_dim(batches, first, chunk), first + jnp.arange(chunk))
        body = functools.partial(step, images, labels, augment_key)
        (params, opt_state), (losses, correct) = lax.scan(body, (params, opt_state), inputs, unroll=True)
        return params, opt_state, losses, correct

    return jax.jit(train_chunk, donate_argnums=(0, 1))


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


def make_evaluate(model):
    """``evaluate(params, images, labels, mask) -> (loss_sum, correct)``, jitted.

    Args:
      images: ``(B, E, H, W, C)``; labels, mask: ``(B, E)`` (see :class:`EvalSet`).

    Returns:
      The summed cross-entropy and the number of correct predictions over the
      examples whose mask is 1.
    """

    def batch_totals(params, totals, batch):
        x, y, mask = batch
        logits = model.apply(params, x)
        nll = -jnp.take_along_axis(log_softmax(logits), y[:, None], axis=1)[:, 0]
        correct = jnp.sum((jnp.argmax(logits, axis=-1) == y) * (mask > 0))
        return (totals[0] + jnp.sum(nll * mask), totals[1] + correct), None

    def evaluate(params, images, labels, mask):
        start = (jnp.float32(0), jnp.int32(0))
        totals, _ = lax.scan(lambda t, b: batch_totals(params, t, b), start, (images, labels, mask))
        return totals

    return jax.jit(evaluate)
