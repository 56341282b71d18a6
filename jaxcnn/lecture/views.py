"""One convolution, five views: window sums (lax, explicit), spectra (fft), Winograd tiles, a matrix.

:func:`compare_views` runs every ``impl`` of :func:`jaxcnn.conv` and the
Toeplitz matrix of :func:`jaxcnn.lecture.toeplitz.conv_matrix` on the same inputs and
reports how far each is from ``impl="lax"`` and how long each takes;
:func:`worked_numbers` recomputes the worked numbers of docs/derivations.md.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops.convolution import conv, conv_config, supported_impls
from jaxcnn.nn.layers import Conv
from jaxcnn.nn.models import lecture_net
from jaxcnn.ops.padding import conv_output_size
from jaxcnn.nn.summaries import layer_rows
from jaxcnn.lecture.toeplitz import conv_matrix, convolve

TOEPLITZ = "toeplitz"


def median_seconds(fn, *args, repeats: int = 5) -> float:
    """Median wall time of ``fn(*args)`` over ``repeats`` runs, after one warm-up (compile) run."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _view_functions(x_shape, w, options):
    """``name -> jitted fn(x, w)`` for every impl that runs this config, and the matrix view (``T`` built once)."""
    config = conv_config(x_shape, w.shape, groups=1, **options)
    views = {
        impl: jax.jit(lambda x, w, impl=impl: conv(x, w, impl=impl, **options))
        for impl in supported_impls(w.shape, config)
        if impl != "hybrid"  # its forward is lax's; only its hand rule differs
    }
    matrix = conv_matrix(w, x_shape[1:], **options)
    out_shape = jax.eval_shape(views["lax"], jax.ShapeDtypeStruct(x_shape, w.dtype), w).shape
    views[TOEPLITZ] = jax.jit(lambda x, w: (x.reshape(x.shape[0], -1) @ matrix.T).reshape(out_shape))
    return views


def compare_views(x, w, *, stride=1, padding="VALID", dilation=1, repeats: int = 5) -> dict:
    """Agreement with ``impl="lax"`` and median time of every view of one convolution.

    Args:
      x: ``(batch, *spatial, C_in)``; w: ``(*window, C_in, C_out)`` (groups = 1,
        which the matrix view requires).
      stride, padding, dilation: as for :func:`jaxcnn.conv`.
      repeats: timed runs per view (after one compile run).

    Returns:
      ``{name: {"max_abs_diff": float, "relative_diff": float, "median_seconds": float}}``
      for ``"lax"``, ``"explicit"``, ``"fft"``, ``"winograd"`` (3×3 windows,
      stride 1, dilation 1 only) and ``"toeplitz"``; ``relative_diff``
      is the difference over ``max |y_lax|``.
    """
    options = dict(stride=stride, padding=padding, dilation=dilation)
    views = _view_functions(x.shape, w, options)
    reference = np.asarray(views["lax"](x, w), np.float64)
    scale = max(float(np.max(np.abs(reference))), np.finfo(np.float64).tiny)
    results = {}
    for name, fn in views.items():
        diff = float(np.max(np.abs(np.asarray(fn(x, w), np.float64) - reference)))
        results[name] = {
            "max_abs_diff": diff,
            "relative_diff": diff / scale,
            "median_seconds": median_seconds(fn, x, w, repeats=repeats),
        }
    return results


VERTICAL_EDGE_PATCH = [[3, 0, 1], [1, 5, 8], [2, 7, 2]]  # the vertical-edge example's window


def worked_numbers() -> dict:
    """The hand-worked numbers of docs/derivations.md, each recomputed by the library.

    Returns:
      A flat dict ``description -> number (or list)``: the output sizes and
      the 280 parameters of ten 3×3×3 filters, 76/760 and 28×28×10,
      the lecture net's layer counts and total, the filter ∗ vector, the
      vertical-edge window sum −5.
    """
    (ten_3x3x3,) = layer_rows(Conv(10, 3), (32, 32, 3))
    (one_5x5x3,) = layer_rows(Conv(1, 5), (32, 32, 3))
    (ten_5x5x3,) = layer_rows(Conv(10, 5), (32, 32, 3))
    lecture = layer_rows(lecture_net(), (28, 28, 1))
    edge = jnp.array([[1.0, 0.0, -1.0]] * 3).reshape(3, 3, 1, 1)
    patch = jnp.array(VERTICAL_EDGE_PATCH, jnp.float32).reshape(1, 3, 3, 1)
    return {
        "(6x6)*(3x3) output": conv_output_size(6, 3),
        "(6x6) p=1 * (3x3) output": conv_output_size(6, 3, padding=1),
        "floor((8-3)/2+1)": conv_output_size(8, 3, stride=2),
        "ten 3x3x3 filters params": ten_3x3x3.params,
        "vertical edge window sum": float(conv(patch, edge)[0, 0, 0, 0]),
        "one 5x5x3 filter params": one_5x5x3.params,
        "ten 5x5x3 filters params": ten_5x5x3.params,
        "32x32x3 through ten 5x5 output": list(ten_5x5x3.output_shape),
        "lecture_net layer params": [row.params for row in lecture if row.params],
        "lecture_net total params": sum(row.params for row in lecture),
        "(2,-1,1,3,1)*(1,1,2,1)": [
            int(v) for v in convolve(jnp.array([2, -1, 1, 3, 1]), jnp.array([1, 1, 2, 1]))
        ],
    }
