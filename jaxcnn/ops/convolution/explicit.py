"""``impl="explicit"``: im2col, GEMMs and col2im, no ``lax.conv*`` on any path.

With ``P`` the patch matrix of the padded ``x`` (:func:`patch_matrix`), ``Ȳ = dy.reshape(M, C_out)``
and ``W = w.reshape(K·C_in, C_out)`` (``M = batch·∏out``, ``K = ∏window``; per group otherwise):

.. math::
   Y = P W, \\qquad \\bar{W} = P^{T} \\bar{Y}, \\qquad \\bar{P} = \\bar{Y} W^{T}, \\qquad
   \\bar{x}_{pad}[n, q, i] = \\sum_{(p, k):\\, p·s + t_k·d = q} \\bar{P}[(n, p), k, i]

and ``x̄`` is ``x̄_pad`` with the forward padding cropped off. The last step (col2im,
:func:`jaxcnn.ops.patches.fold_patches`) is the transpose of im2col, i.e. the adjoint of
the convolution's Toeplitz matrix, and it *is* the lecture's rule: substituting
``q − t_k·d = p·s`` gives

.. math::
   \\bar{x}_{pad}[n, q, i] = \\sum_{k, o} \\mathrm{dilate}_s(\\bar{y})[n, q - t_k·d, o] \\; w[t_k, i, o]
   = \\mathrm{corr}\\big(\\mathrm{pad}_{d(f-1)}(\\mathrm{dilate}_s(\\bar{y})),\\,
     \\mathrm{rot}_{180}(w)^{T}\\big)[n, q, i],

the full-padded correlation (kernel dilation ``d``) of the stride-dilated ``ȳ`` with the
rotated, channel-swapped kernel (:func:`~jaxcnn.ops.convolution.transpose_kernel`), which is the
``lax`` impl's rule; padding by ``d(f−1)`` and cropping ``(lo, hi)`` is the corrected
padding of :func:`~jaxcnn.ops.convolution.input_grad_padding` (docs/derivations.md#conv-input-gradient).
Scattering ``ȲWᵀ`` back avoids gathering windows of the padded, dilated ``ȳ``, which
costs ``s^{rank}`` times more memory traffic and multiplies by the inserted zeros.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import patches as patches_lib
from jaxcnn.ops.convolution.config import ConvConfig, is_forward_only, output_spatial

#: Batch chunks whose patch matrix takes at most this many bytes keep each chunk's patches
#: in cache between being built and being multiplied: the explicit forward alone
#: (:func:`~jaxcnn.ops.convolution.forward_only`) and the ``"hybrid"`` impl's kernel gradient run
#: chunk by chunk (BENCHMARKS.md "ResNet-20: ``resnet_levers.py``").
PATCH_CHUNK_BYTES = 5 * 2**19  # 2.5 MiB: 5 examples of 28×28×16, 11 of 14×14×32 at 3×3


def patch_matrix(x, window, config: ConvConfig):
    """im2col: every window of the padded ``x`` as one row of a matrix.

    .. math::
       P[(n, p), (k, c)] = x_{pad}[n, p·s + t_k·d, c]

    Args:
      x: ``(batch, *spatial, C_in)``; window: the kernel's spatial shape.

    Returns:
      ``P`` of shape ``(batch·prod(out), prod(window), C_in)`` (offsets row-major, channels innermost).
    """
    x_padded = patches_lib.pad_spatial(x, config.pairs)
    out = output_spatial(x.shape, window, config)
    patches = patches_lib.extract_patches(x_padded, window, out, config.stride, config.dilation)
    return patches.reshape(-1, *patches.shape[-2:])


def _patch_bytes(x, out, window) -> int:
    """Bytes of one example's patch matrix."""
    return math.prod(out) * math.prod(window) * x.shape[-1] * x.dtype.itemsize


def _over_chunks(fn, chunk_bytes, x, out, window, *arrays):
    """``fn(x, *arrays)`` over batch chunks of at most ``chunk_bytes`` of patches, stacked."""
    chunk = padding_lib.batch_chunk(x.shape[0], _patch_bytes(x, out, window), chunk_bytes)
    return patches_lib.map_batch_chunks(fn, chunk, x, *arrays)


