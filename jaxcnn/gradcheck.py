"""Compares the three gradient modes parameter by parameter on real MNIST digits."""

from __future__ import annotations

from typing import List, NamedTuple

import jax
import jax.numpy as jnp

from jaxcnn import data, gradients, models


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


def mode_gradients(model, params, x, labels) -> dict:
    """``{mode: grads}`` for every mode of ``gradients.MODES``, each under ``jit``."""
    return {
        mode: jax.jit(lambda p, m=mode: gradients.loss_and_grad(model, p, x, labels, mode=m)[1])(params)
        for mode in gradients.MODES
    }


def compare_modes(model_name: str = "classic", impl: str = "auto", *, batch: int = 32, seed: int = 0) -> List[Row]:
    """Gradients of ``model_name`` on the first ``batch`` bundled MNIST test digits, compared.

    Args:
      model_name: a name in ``models.MODELS``, built with ``impl`` and
        initialised from ``jax.random.key(seed)`` for ``(28, 28, 1)`` inputs.
      batch: number of digits (at most 10,000).

    Returns:
      One :class:`Row` per parameter array, in layer order.
    """
    images, labels = data.load(data.SAMPLE_NAME, "test")
    if batch > len(labels):
        raise ValueError(f"batch must be at most {len(labels)}, got {batch}")
    model = models.get_model(model_name, impl=impl)
    _, params = model.init(jax.random.key(seed), (-1, *images.shape[1:]))
    grads = mode_gradients(model, params, jnp.asarray(images[:batch]), jnp.asarray(labels[:batch]))
    rows = []
    for index, (layer, layer_params) in enumerate(zip(model.layers, params)):
        for param in sorted(layer_params, key=lambda k: (k != "w", k)) if isinstance(layer_params, dict) else ():
            reference = grads["autodiff"][index][param]
            manual = _differences(reference, grads["manual"][index][param])
            backprop = _differences(reference, grads["backprop"][index][param])
            rows.append(Row(index, layer.name, param, tuple(reference.shape), *manual, *backprop))
    return rows


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
