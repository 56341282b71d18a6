"""Winograd's minimal filtering (Lavin & Gray, 2016) for 3-tap and 3×3 convolutions.

F(m, 3) computes ``m`` outputs of a 3-tap correlation from an input tile of
``α = m + 2`` values with ``α`` multiplications instead of ``3m``:

.. math::
   y = A^{T}\\big[(G\\,g) \\odot (B^{T} d)\\big], \\qquad
   Y = A^{T}\\big[(G\\,g\\,G^{T}) \\odot (B^{T} d\\,B)\\big] A \\quad \\text{(2-D, F(m×m, 3×3))}

with ``d`` the input tile, ``g`` the kernel and the constant matrices ``Bᵀ`` (α×α),
``G`` (α×3) and ``Aᵀ`` (m×α) below. A layer applies it to every tile and every
channel pair; the elementwise products over channels become one batched GEMM:

.. math::
   V[k, p, i] = (B^{T} d_{p,i} B)[k], \\quad U[k, i, o] = (G\\,w_{i,o}\\,G^{T})[k], \\quad
   M[k, p, o] = \\sum_i V[k, p, i]\\,U[k, i, o], \\quad Y_{p,o} = A^{T} M[\\cdot, p, o] A

for the ``α^R`` positions ``k`` of a tile (36 for F(4×4, 3×3), 16 for F(2×2, 3×3)),
the ``N·∏T`` tiles ``p`` and the channels ``i → o`` (per group). Tiles are read
with strided slices (tile ``t`` of axis ``k`` starts at ``t·m``; neighbours
overlap by 2), the transforms are unrolled sums of those slices with the
matrices' constant coefficients (zeros skipped), and nothing here calls
``lax.conv*``, forward or backward. Batches whose transformed tiles exceed
:data:`CHUNK_BYTES` run chunk by chunk (``lax.map``) so that ``V`` and ``M``
stay in cache between the transforms and the GEMM.

Which tile, and how accurate. F(4,3) needs 36/16 = 2.25 multiplications per
output against im2col's 9 (4× fewer), F(2,3) 16/4 = 4 (2.25× fewer), but
F(4,3)'s transforms have larger entries (``Bᵀ`` up to 5, ``Aᵀ`` up to 8, ``G``
with 1/6, 1/12, 1/24), which amplify float32 rounding. Measured error, max |err|
over max |exact| against a float64 reference, N(0,1) ``x``, ``w``, ``ȳ``, batch
8, two seeds (forward / dx / dw):

========================  ===========================  ===========================
layer                     F(4×4, 3×3)                  F(2×2, 3×3)
========================  ===========================  ===========================
26×26×32→64 VALID         4.3–5.5e-6 / 3.5–5.2e-6 /    2.4–2.7e-7 / 2.5–2.9e-7 /
                          7.1–8.1e-6                   5.6–6.7e-7
16×16×64→128 SAME         6.2–6.5e-6 / 6.9–9.9e-6 /    3.6–4.5e-7 / 5.1–5.8e-7 /
                          6.3–6.7e-6                   6.2e-7
========================  ===========================  ===========================

against 6.6–9.2e-7 / 1.6–2.9e-7 / 3.3–3.6e-7 for ``impl="explicit"`` (im2col)
and up to 2.5e-6 for ``impl="lax"``'s ``dw`` on the same layers: F(4,3) loses
about one decimal digit, F(2,3) none that matters. So the float32 tests
(``tests/ops/test_winograd.py``) compare F(4,3) against ``impl="lax"`` with
``rtol=5e-5`` (5× the suite's usual float32 ``1e-5`` for conv: the worst
F(4,3) error seen, 1e-5, plus lax's own 2.5e-6, with a 4× margin) and F(2,3)
with ``rtol=1e-5``, and bound the error against float64 by 2e-5 (F(4,3), 2×
the worst measured) and 3e-6 (F(2,3), whose worst was 6.7e-7).
:func:`choose_tile` takes F(2,3) where F(4,3)'s error would matter, for 16-bit
floats (3 significant digits), and where every output axis is ≤ 2 long
(F(4,3)'s whole tiles would compute mostly padding); F(4,3) everywhere else.
Speed (``benchmarks/winograd_bench.py``, BENCHMARKS.md "Winograd"): on the
2-core CPU the F(4,3) forward + hand rule beat im2col by about 3× on
26×26×32→64 at batch 128 and lost with 1–3 input channels; ``jax.grad`` of
the forward is slower than the hand rule (the adjoints of strided slices and
of the chunk loop), and compiling takes about 4× longer, so ``impl="auto"``
does not pick it (its row, :func:`jaxcnn.ops.convolution.winograd_rule`, is off).

The hand rule (:func:`winograd_backward`) stays in the Winograd domain:
``∂L/∂X`` is the same Winograd correlation applied to the fully padded ``ȳ``
with the kernel rotated 180° and in/out channels swapped (docs/derivations.md#conv-input-gradient),
``∂L/∂W`` applies the adjoints ``A``, ``Gᵀ`` of the forward's linear maps to
the cotangent and contracts over tiles.

Arguments arrive normalised as a :class:`jaxcnn.ops.convolution.ConvConfig`; this
module imports nothing from :mod:`jaxcnn.ops.convolution` (which dispatches to it).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import patches as patches_lib

WINDOW = 3  #: the only kernel length the transforms below are built for
#: The convolutions the transforms below compute, in words.
ACCEPTS = ("1-D and 2-D convolutions with window 3 (3 or 3×3), stride 1 and dilation 1 "
           "(any padding, any groups)")


class Transforms(NamedTuple):
    """Lavin & Gray's F(m, 3) matrices, as nested tuples of Python numbers."""

    tile: int  #: ``m``, outputs per tile and axis
    input: Tuple[Tuple[float, ...], ...]  #: ``Bᵀ``, (α, α)
    kernel: Tuple[Tuple[float, ...], ...]  #: ``G``, (α, 3)
    output: Tuple[Tuple[float, ...], ...]  #: ``Aᵀ``, (m, α)


