"""Convolution as a matrix and as a polynomial product (docs/derivations.md#toeplitz).

A convolution layer is linear in its input, so it is one matrix ``T``: a
Toeplitz matrix in 1-D (``q_{i,j} = q_{i−j}``, constant along diagonals) and a
doubly-block Toeplitz matrix in 2-D. :func:`conv_matrix` builds ``T`` from index
arithmetic alone (which input entry each kernel tap meets at each output
position), never by running a convolution, so it is an independent witness.

:func:`convolve` is the true (flipped) convolution of two signals, the
coefficients of a product of polynomials:

.. math::
   δ_j = \\sum_i α_i \\, β_{j - i}
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxcnn.ops import padding as padding_lib


def _check_input_shape(w_shape, input_shape):
    rank = len(w_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "w must have shape (*window, in_channels, out_channels) with 1-3 spatial dims, "
            f"got shape {tuple(w_shape)}"
        )
    if len(input_shape) != rank + 1 or not all(padding_lib.is_int(n) and n >= 1 for n in input_shape):
        raise ValueError(
            f"input_shape must be (*spatial, in_channels) with {rank} positive spatial sizes to "
            f"match w of shape {tuple(w_shape)}, got {tuple(input_shape)}"
        )
    if w_shape[-2] != input_shape[-1]:
        raise ValueError(
            f"conv_matrix supports groups=1 only: w.shape[-2] must equal the input channels "
            f"{input_shape[-1]}, got w of shape {tuple(w_shape)}"
        )
    return rank


def _tap_indices(spatial, window, out, stride, pairs, dilation):
    """Flat output/input positions and kernel taps of every in-bounds (output, tap) pair.

    Output ``p`` and tap ``t`` read input ``m = p·s + t·d − lo`` (per axis); pairs
    with ``m`` in the padding contribute nothing and are dropped.
    """
    grids = np.meshgrid(*(np.arange(m) for m in out), *(np.arange(f) for f in window), indexing="ij")
    rank = len(spatial)
    positions, taps = grids[:rank], grids[rank:]
    reads = [p * s + t * d - lo for p, t, s, d, (lo, _) in zip(positions, taps, stride, dilation, pairs)]
    inside = np.logical_and.reduce([(m >= 0) & (m < n) for m, n in zip(reads, spatial)])
    flat = lambda index, shape: np.ravel_multi_index([i[inside] for i in index], shape)
    return flat(positions, out), flat(reads, spatial), flat(taps, window)


def conv_matrix(w, input_shape, *, stride=1, padding="VALID", dilation=1):
    """The matrix ``T`` of :func:`jaxcnn.conv` (groups = 1) acting on one example.

    With channels-last arrays flattened row-major,

    .. math::
       T[p·C_{out} + o, \\; m·C_{in} + i] = w[t, i, o] \\quad \\text{where } m = p·s + t·d - lo

    so ``conv(x[None], w, ...).reshape(-1) == T @ x.reshape(-1)``; ``T.T`` is the
    input gradient (the adjoint). In 1-D with one channel ``T[i, j]`` depends on
    ``i·s − j`` only: a Toeplitz matrix, ``q_{i,j} = q_{i−j}`` for ``s = 1`` (docs/derivations.md#toeplitz).

    Args:
      w: ``(*window, C_in, C_out)``, spatial rank 1-3 (no groups).
      input_shape: ``(*spatial, C_in)``, one example without the batch axis.
      stride, padding, dilation: as for :func:`jaxcnn.conv`.

    Returns:
      ``(prod(out_spatial)·C_out, prod(spatial)·C_in)``, dtype of ``w``.

    Raises:
      ValueError: bad shapes, ``w.shape[-2] != C_in`` (grouped kernels are not
        supported), or a window larger than the padded input.
    """
    w = jnp.asarray(w)
    rank = _check_input_shape(w.shape, input_shape)
    spatial, (cin, cout), window = tuple(input_shape[:-1]), w.shape[-2:], w.shape[:rank]
    stride = padding_lib.normalize_tuple(stride, rank, "stride")
    dilation = padding_lib.normalize_tuple(dilation, rank, "dilation")
    pairs = padding_lib.normalize_padding(padding, spatial, window, stride, dilation)
    out = padding_lib.output_spatial(spatial, window, pairs, stride, dilation, name="kernel window")
    positions, reads, taps = _tap_indices(spatial, window, out, stride, pairs, dilation)
    entries = (len(taps), cin, cout)
    rows = np.broadcast_to(positions[:, None, None] * cout + np.arange(cout), entries)
    cols = np.broadcast_to(reads[:, None, None] * cin + np.arange(cin)[:, None], entries)
    values = w.reshape(-1, cin, cout)[taps]
    matrix = jnp.zeros((math.prod(out) * cout, math.prod(spatial) * cin), w.dtype)
    return matrix.at[rows.ravel(), cols.ravel()].add(values.ravel())


def convolve(a, v):
    """True convolution of two 1-D to 3-D signals in "full" mode (polynomial product).

    .. math::
       (a * v)_j = \\sum_i a_i \\, v_{j - i}, \\qquad j_k = 0, …, m_k + n_k - 2

    (docs/derivations.md#toeplitz: ``δ_j = Σ α_i β_{j−i}``, a sum of shifted copies of ``v``
    weighted by the entries of ``a``). Every product ``a_i v_k`` is added to the
    output entry ``i + k``; equal to ``numpy.convolve(a, v)`` in 1-D. Differentiable
    and ``jit``-able; commutative.

    Args:
      a: ``(m_1, ..., m_r)``; v: ``(n_1, ..., n_r)``, same rank ``r`` in 1-3.

    Returns:
      ``(m_1 + n_1 − 1, ..., m_r + n_r − 1)``.
    """
    a, v = jnp.asarray(a), jnp.asarray(v)
    if a.ndim != v.ndim or a.ndim not in (1, 2, 3):
        raise ValueError(
            f"convolve expects two arrays of the same rank 1-3, got shapes {a.shape} and {v.shape}"
        )
    if a.size == 0 or v.size == 0:
        raise ValueError(f"convolve expects non-empty arrays, got shapes {a.shape} and {v.shape}")
    full = tuple(m + n - 1 for m, n in zip(a.shape, v.shape))
    i = np.indices(a.shape).reshape(a.ndim, -1, 1)
    k = np.indices(v.shape).reshape(v.ndim, 1, -1)
    target = np.ravel_multi_index(tuple(i + k), full)
    products = jnp.outer(a.reshape(-1), v.reshape(-1))
    result = jnp.zeros(math.prod(full), products.dtype).at[target.ravel()].add(products.ravel())
    return result.reshape(full)
