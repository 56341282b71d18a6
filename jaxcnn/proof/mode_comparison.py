"""Compares the three gradient modes: parameter by parameter on a batch of digits (the
``check-grads`` command), and as a proof of a whole model (:func:`assert_modes_agree`).

The digits come in as arguments (the CLI passes the bundled MNIST test digits), so the proof
floor does not import the training floor's data loaders.
"""

from __future__ import annotations

from typing import List, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.nn import models
from jaxcnn.nn.protocol import layer_at, path_name
from jaxcnn.ops.losses import softmax_cross_entropy
from jaxcnn.proof import gradients


class Row(NamedTuple):
    """One parameter: autodiff vs manual and autodiff vs backprop.

    ``abs_*`` is ``max|a - b|`` and ``rel_*`` is ``max|a - b| / max|a|``, with
    ``a`` the autodiff gradient.
    """

    layer: int
    name: str
    param: str
    shape: tuple
    abs_manual: float
    rel_manual: float
    abs_backprop: float
    rel_backprop: float


def _differences(reference, other):
    absolute = float(jnp.max(jnp.abs(reference - other)))
    scale = float(jnp.max(jnp.abs(reference)))
    return absolute, absolute / scale if scale > 0 else absolute


CHUNK = 256  # examples per compiled gradient call in compare_modes: memory stays that of one chunk


def mode_gradients(model, params, x, labels, *, state=(), key=None, chunk=None, progress=None) -> dict:
    """``{mode: grads}`` for every mode of ``gradients.MODES``, each under ``jit``.

    With ``state`` or ``key`` the model runs in training mode (batch statistics, dropout with ``key``).

    With ``chunk``, the batch of ``N`` examples runs in slices ``c`` of at most ``chunk``
    examples, and the gradient of the mean loss is the weighted sum of the slices' gradients,
    so memory stays that of one slice however large the batch:

    .. math::
       \\nabla \\frac{1}{N} \\sum_{n=1}^{N} \\ell_n
       = \\sum_c \\frac{N_c}{N} \\, \\nabla \\frac{1}{N_c} \\sum_{n \\in c} \\ell_n

    (with batch statistics, each slice is normalised by its own, as a batch of that size is;
    every slice uses the same dropout ``key``). Every mode gets the same slices and weights.

    Args:
      x: ``(N, *spatial, channels)``; labels: ``(N,)`` ints.
      chunk: the most examples per slice; ``None`` = the whole batch at once.
      progress: called as ``progress(done, N)`` after each slice.
    """
    total = x.shape[0]
    size = total if chunk is None else max(1, min(chunk, total))

    def grads_of(mode):  # the slice is an argument: one compilation per slice shape, no batch-sized constant
        return jax.jit(lambda p, xs, ys: gradients.loss_and_grad(
            model, p, xs, ys, grad=mode, state=state, key=key)[1])

    functions = {mode: grads_of(mode) for mode in gradients.MODES}
    sums = {}
    for start in range(0, total, size):
        xs, ys = x[start:start + size], labels[start:start + size]
        for mode, function in functions.items():
            grads = function(params, xs, ys)
            if size < total:
                weight = xs.shape[0] / total
                grads = jax.tree.map(lambda g, w=weight: g * jnp.asarray(w, g.dtype), grads)
                grads = grads if mode not in sums else jax.tree.map(jnp.add, sums[mode], grads)
            sums[mode] = jax.block_until_ready(grads)
        if progress is not None:
            progress(min(start + size, total), total)
    return sums


DTYPES = ("float32", "float64")