F2_3 = Transforms(
    tile=2,
    input=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    kernel=((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
    output=((1, 1, 1, 0), (0, 1, -1, -1)),
)
F4_3 = Transforms(
    tile=4,
    input=(
        (4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1),
    ),
    kernel=(
        (1 / 4, 0, 0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0, 0, 1),
    ),
    output=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
)
TRANSFORMS = {2: F2_3, 4: F4_3}
TILES = tuple(TRANSFORMS)


def _transposed(matrix):
    return tuple(zip(*matrix))


def _reversed_columns(matrix):
    return tuple(tuple(row[::-1]) for row in matrix)


# ---------------------------------------------------------------- support


def unsupported(w_shape, config) -> str:
    """Why ``impl="winograd"`` cannot run this convolution (``""`` when it can).

    Args:
      w_shape: ``(*window, C_in // groups, C_out)``; config: a normalised
        :class:`jaxcnn.ops.convolution.ConvConfig`.
    """
    rank = len(w_shape) - 2
    window = tuple(w_shape[:rank])
    reasons = []
    if rank not in (1, 2):
        reasons.append(f"{rank}-D kernel")
    if any(f != WINDOW for f in window):
        reasons.append(f"window {window}")
    if any(s != 1 for s in config.stride):
        reasons.append(f"stride {tuple(config.stride)}")
    if any(d != 1 for d in config.dilation):
        reasons.append(f"dilation {tuple(config.dilation)}")
    return ", ".join(reasons)


def check_supported(w_shape, config) -> None:
    """Raises a ValueError naming what ``impl="winograd"`` accepts, if it cannot run this config."""
    reasons = unsupported(w_shape, config)
    if reasons:
        raise ValueError(f'impl="winograd" accepts {ACCEPTS}; got {reasons}; use impl="explicit", '
                         '"lax" or "auto" for this convolution')


def choose_tile(out_spatial: Sequence[int], dtype) -> int:
    """``m`` of F(m, 3): 2 for 16-bit floats or outputs ≤ 2 along every axis, else 4.

    Args:
      out_spatial: the convolution's output spatial shape; dtype: the operands' dtype.
    """
    if jnp.dtype(dtype).itemsize <= 2 or all(n <= F2_3.tile for n in out_spatial):
        return F2_3.tile
    return F4_3.tile


def _transforms(tile, out_spatial, dtype) -> Transforms:
    tile = choose_tile(out_spatial, dtype) if tile is None else tile
    if tile not in TRANSFORMS:
        raise ValueError(f"tile must be one of {TILES} (F(2,3) or F(4,3)) or None, got {tile!r}")
    return TRANSFORMS[tile]


# ------------------------------------------------------------ the transforms


def _combine(matrix, pieces):
    """``[Σ_j matrix[u][j] · pieces[j] for each row u]``; zero coefficients are skipped."""
    rows = []
    for row in matrix:
        total = None
        for coefficient, piece in zip(row, pieces):
            if coefficient == 0:
                continue
            term = piece if coefficient == 1 else -piece if coefficient == -1 else coefficient * piece
            total = term if total is None else total + term
        rows.append(total)
    return rows


def _tile_transform(a, matrix, tiles, step):
    """Applies ``matrix`` to every tile along every spatial axis of ``a`` (strided slices, unrolled sums).

    Tile ``t`` of axis ``k`` is ``a[t·step : t·step + width]`` with ``width`` the
    number of ``matrix``'s columns; for the input transform (``Bᵀ``, width α,
    step m) neighbouring tiles overlap, for the adjoint of the output transform
    (``A``, width m, step m) they do not. Axis by axis, each row of the result
    is a sum of ``width`` strided slices; the ``rows^R`` results are stacked
    once, at the end, so that XLA writes the transformed tiles in one pass.

    Args:
      a: ``(batch, *spatial, C)`` with ``spatial[k] >= (tiles[k] − 1)·step + width``.
      matrix: ``(rows, width)``.

    Returns:
      ``(rows^R, batch, *tiles, C)``, positions row-major: ``out[(u_1, …, u_R), n, t, c] =
      Σ_j ∏_k matrix[u_k][j_k] · a[n, t·step + j, c]``.
    """
    width = len(matrix[0])
    for k, count in enumerate(tiles):
        axis = 2 * k + 1  # k transformed axes in front, then batch, then k tiled axes
        limit = (count - 1) * step + 1
        pieces = [lax.slice_in_dim(a, j, j + limit, step, axis) for j in range(width)]
        a = jnp.stack(_combine(matrix, pieces), axis=k)
    return a.reshape(-1, *a.shape[len(tiles):])


def _untile_transform(product, matrix, rank):
    """Applies ``matrix`` to the tile positions and lays the tiles side by side.

    The adjoint of :func:`_tile_transform` for non-overlapping tiles (``Aᵀ`` here,
    ``A`` there). Position axis by position axis, each output row is a sum of
    ``α`` position slices; the ``rows^R`` blocks are stacked once and moved to
    their places by one transpose (laying them out by nested stacks instead, then
    cropping partial tiles, ran 3–4× slower on XLA:CPU).

    Args:
      product: ``(α^R, batch, *tiles, C)``, positions row-major; matrix: ``(rows, α)``.

    Returns:
      ``(batch, *(tiles[k]·rows), C)``:
      ``out[n, t·rows + i, c] = Σ_u ∏_k matrix[i_k][u_k] · product[u, n, t, c]``.
    """
    alpha, rows = len(matrix[0]), len(matrix)
    blocks = dict(zip(itertools.product(range(alpha), repeat=rank), list(product)))
    for k in range(rank):  # transform axis k of the position index, the others held fixed
        done = {}
        for key in itertools.product(*(range(rows if a < k else alpha) for a in range(rank) if a != k)):
            column = [blocks[(*key[:k], u, *key[k:])] for u in range(alpha)]
            done.update({(*key[:k], i, *key[k:]): y for i, y in enumerate(_combine(matrix, column))})
        blocks = done
    y = jnp.stack([blocks[index] for index in itertools.product(range(rows), repeat=rank)])
    y = y.reshape(*(rows,) * rank, *y.shape[1:])  # (i_1, …, i_R, batch, T_1, …, T_R, C)
    y = y.transpose(rank, *(a for k in range(rank) for a in (rank + 1 + k, k)), 2 * rank + 1)
    return y.reshape(y.shape[0], *(y.shape[1 + 2 * k] * rows for k in range(rank)), y.shape[-1])


def _kernel_transform(w, matrix):
    """``G w Gᵀ`` per channel pair (or any ``matrix`` along every spatial axis of ``w``).

    Args:
      w: ``(*window, C_in // groups, C_out)``; matrix: ``(rows, window)``.

    Returns:
      ``(*(rows,) * R, C_in // groups, C_out)``.
    """
    rank = w.ndim - 2
    for _ in range(rank):
        w = jnp.stack(_combine(matrix, list(w)), axis=rank - 1)
    return w


# ------------------------------------------------------------ the batched GEMM

_SUBSCRIPTS = {
    "forward": "kpgi,kigo->kpgo",  # V (K, P, C_in) · U (K, C_in/g, C_out) -> M (K, P, C_out)
    "input_grad": "kpgo,kigo->kpgi",  # V̄ (K, P, C_out) · U (K, C_in/g, C_out) -> (K, P, C_in)
    "kernel_grad": "kpgi,kpgo->kigo",  # V (K, P, C_in) · M̄ (K, P, C_out) -> Ū (K, C_in/g, C_out)
}


def _positions_gemm(kind, a, b, groups):
    """One GEMM batched over the ``α^R`` tile positions ``k`` and the groups ``g``.

    Every operand's last (channel) axis is split as ``(g, c // g)``, which is how
    ``x``'s channels and ``w``'s output channels are grouped; ``kind`` picks the
    contraction (:data:`_SUBSCRIPTS`): over input channels (forward), over
    output channels (input gradient: the in/out swap of the transposed kernel),
    or over the tiles ``p`` (kernel gradient: the sum over tiles and batch).

    Args:
      kind: ``"forward"``, ``"input_grad"`` or ``"kernel_grad"``.
      a, b: ``(K, ·, C)`` operands as in :data:`_SUBSCRIPTS`; groups: feature groups.

    Returns:
      ``(K, ·, C')`` with the group axis merged back into the channels.
    """
    if groups == 1:  # without the size-1 group axis: XLA:CPU ran that einsum ~5× slower
        return jnp.einsum(_SUBSCRIPTS[kind].replace("g", ""), a, b)
    split = lambda a: a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)
    result = jnp.einsum(_SUBSCRIPTS[kind], split(a), split(b))
    return result.reshape(*result.shape[:-2], -1)


# ------------------------------------------------------------ the correlation


def _out_spatial(x_shape, pairs):
    """Stride-1, window-3 output shape ``n + lo + hi − 2`` (``pairs`` may be negative: a crop)."""
    return tuple(n - WINDOW + 1 for n in padding_lib.padded_spatial(x_shape[1:-1], pairs))


def _tiling(out, pairs, m):
    """``(tiles, pairs')``: ``T = ⌈out / m⌉`` tiles per axis and ``pairs`` grown to whole tiles.

    ``T`` tiles of ``α = m + 2`` inputs, ``m`` apart, cover ``T·m + 2`` inputs,
    so the high side gets ``T·m − out`` more zeros and the last tile is whole.
    """
    tiles = tuple(-(-n // m) for n in out)
    return tiles, tuple((lo, hi + t * m - n) for (lo, hi), t, n in zip(pairs, tiles, out))


#: The transformed tiles of one batch chunk (``V`` and ``M``, ``α^R·∏T·(C_in + C_out)``
#: numbers per example) should fit in about this many bytes, i.e. stay in cache between
#: the transforms and the GEMM; larger batches are processed chunk by chunk (``lax.map``).
#: On the 26×26×32→64 layer at batch 128 this made the forward 2.2× faster (2-core EPYC).
CHUNK_BYTES = 2**23


def _batch_chunk(batch, tiles, alpha, channels, itemsize, chunk_bytes) -> int:
    """Examples per chunk: as many as fit in ``chunk_bytes``, at least 1."""
    return padding_lib.batch_chunk(batch, alpha ** len(tiles) * math.prod(tiles) * channels * itemsize, chunk_bytes)


@jax.custom_jvp
def _with_exact_zeros(y, zero):
    """``y`` with the entries where ``zero`` holds set to exactly 0; its derivative is the identity."""
    return jnp.where(zero, jnp.zeros((), y.dtype), y)


@_with_exact_zeros.defjvp
def _with_exact_zeros_jvp(primals, tangents):
    return _with_exact_zeros(*primals), tangents[0]


def _zero_windows(x_padded, out, groups):
    """Where each group's window is all zeros: ``Z[n, q, g] = ∀ t, i ∈ g: x_pad[n, q + t, i] = 0``."""
    grouped = x_padded.reshape(*x_padded.shape[:-1], groups, -1)
    nonzero = jnp.any(grouped != 0, axis=-1)
    rank = x_padded.ndim - 2
    hit = None
    for window_slice in patches_lib.window_slices(nonzero, (WINDOW,) * rank, out, (1,) * rank, (1,) * rank):
        hit = window_slice if hit is None else hit | window_slice
    return ~hit


def _keep_exact_zeros(y, x_padded, out, groups):
    """``y`` with the outputs of all-zero windows exactly 0, as im2col and ``lax`` leave them.

    Winograd's transforms mix a tile's inputs before the GEMM and unmix them after, so an
    output whose window is all zeros comes out as rounding noise (about 1e-14 in float64 on
    MNIST's background) whenever its tile holds non-zero inputs elsewhere; after a ReLU that
    noise decides whether a gradient passes, so the hand rule would disagree with ``jax.grad``
    of the other impls. The correction only replaces values that are 0 in exact arithmetic,
    and its derivative is the identity, so the map stays the same bilinear function of
    ``(x, w)`` for every derivative (:func:`_with_exact_zeros`).
    """
    zero = _zero_windows(x_padded, out, groups)
    split = y.reshape(*y.shape[:-1], groups, -1)
    return _with_exact_zeros(split, zero[..., None]).reshape(y.shape)


def _correlate(x, u, pairs, groups, transforms: Transforms, kind="forward", *, keep_zeros=True,
               chunk_bytes=CHUNK_BYTES):
    """Stride-1 correlation of ``x`` (padded by ``pairs``) with a transformed kernel ``u``.

    Batches larger than :func:`_batch_chunk` run chunk by chunk (the result is the same).

    Args:
      x: ``(batch, *spatial, C)``.
      u: ``(*(α,) * R, C_in // groups, C_out)``, a kernel through :func:`_kernel_transform`.
      pairs: ``(lo, hi)`` per spatial axis, negative entries crop.
      kind: ``"forward"`` (``C = C_in``, contract input channels) or
        ``"input_grad"`` (``C = C_out``, contract output channels).
      keep_zeros: for ``"forward"``, set the outputs of all-zero windows to exactly 0
        (:func:`_keep_exact_zeros`); the input gradient's outputs are never corrected.
      chunk_bytes: the budget of one batch chunk's transformed tiles (:data:`CHUNK_BYTES`).

    Returns:
      ``(batch, *(n + lo + hi − 2), C')``.
    """
    rank, m = x.ndim - 2, transforms.tile
    out = _out_spatial(x.shape, pairs)
    tiles, grown = _tiling(out, pairs, m)
    u = u.reshape(-1, *u.shape[rank:])

    def correlate(x):
        x_grown = patches_lib.pad_spatial(x, grown)
        v = _tile_transform(x_grown, transforms.input, tiles, m)
        product = _positions_gemm(kind, v.reshape(v.shape[0], -1, v.shape[-1]), u, groups)
        y = _untile_transform(product.reshape(*v.shape[:-1], -1), transforms.output, rank)
        y = y[(slice(None), *(slice(0, n) for n in out))]
        return _keep_exact_zeros(y, x_grown, out, groups) if kind == "forward" and keep_zeros else y

    chunk = _batch_chunk(x.shape[0], tiles, m + 2, u.shape[-2] * groups + u.shape[-1], x.dtype.itemsize, chunk_bytes)
    y = patches_lib.map_batch_chunks(correlate, chunk, x)
    return y.reshape(-1, *y.shape[2:])[: x.shape[0]]


def winograd_forward(x, w, config, *, tile=None, chunk_bytes=CHUNK_BYTES):
    """Cross-correlation by F(m, 3) / F(m×m, 3×3) tiles and one batched GEMM.

    .. math::
       y[n, t·m + j, o] = \\Big(A^{T}\\Big[\\sum_i (G\\,w_{\\cdot, i, o}\\,G^{T}) \\odot
       (B^{T} d_{n, t, i} B)\\Big] A\\Big)[j], \\qquad d_{n,t,i} = x_{pad}[n, t·m : t·m + α, i]

    ``x_pad`` is ``x`` padded by ``config.pairs`` and then on the high side up
    to a whole number of tiles; the outputs past ``n + lo + hi − 2`` are cropped.
    Outputs whose window is all zero (per group) are then set to exactly 0, the
    value every other impl gives them (:func:`_keep_exact_zeros`; with the
    derivative of the uncorrected map, so ``jax.grad`` and the hand rule are
    unchanged):

    .. math::
       y[n, q, o] \\leftarrow 0 \\quad \\text{where} \\quad x_{pad}[n, q + t, i] = 0
       \\;\\; \\forall t \\in \\{0, 1, 2\\}^R,\\ i \\in \\mathrm{group}(o)

    It costs one pass over ``x`` (26×26×32→64 at batch 128, 2-core EPYC: forward
    32.62 → 33.47 ms, forward + hand rule 110.82 → 112.37 ms, one interleaved probe of
    11 rounds).

    Args:
      x: ``(batch, *spatial, C_in)``, spatial rank 1 or 2.
      w: ``(3, C_in // groups, C_out)`` or ``(3, 3, C_in // groups, C_out)``.
      config: normalised ``stride`` (1), ``pairs``, ``dilation`` (1), ``groups``.
      tile: ``m`` (2 or 4), or ``None`` for :func:`choose_tile`.
      chunk_bytes: batch chunks' budget of transformed tiles (:data:`CHUNK_BYTES`).

    Returns:
      ``(batch, *out_spatial, C_out)``.

    Raises:
      ValueError: stride, dilation or window other than 1, 1, 3, or a 3-D kernel.
    """
    check_supported(w.shape, config)
    transforms = _transforms(tile, _out_spatial(x.shape, config.pairs), jnp.result_type(x, w))
    u = _kernel_transform(w, transforms.kernel)
    return _correlate(x, u, config.pairs, config.groups, transforms, chunk_bytes=chunk_bytes)


def winograd_backward(dy, x, w, config, *, tile=None, chunk_bytes=CHUNK_BYTES):
    """Hand rule for :func:`winograd_forward`, in the Winograd domain (docs/derivations.md#conv-input-gradient).

    Input gradient: the lecture's rule, "the output gradient fully padded,
    the kernel flipped 180°", with in/out channels swapped (as in
    ``x̄_j = Σ_i ȳ_i ⋆ W_ij``), computed as a Winograd correlation:

    .. math::
       \\bar{x} = \\mathrm{corr}\\big(\\mathrm{pad}_{(2 - lo,\\, 2 - hi)}(\\bar{y}),\\,
                  \\mathrm{rot}_{180}(w)^{T}\\big), \\qquad
       G\\,\\mathrm{rot}_{180}(g)\\,G^{T} = (GJ)\\,g\\,(GJ)^{T}

    so the rotation is the kernel transform with ``G``'s columns reversed
    (``J`` the exchange matrix) and the channel swap is the GEMM contracting
    ``C_out`` instead of ``C_in``. Padding the forward's ``n + lo + hi − 2``
    outputs by ``2 − lo`` and ``2 − hi`` (full padding ``f − 1 = 2``, less
    the forward's; negative amounts crop) yields exactly ``n`` outputs.

    Kernel gradient: the forward is ``y = crop ∘ Aᵀ(·)A ∘ GEMM_U ∘ Bᵀ(·)B ∘ pad (x)``
    with ``U = G w Gᵀ``; pulling ``ȳ`` back through the adjoint of each linear map,

    .. math::
       \\bar{M}[k, p, o] = (A\\,\\bar{y}_{p, o}\\,A^{T})[k], \\qquad
       \\bar{U}[k, i, o] = \\sum_{p} V[k, p, i]\\,\\bar{M}[k, p, o], \\qquad
       \\bar{w}_{\\cdot, i, o} = G^{T}\\,\\bar{U}[\\cdot, i, o]\\,G

    where ``ȳ_{p,o}`` is the ``m×m`` block of the zero-extended ``ȳ`` under tile
    ``p`` (the adjoint of the crop), ``V`` the forward's input transform and
    the sum over ``p`` runs over every tile of every example.

    Bias: ``b̄ = Σ ȳ`` (in :func:`jaxcnn.ops.convolution.conv_backward`).

    Args:
      dy: ``(batch, *out_spatial, C_out)``.
      x: ``(batch, *spatial, C_in)``; w: ``(*(3,) * R, C_in // groups, C_out)``.
      config, tile, chunk_bytes: as for :func:`winograd_forward`.

    Returns:
      ``(dx, dw)`` shaped like ``x`` and ``w``.
    """
    options = dict(tile=tile, chunk_bytes=chunk_bytes)
    dx = winograd_input_grad(dy, x.shape, w, config, **options)
    return dx.astype(x.dtype), winograd_kernel_grad(dy, x, w.shape, config, **options).astype(w.dtype)


def winograd_input_grad(dy, x_shape, w, config, *, tile=None, chunk_bytes=CHUNK_BYTES):
    """``x̄`` of :func:`winograd_backward`: a Winograd correlation of the fully padded ``ȳ`` with
    the rotated, channel-swapped kernel.

    Returns:
      ``(batch, *spatial, C_in)`` for ``x_shape = (batch, *spatial, C_in)``.
    """
    check_supported(w.shape, config)
    transforms = _transforms(tile, _out_spatial(x_shape, config.pairs), jnp.result_type(dy, w))
    full = tuple((WINDOW - 1 - lo, WINDOW - 1 - hi) for lo, hi in config.pairs)
    rotated = _kernel_transform(w, _reversed_columns(transforms.kernel))
    return _correlate(dy, rotated, full, config.groups, transforms, kind="input_grad", chunk_bytes=chunk_bytes)


def winograd_kernel_grad(dy, x, w_shape, config, *, tile=None, chunk_bytes=CHUNK_BYTES):
    """``w̄ = Gᵀ Ū G`` of :func:`winograd_backward`: ``Ū`` contracts the forward's ``V`` with
    ``M̄ = A ȳ Aᵀ`` over every tile of every example.

    Returns:
      ``w_shape = (*(3,) * R, C_in // groups, C_out)``.
    """
    check_supported(w_shape, config)
    rank, groups = len(w_shape) - 2, config.groups
    out = _out_spatial(x.shape, config.pairs)
    transforms = _transforms(tile, out, jnp.result_type(x, dy))
    m, alpha = transforms.tile, len(transforms.input)
    tiles, grown = _tiling(out, config.pairs, m)

    def kernel_grad(x, dy):  # Ū of one batch chunk
        v = _tile_transform(patches_lib.pad_spatial(x, grown), transforms.input, tiles, m)
        dy_whole = patches_lib.pad_spatial(dy, tuple((0, t * m - n) for t, n in zip(tiles, out)))
        dm = _tile_transform(dy_whole, _transposed(transforms.output), tiles, m)
        return _positions_gemm("kernel_grad", v.reshape(v.shape[0], -1, v.shape[-1]),
                               dm.reshape(dm.shape[0], -1, dm.shape[-1]), groups)

    chunk = _batch_chunk(x.shape[0], tiles, alpha, x.shape[-1] + dy.shape[-1], x.dtype.itemsize, chunk_bytes)
    du = jnp.sum(patches_lib.map_batch_chunks(kernel_grad, chunk, x, dy), axis=0)
    return _kernel_transform(du.reshape(*(alpha,) * rank, *du.shape[1:]), _transposed(transforms.kernel))
