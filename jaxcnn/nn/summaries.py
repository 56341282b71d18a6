"""Model summaries: every layer's output shape and parameter count, with the formula.

Counts follow one formula style per kind of layer (docs/derivations.md#conv-forward):

- convolution and transposed convolution, ``C_out×(k·k·C_in+1)``: ``C_out`` filters of
  ``k·k·C_in`` weights and one bias each, e.g. ``64×(3·3·32+1)`` = 18,496, ``10×(3·3·3+1)``
  = 280, ``10×(5·5·3+1)`` = 760; ``C_in`` is the kernel's
  input depth, ``C_in / groups`` for grouped convolutions;
- dense, ``in×out+out``, with ``in`` written as the product of the shape that was
  flattened into it, e.g. ``24·24·64×400+400`` = 14,746,000 (a layer
  whose output is its input flattened keeps the factors for the next row);
- any other layer with parameters: the sum of its arrays' sizes.

Shapes are derived with ``jax.eval_shape``, so no parameter is ever allocated.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Sequence

import jax
import numpy as np

from jaxcnn.nn import models as models_lib

__all__ = [
    "summary", "summarize_named", "param_count", "layer_rows",
]

DEFAULT_INPUT_SHAPES = {
    "lecture": models_lib.MNIST_SHAPE[1:],
    "classic": models_lib.MNIST_SHAPE[1:],
    "sequence": (128, 1),
    "classic-dropout": models_lib.MNIST_SHAPE[1:],
    "resnet": models_lib.MNIST_SHAPE[1:],
}


class Row(NamedTuple):
    """One line of a summary: layer name, output shape (no batch), count, formula."""

    name: str
    output_shape: tuple
    params: int
    formula: str


def _size(leaf) -> int:
    shape = getattr(leaf, "shape", None)
    return math.prod(np.shape(leaf) if shape is None else shape)


def param_count(params) -> int:
    """Number of scalars in a params pytree (arrays, ``jax.ShapeDtypeStruct`` or scalar leaves)."""
    return sum(_size(leaf) for leaf in jax.tree_util.tree_leaves(params))


def _product(factors: Sequence[int]) -> str:
    return "·".join(str(f) for f in factors)


def _formula(params, factors: Sequence[int], transposed: bool = False) -> str:
    """The count as its formula writes it; ``factors`` is the layer input's shape (no batch).

    A transposed convolution's kernel is ``(*window, C_out / groups, C_in)`` (the kernel of the conv
    it transposes): ``C_out`` filters of ``k·k·C_in / groups`` weights and one bias each.
    """
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        return ""
    w = params["w"] if isinstance(params, dict) and set(params) in ({"w", "b"}, {"w"}) else None
    if w is not None and len(w.shape) >= 3 and transposed and "b" in params:
        *window, out_per_group, depth = w.shape
        out = params["b"].shape[0]
        return f"{out}×({_product([*window, depth * out_per_group // out])}+1)"
    if w is not None and len(w.shape) >= 3:  # convolution: (*window, C_in / groups, C_out)
        *window, depth, out = w.shape
        if "b" not in params:
            return f"{out}×{_product([*window, depth])}"
        return f"{out}×({_product([*window, depth])}+1)"
    if w is not None and len(w.shape) == 2:  # dense: (in, out)
        fan_in, out = w.shape
        flat = _product(factors) if math.prod(factors) == fan_in else str(fan_in)
        return f"{flat}×{out}+{out}"
    if len(leaves) > 4:  # a composite layer (a residual block): its arrays' count, not each size
        return f"{len(leaves)} arrays"
    return "+".join(str(_size(leaf)) for leaf in leaves)


def _leaves(model):
    """The layers of ``model`` in order, nested ``serial`` models expanded."""
    if not model.layers:
        return [model]
    return [leaf for layer in model.layers for leaf in _leaves(layer)]


def _init_shapes(layer, input_shape):
    """``layer.init`` traced with ``jax.eval_shape``: ``(output_shape, params as shapes)``."""
    shape = {}

    def init(key):
        shape["out"], params = layer.init(key, input_shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    return tuple(shape["out"]), params


def layer_rows(model, input_shape: Sequence[int]) -> List[Row]:
    """One :class:`Row` per layer of ``model`` (nested ``serial`` models are expanded).

    Args:
      model: a :class:`jaxcnn.layers.Layer`, usually built with ``serial``.
      input_shape: ``(*spatial, channels)`` of one example, without the batch.
    """
    rows, shape = [], tuple(input_shape)
    factors = shape  # the last unflattened shape: how the next Dense writes its fan-in
    for layer in _leaves(model):
        output, params = _init_shapes(layer, (-1, *shape))
        shape = output[1:]
        rows.append(Row(layer.name, shape, param_count(params),
                        _formula(params, factors, transposed=layer.name.startswith("ConvTranspose"))))
        flattened = len(shape) == 1 and shape[0] == math.prod(factors)
        factors = factors if flattened else shape
    return rows


def _format_shape(shape) -> str:
    return "×".join(str(n) for n in shape)


def summary(model, input_shape: Sequence[int]) -> str:
    """A table of ``model``'s layers: name, output shape, parameters, formula, then the total.

    Args:
      model: a :class:`jaxcnn.layers.Layer` (e.g. ``jaxcnn.models.lecture_net()``).
      input_shape: ``(*spatial, channels)`` of one example, without the batch,
        e.g. ``(28, 28, 1)``.

    Returns:
      The table as text; for :func:`jaxcnn.nn.models.lecture_net` at ``(28, 28, 1)`` the rows read
      320; 18,496; 14,746,000; 4,010 and the total 14,768,826.
    """
    rows = layer_rows(model, input_shape)
    table = [("layer", "output", "params", "formula")] + [
        (row.name, _format_shape(row.output_shape), f"{row.params:,}", row.formula) for row in rows
    ]
    table.append(("total", "", f"{sum(row.params for row in rows):,}", ""))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = [
        f"{name:<{widths[0]}}  {shape:<{widths[1]}}  {count:>{widths[2]}}  {formula}".rstrip()
        for name, shape, count, formula in table
    ]
    rule = "-" * len(max(lines, key=len))
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def summarize_named(name: str, **kwargs) -> str:
    """:func:`summary` of a named model (:data:`jaxcnn.models.MODELS`) at its default input shape.

    Default inputs: ``(28, 28, 1)`` for ``"lecture"`` and ``"classic"`` (MNIST),
    ``(128, 1)`` for ``"sequence"``; ``kwargs`` go to the model's constructor.
    """
    model = models_lib.get_model(name, **kwargs)
    if name not in DEFAULT_INPUT_SHAPES:
        raise ValueError(
            f"no default input shape for model {name!r}; known: {tuple(DEFAULT_INPUT_SHAPES)}. "
            "Call summary(model, input_shape) instead"
        )
    return summary(model, DEFAULT_INPUT_SHAPES[name])