def compare_modes(images, labels, model_name: str = "classic", impl: str = "auto", *, batch: int = 32,
                  seed: int = 0, dtype: str = "float32", chunk: int = CHUNK, progress=None) -> List[Row]:
    """Gradients of ``model_name`` on the first ``batch`` of ``images``/``labels``, compared.

    Models with state or dropout are compared in training mode: batch statistics, and dropout
    active with one fixed key (``fold_in(key(seed), 1)``), the same in every mode.

    Args:
      images: ``(n, *spatial, channels)`` array (the CLI passes the bundled MNIST test digits).
      labels: ``(n,)`` integer class labels.
      model_name: a name in ``models.MODELS``, built with ``impl`` and
        initialised from ``jax.random.key(seed)`` for ``images``' shape.
      batch: number of digits (at most ``n``).
      dtype: ``"float32"`` or ``"float64"`` (params, state and images cast to it).
      chunk, progress: as in :func:`mode_gradients`: the batch runs in slices of at most
        ``chunk`` digits (memory bounded for any ``batch``), ``progress(done, batch)`` after each.

    Returns:
      One :class:`Row` per parameter array, in layer order.
    """
    if batch > len(labels):
        raise ValueError(f"batch must be at most {len(labels)}, got {batch}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    with jax.enable_x64(dtype == "float64"):
        model = models.get_model(model_name, impl=impl)
        _, params, state = model.init_with_state(jax.random.key(seed), (-1, *images.shape[1:]))
        params, state = jax.tree.map(lambda a: jnp.asarray(a, dtype), (params, state))
        key = jax.random.fold_in(jax.random.key(seed), 1) if "key" in model.needs else None
        x = jnp.asarray(images[:batch], dtype)
        grads = mode_gradients(model, params, x, jnp.asarray(labels[:batch]),
                               state=state, key=key, chunk=chunk,
                               progress=progress)
        rows = []
        leaves = jax.tree_util.tree_flatten_with_path(grads["autodiff"])[0]
        others = {mode: jax.tree_util.tree_leaves(grads[mode]) for mode in ("manual", "backprop")}
        for number, (path, reference) in enumerate(leaves):
            manual = _differences(reference, others["manual"][number])
            backprop = _differences(reference, others["backprop"][number])
            top = getattr(path[0], "idx", 0) if path else 0
            rows.append(Row(top, layer_at(model, path), path_name(path[1:]), tuple(reference.shape),
                            *manual, *backprop))
    # within one layer (or sub-layer), the kernel ``w`` first, then the rest in name order
    return sorted(rows, key=lambda row: (row.layer, *_kernel_first(row.param)))


def _kernel_first(param: str):
    prefix, _, last = param.rpartition("/")
    return prefix, last != "w", last


def format_rows(rows: List[Row]) -> str:
    """``rows`` as an aligned text table."""
    header = ("layer", "name", "param", "shape", "|auto-manual|", "rel", "|auto-backprop|", "rel")
    table = [header] + [
        (str(r.layer), r.name, r.param, "×".join(map(str, r.shape)), f"{r.abs_manual:.2e}",
         f"{r.rel_manual:.2e}", f"{r.abs_backprop:.2e}", f"{r.rel_backprop:.2e}")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


def assert_modes_agree(model, params, x, labels, *, loss=softmax_cross_entropy, state=(), key=None,
                       rtol=1e-10) -> float:
    """Proves a whole layer or model: loss, gradients and new state agree in the three modes, in float64.

    The way :func:`jaxcnn.testing.assert_hand_rule` proves an op, this proves what a model's
    layers wire together: ``loss_and_grad`` under ``jax.jit`` in ``"autodiff"`` (the oracle:
    JAX differentiates the plain forward), ``"manual"`` (every op's VJP its hand rule) and
    ``"backprop"`` (the explicit sweep through every layer's ``backward``), with float64 on and
    the floating leaves of ``params``, ``state`` and ``x`` cast to float64. A wrong layer rule,
    a combinator that drops a path, or a hand-rule loss that is off shows as a difference.

    It proves only the inputs it is given: one ``params``, one batch, one ``key``. Draw them
    with hypothesis to cover shapes and values, e.g.::

        from hypothesis import given, settings, strategies as st

        @settings(max_examples=10, deadline=None)
        @given(batch=st.integers(1, 4), seed=st.integers(0, 2**16))
        def test_my_model(batch, seed):
            _, params, state = model.init_with_state(jax.random.key(seed), (-1, 8, 8, 1))
            x = jax.random.normal(jax.random.key(seed + 1), (batch, 8, 8, 1))
            labels = jnp.arange(batch) % 3
            jaxcnn.testing.assert_modes_agree(model, params, x, labels, state=state)

    Args:
      model: a :class:`jaxcnn.nn.protocol.Layer`.
      params, state: its params and state (``()`` for a model without state).
      x, labels: a batch and what ``loss`` compares the output with.
      loss: a loss with a hand rule (a :class:`jaxcnn.ops.hand_rule.Op`).
      key: the PRNG key, for a model that draws random numbers in training.
      rtol: the largest difference accepted, relative to each array's largest magnitude.

    Returns:
      The largest relative difference found (``<= rtol``).

    Raises:
      AssertionError: naming the mode, the quantity (``loss``, ``grads``, ``state``), the
        parameter path and the innermost layer it belongs to.
    """
    with jax.enable_x64(True):
        as64 = lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a
        params, state, x = jax.tree.map(as64, (params, state, x))
        labels = jax.tree.map(as64, labels)
        run = jax.jit(lambda p, s, xs, ys: {mode: gradients.loss_and_grad(model, p, xs, ys, grad=mode, loss=loss,
                                                                         state=s, key=key)
                                            for mode in gradients.MODES})
        results = jax.device_get(run(params, state, x, labels))
    worst = 0.0
    reference = results["autodiff"]
    for mode in gradients.MODES[1:]:
        for what, expected, actual in zip(("loss", "grads", "state"), reference, results[mode]):
            expected_leaves = jax.tree_util.tree_flatten_with_path(expected)[0]
            actual_leaves = jax.tree_util.tree_leaves(actual)
            for (path, want), got in zip(expected_leaves, actual_leaves):
                scale = max(float(np.max(np.abs(want))) if np.size(want) else 0.0, np.finfo(np.float64).tiny)
                difference = float(np.max(np.abs(np.asarray(got) - np.asarray(want)))) / scale if np.size(want) else 0.0
                worst = max(worst, difference)
                if not difference <= rtol:
                    where = f" {path_name(path)} (layer {layer_at(model, path)})" if what != "loss" else ""
                    raise AssertionError(
                        f"mode {mode!r} differs from 'autodiff' in {what}{where}: relative difference "
                        f"{difference:.3g} > rtol={rtol:g}")
    return worst