def forward(x, w, config: ConvConfig, *, chunk_bytes=PATCH_CHUNK_BYTES):
    """``Y = P W``: the window-sum view as one GEMM (im2col).

    .. math::
       y[(n, p), g, o] = \\sum_{k, i} P[(n, p), k, g, i] \\; w[k, i, g, o]

    With ``groups == 1`` this is the plain 2-D product ``P.reshape(M, K·C_in) @ W``; with
    groups the group axis is a batch axis of the product. Differentiated, the whole batch
    has one patch matrix, which ``jax.grad`` keeps for ``W̄ = Pᵀ Ȳ``; a forward alone
    (:func:`~jaxcnn.ops.convolution.forward_only`) runs over batch chunks of at most
    ``chunk_bytes`` of patches (``None``: one piece).
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    out = output_spatial(x.shape, window, config)

    def chunk_forward(x_chunk):
        patches = patch_matrix(x_chunk, window, config)
        if groups == 1:
            y = patches.reshape(patches.shape[0], -1) @ w.reshape(-1, cout)
        else:
            grouped = patches.reshape(*patches.shape[:2], groups, cin_g)
            y = jnp.einsum("mkgi,kigo->mgo", grouped, w.reshape(-1, cin_g, groups, cout // groups))
        return y.reshape(x_chunk.shape[0], *out, cout)

    if chunk_bytes is None or not is_forward_only():
        return chunk_forward(x)
    y = _over_chunks(chunk_forward, chunk_bytes, x, out, window)
    return y.reshape(-1, *y.shape[2:])[:x.shape[0]]


def input_grad(dy, x_shape, w, config: ConvConfig):
    """``x̄ = col2im(Ȳ Wᵀ)`` with the forward padding cropped (the module's rule)."""
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    dy_matrix = dy.reshape(-1, cout)
    if groups == 1:
        dpatches = dy_matrix @ w.reshape(-1, cout).T
    else:
        kernel = w.reshape(-1, cin_g, groups, cout // groups)
        dpatches = jnp.einsum("mgo,kigo->mkgi", dy_matrix.reshape(-1, groups, cout // groups), kernel)
    dpatches = dpatches.reshape(*dy.shape[:-1], math.prod(window), groups * cin_g)
    padded = padding_lib.padded_spatial(x_shape[1:-1], config.pairs)
    dx_padded = patches_lib.fold_patches(dpatches, padded, window, config.stride, config.dilation)
    return patches_lib.pad_spatial(dx_padded, [(-lo, -hi) for lo, hi in config.pairs])


def kernel_grad(dy, x, w_shape, config: ConvConfig, *, chunk_bytes=None):
    """``W̄ = Pᵀ Ȳ``: the kernel gradient as GEMMs on the forward's patch matrix.

    .. math::
       \\bar{w}[k, i, g, o] = \\sum_{(n, p)} P[(n, p), k, g, i] \\; \\bar{y}[(n, p), g, o]

    ``chunk_bytes``: ``None`` builds one patch matrix, the forward's (XLA computes it once
    for both); an int sums over batch chunks of at most that many bytes of patches
    (:func:`jaxcnn.ops.patches.map_batch_chunks`; zero-padded examples add 0), for a
    forward that builds no patch matrix (``"hybrid"``).
    """
    rank = len(w_shape) - 2
    window, (cin_g, cout), groups = w_shape[:rank], w_shape[rank:], config.groups

    def chunk_grad(x_chunk, dy_chunk):
        patches = patch_matrix(x_chunk, window, config)
        dy_matrix = dy_chunk.reshape(-1, cout)
        if groups == 1:
            return patches.reshape(patches.shape[0], -1).T @ dy_matrix
        grouped = patches.reshape(*patches.shape[:2], groups, cin_g)
        return jnp.einsum("mkgi,mgo->kigo", grouped, dy_matrix.reshape(-1, groups, cout // groups))

    if chunk_bytes is None:
        return chunk_grad(x, dy).reshape(w_shape)
    return jnp.sum(_over_chunks(chunk_grad, chunk_bytes, x, dy.shape[1:-1], window, dy), axis=0).reshape(w_shape)
