"""N-d convolution (cross-correlation), each impl beside its hand-derived backward.

Layout: ``x`` is ``(batch, *spatial, in_channels)``, ``w`` is
``(*window, in_channels // groups, out_channels)``, ``b`` is ``(out_channels,)``,
``y`` is ``(batch, *out_spatial, out_channels)``; spatial rank 1, 2 or 3.

.. math::
   y[n, p, o] = b[o] + \\sum_{t, i} x_{pad}[n, p·s + t·d, g(o)·C_g + i] \\; w[t, i, o]

(docs/derivations.md#conv-forward: the window sum y(i) = Σ_k w(k)·x(i + k), multi-channel
y_{i,t} = Σ_j Σ_τ W_{i,j,τ} x_{j,t+τ}). Four impls compute it: ``"lax"`` with
``lax.conv_general_dilated``, ``"explicit"`` with patches and one GEMM,
``"fft"`` with the convolution theorem (docs/derivations.md#convolution-theorem), and
``"winograd"`` with F(4×4, 3×3)/F(2×2, 3×3) tiles (3-tap/3×3 kernels, stride 1,
dilation 1 only; :mod:`jaxcnn.ops.winograd`), and ``"hybrid"``, ``lax``'s
forward with a hand rule split between ``lax`` (``x̄``) and im2col (``w̄``);
``"auto"`` picks one of them per backend, shape and gradient mode (:func:`resolve_impl`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops import patches as patches_lib
from jaxcnn.ops.fft import fft_backward, fft_forward
from jaxcnn.ops import winograd as winograd_lib

CONCRETE_IMPLS = ("lax", "explicit", "fft", "winograd", "hybrid")
IMPLS = (*CONCRETE_IMPLS, "auto")


class ConvConfig(NamedTuple):
    """Normalised, hashable convolution arguments (static under ``jit``)."""

    stride: Tuple[int, ...]
    pairs: Tuple[Tuple[int, int], ...]
    dilation: Tuple[int, ...]
    groups: int


# ---------------------------------------------------------------- arguments


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def conv_config(x_shape, w_shape, *, stride, padding, dilation, groups) -> ConvConfig:
    """Validates shapes and normalises the convolution arguments once.

    Raises:
      ValueError/TypeError naming the argument: wrong ranks, channel mismatch,
      ``groups`` not dividing the channels, stride/dilation < 1, bad padding, a
      window larger than the padded input.
    """
    rank = len(w_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "w must have shape (*window, in_channels // groups, out_channels) with 1-3 "
            f"spatial dims, got shape {tuple(w_shape)}"
        )
    if len(x_shape) != rank + 2:
        raise ValueError(
            f"x must have shape (batch, *spatial, channels) with {rank} spatial dims to "
            f"match w of shape {tuple(w_shape)}, got x of shape {tuple(x_shape)}"
        )
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    in_channels, out_channels = x_shape[-1], w_shape[-1]
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both x's channels ({in_channels}) and w's "
            f"out_channels ({out_channels})"
        )
    if w_shape[-2] * groups != in_channels:
        raise ValueError(
            f"channel mismatch: x has {in_channels} channels, so w.shape[-2] must be "
            f"in_channels // groups = {in_channels // groups}, got w of shape {tuple(w_shape)}"
        )
    window = tuple(w_shape[:rank])
    stride = padding_lib.normalize_tuple(stride, rank, "stride")
    dilation = padding_lib.normalize_tuple(dilation, rank, "dilation")
    pairs = padding_lib.normalize_padding(padding, x_shape[1:-1], window, stride, dilation)
    padding_lib.output_spatial(x_shape[1:-1], window, pairs, stride, dilation, name="kernel window")
    return ConvConfig(stride, pairs, dilation, int(groups))


def _check_bias(b, out_channels: int):
    if b is not None and tuple(jnp.shape(b)) != (out_channels,):
        raise ValueError(f"b must have shape ({out_channels},) (out_channels), got {jnp.shape(b)}")


def _dims(rank: int):
    spatial = "DHW"[-rank:] if rank > 1 else "W"
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


# ----------------------------------------------------- shared hand-rule pieces


def transpose_kernel(w, groups: int):
    """The kernel of the input gradient: rotated 180° in space, in/out swapped per group.

    .. math::
       w^{T}[t, o, g·C_g + i] = w[f - 1 - t, i, g·C_o + o]

    (docs/derivations.md#conv-input-gradient: "K rotated 180°"; x̄_j = Σ_i ȳ_i ⋆ W_ij swaps the roles
    of input and output channels.)

    Args:
      w: ``(*window, C_in // groups, C_out)``.

    Returns:
      ``(*window, C_out // groups, C_in)``.
    """
    rank = w.ndim - 2
    flipped = w[(slice(None, None, -1),) * rank]
    *window, cin_g, cout = w.shape
    grouped = flipped.reshape(*window, cin_g, groups, cout // groups)
    swapped = jnp.swapaxes(grouped, -1, -3)
    return swapped.reshape(*window, cout // groups, groups * cin_g)


def input_grad_padding(x_shape, window, config: ConvConfig):
    """Padding of the stride-dilated ``dy`` for the input gradient (may be negative).

    "Full" padding ``d(f−1)`` on each side, corrected for the forward padding and
    for the ``r`` trailing rows that the stride never reached:

    .. math::
       lo' = d(f-1) - lo, \\qquad hi' = d(f-1) - hi + r
    """
    result = []
    for n, f, pair, s, d in zip(x_shape[1:-1], window, config.pairs, config.stride, config.dilation):
        r = padding_lib.unreached(n, f, pair, s, d)
        result.append((d * (f - 1) - pair[0], d * (f - 1) - pair[1] + r))
    return tuple(result)


def kernel_grad_padding(x_shape, window, config: ConvConfig):
    """Forward padding with the unreached trailing rows removed (for ``dw``)."""
    return tuple(
        (lo, hi - padding_lib.unreached(n, f, (lo, hi), s, d))
        for n, f, (lo, hi), s, d in zip(x_shape[1:-1], window, config.pairs, config.stride, config.dilation)
    )


# ------------------------------------------------------------------ lax impl


def _lax_forward(x, w, config: ConvConfig):
    rank = w.ndim - 2
    return lax.conv_general_dilated(
        x, w, window_strides=config.stride, padding=config.pairs,
        rhs_dilation=config.dilation, dimension_numbers=_dims(rank),
        feature_group_count=config.groups,
    )


def _lax_input_grad(dy, x, w, config: ConvConfig):
    """``x̄``: the lecture's rule as one ``lax`` correlation (see :func:`_lax_backward`)."""
    rank = w.ndim - 2
    return lax.conv_general_dilated(
        dy, transpose_kernel(w, config.groups), window_strides=(1,) * rank,
        padding=input_grad_padding(x.shape, w.shape[:rank], config), lhs_dilation=config.stride,
        rhs_dilation=config.dilation, dimension_numbers=_dims(rank), feature_group_count=config.groups,
    )


def _lax_backward(dy, x, w, config: ConvConfig):
    """Hand rule with ``lax.conv_general_dilated`` (docs/derivations.md#conv-input-gradient).

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}),\\, \\mathrm{rot}_{180}(w)^{T},\\,
                  \\text{pad } (lo', hi'),\\, \\text{dilation } d)

       \\bar{w}[t, i, o] = \\sum_{n, p} x_{pad}[n, p·s + t·d, i] \\; \\bar{y}[n, p, o]

    ``dilate_s`` inserts ``s − 1`` zeros between entries of ``ȳ`` (``lhs_dilation``);
    ``dw`` is a correlation of the padded ``x`` with the stride-dilated ``ȳ``
    where the batch is the contracted axis (``batch_group_count`` keeps groups apart).
    """
    rank = w.ndim - 2
    window = w.shape[:rank]
    spatial = _dims(rank)[1][:-2]
    dw = lax.conv_general_dilated(
        x, dy, window_strides=config.dilation, padding=kernel_grad_padding(x.shape, window, config),
        rhs_dilation=config.stride, batch_group_count=config.groups,
        dimension_numbers=("C" + spatial + "N", "I" + spatial + "O", spatial + "NC"),
    )
    return _lax_input_grad(dy, x, w, config), dw


# ------------------------------------------------------------- explicit impl


def _patch_matrix(x, window, config: ConvConfig):
    """im2col: every window of the padded ``x`` as one row of a matrix.

    .. math::
       P[(n, p), (k, c)] = x_{pad}[n, p·s + t_k·d, c]

    Args:
      x: ``(batch, *spatial, C_in)``; window: the kernel's spatial shape.

    Returns:
      ``(P, out)``: ``P`` of shape ``(batch·prod(out), prod(window), C_in)``
      (offsets row-major, channels innermost) and the output's spatial shape.
    """
    x_padded = patches_lib.pad_spatial(x, config.pairs)
    out = padding_lib.output_spatial(x.shape[1:-1], window, config.pairs, config.stride, config.dilation)
    patches = patches_lib.extract_patches(x_padded, window, out, config.stride, config.dilation)
    return patches.reshape(-1, *patches.shape[-2:]), out


def _explicit_forward(x, w, config: ConvConfig):
    """Window-sum view as one GEMM (im2col): gather every window, then multiply.

    .. math::
       y[(n, p), g, o] = \\sum_{k, i} P[(n, p), k, g, i] \\; w[k, i, g, o]

    With ``groups == 1`` this is the plain 2-D product
    ``P.reshape(M, K·C_in) @ w.reshape(K·C_in, C_out)`` (``M = batch·prod(out)``,
    ``K = prod(window)``); with groups the group axis is a batch axis of the product.
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    out = padding_lib.output_spatial(x.shape[1:-1], window, config.pairs, config.stride, config.dilation)

    def chunk_forward(x_chunk):
        patches, _ = _patch_matrix(x_chunk, window, config)
        if groups == 1:
            y = patches.reshape(patches.shape[0], -1) @ w.reshape(-1, cout)
        else:
            grouped = patches.reshape(*patches.shape[:2], groups, cin_g)
            y = jnp.einsum("mkgi,kigo->mgo", grouped, w.reshape(-1, cin_g, groups, cout // groups))
        return y.reshape(x_chunk.shape[0], *out, cout)

    if not _FORWARD_ONLY.get():  # differentiated: one patch matrix, which jax.grad keeps for w̄ = Pᵀ Ȳ
        return chunk_forward(x)
    # a forward alone: chunk by chunk, each chunk's patches used while in cache (:data:`PATCH_CHUNK_BYTES`)
    chunk = padding_lib.batch_chunk(x.shape[0], _patch_bytes(x, out, window), PATCH_CHUNK_BYTES)
    y = patches_lib.map_batch_chunks(chunk_forward, chunk, x)
    return y.reshape(-1, *y.shape[2:])[:x.shape[0]]


def _explicit_backward(dy, x, w, config: ConvConfig):
    """Hand rule as two GEMMs and col2im (docs/derivations.md#conv-weight-gradient).

    With ``P`` the forward's patch matrix (:func:`_patch_matrix`),
    ``Ȳ = dy.reshape(M, C_out)`` and ``W = w.reshape(K·C_in, C_out)`` (groups = 1;
    per group otherwise):

    .. math::
       \\bar{W} = P^{T} \\bar{Y}, \\qquad \\bar{P} = \\bar{Y} W^{T}, \\qquad
       \\bar{x}_{pad}[n, q, i] = \\sum_{(p, k):\\, p·s + t_k·d = q} \\bar{P}[(n, p), k, i]

    and ``x̄`` is ``x̄_pad`` with the forward padding cropped off. The last step
    (col2im, :func:`jaxcnn.ops.patches.fold_patches`) is the transpose of im2col,
    i.e. the adjoint of the convolution's Toeplitz matrix, and it *is* the
    lecture's rule: substituting ``q − t_k·d = p·s`` gives

    .. math::
       \\bar{x}_{pad}[n, q, i] = \\sum_{k, o} \\mathrm{dilate}_s(\\bar{y})[n, q - t_k·d, o] \\; w[t_k, i, o]
       = \\mathrm{corr}\\big(\\mathrm{pad}_{d(f-1)}(\\mathrm{dilate}_s(\\bar{y})),\\,
         \\mathrm{rot}_{180}(w)^{T}\\big)[n, q, i],

    the full-padded correlation (kernel dilation ``d``) of the stride-dilated ``ȳ``
    with the rotated, channel-swapped kernel (:func:`transpose_kernel`), which is
    the ``lax`` impl's rule; padding by ``d(f−1)`` and cropping ``(lo, hi)`` is
    the corrected padding of :func:`input_grad_padding`.
    Scattering ``ȲWᵀ`` back avoids gathering windows of the padded, dilated
    ``ȳ``, which costs ``s^{rank}`` times more memory traffic and multiplies
    by the inserted zeros. ``W̄`` reuses the forward's patches (one GEMM).
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups
    patches_shape = (math.prod(window), x.shape[-1])
    out = padding_lib.output_spatial(x.shape[1:-1], window, config.pairs, config.stride, config.dilation)
    dw = _patch_kernel_grad(x, dy, w, config, chunked=False)
    dy_matrix = dy.reshape(-1, cout)
    if groups == 1:
        dpatches = dy_matrix @ w.reshape(-1, cout).T
    else:
        dy_grouped = dy_matrix.reshape(-1, groups, cout // groups)
        kernel = w.reshape(-1, cin_g, groups, cout // groups)
        dpatches = jnp.einsum("mgo,kigo->mkgi", dy_grouped, kernel)
    dpatches = dpatches.reshape(x.shape[0], *out, *patches_shape)
    padded = padding_lib.padded_spatial(x.shape[1:-1], config.pairs)
    dx_padded = patches_lib.fold_patches(dpatches, padded, window, config.stride, config.dilation)
    dx = patches_lib.pad_spatial(dx_padded, [(-lo, -hi) for lo, hi in config.pairs])
    return dx, dw


#: The hand rule's ``W̄ = Pᵀ Ȳ``, and the explicit forward alone (:func:`forward_only`), run
#: over batch chunks whose patch matrix takes at most this many bytes, so each chunk's
#: patches stay in cache between being built and being multiplied. On ResNet-20's layers
#: at batch 125 (2-core EPYC, inside a rolled scan) this took the 28×28×16→16 kernel
#: gradient from 20–33 to 12–21 ms (BENCHMARKS.md "The hybrid impl").
PATCH_CHUNK_BYTES = 5 * 2**19  # 2.5 MiB: 5 examples of 28×28×16, 11 of 14×14×32 at 3×3


def _patch_bytes(x, out, window) -> int:
    """Bytes of one example's patch matrix."""
    return math.prod(out) * math.prod(window) * x.shape[-1] * x.dtype.itemsize


def _patch_kernel_grad(x, dy, w, config: ConvConfig, *, chunked: bool):
    """``W̄ = Pᵀ Ȳ``: the kernel gradient as GEMMs on the forward's patch matrix.

    .. math::
       \\bar{w}[k, i, g, o] = \\sum_{(n, p)} P[(n, p), k, g, i] \\; \\bar{y}[(n, p), g, o]

    ``chunked``: the sum over ``n`` runs chunk by chunk (:data:`PATCH_CHUNK_BYTES`,
    :func:`jaxcnn.ops.patches.map_batch_chunks`; zero-padded examples add 0). The
    ``"hybrid"`` impl chunks, because its forward builds no patch matrix; the
    ``"explicit"`` hand rule does not, because its one patch matrix is the
    forward's (XLA computes it once for both): chunked, it measured 1.3× slower.
    """
    rank = w.ndim - 2
    window, (cin_g, cout), groups = w.shape[:rank], w.shape[rank:], config.groups

    def chunk_grad(x_chunk, dy_chunk):
        patches, _ = _patch_matrix(x_chunk, window, config)
        dy_matrix = dy_chunk.reshape(-1, cout)
        if groups == 1:
            return patches.reshape(patches.shape[0], -1).T @ dy_matrix
        grouped = patches.reshape(*patches.shape[:2], groups, cin_g)
        return jnp.einsum("mkgi,mgo->kigo", grouped, dy_matrix.reshape(-1, groups, cout // groups))

    if not chunked:
        return chunk_grad(x, dy).reshape(w.shape)
    chunk = padding_lib.batch_chunk(x.shape[0], _patch_bytes(x, dy.shape[1:-1], window), PATCH_CHUNK_BYTES)
    return jnp.sum(patches_lib.map_batch_chunks(chunk_grad, chunk, x, dy), axis=0).reshape(w.shape)


# --------------------------------------------------------------- hybrid impl


def _hybrid_backward(dy, x, w, config: ConvConfig):
    """Hand rule split between XLA's convolution and one GEMM (docs/derivations.md#conv-input-gradient).

    The forward is ``lax``'s. ``x̄`` is the lecture's rule, the full-padded ``ȳ``
    correlated with the 180°-rotated, channel-swapped kernel, run as one
    ``lax`` correlation (:func:`_lax_backward`'s first line); ``w̄`` is im2col's
    ``Pᵀ Ȳ`` (:func:`_explicit_backward`):

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{pad}(\\mathrm{dilate}_s(\\bar{y})),\\, \\mathrm{rot}_{180}(w)^{T}),
       \\qquad \\bar{W} = P^{T} \\bar{Y}

    Why: on the CPU, XLA's forward-type convolutions are fast, also inside a
    rolled ``lax.scan``, while its kernel-gradient convolution (the batch as the
    contracted axis) is its slowest op and 4–8× slower again inside a loop
    (jax-ml/jax#12868); im2col's ``Pᵀ Ȳ`` is one GEMM. BENCHMARKS.md "The hybrid
    impl" has the figures.
    """
    return _lax_input_grad(dy, x, w, config), _patch_kernel_grad(x, dy, w, config, chunked=True)


_FORWARD = {"lax": _lax_forward, "explicit": _explicit_forward, "fft": fft_forward,
            "winograd": winograd_lib.winograd_forward, "hybrid": _lax_forward}
_BACKWARD = {"lax": _lax_backward, "explicit": _explicit_backward, "fft": fft_backward,
             "winograd": winograd_lib.winograd_backward, "hybrid": _hybrid_backward}


def supported_impls(w_shape, config: ConvConfig) -> tuple:
    """The entries of :data:`CONCRETE_IMPLS` that can compute this convolution.

    Every impl but ``"winograd"`` accepts every valid config; ``"winograd"``
    needs a 1-D/2-D window of 3 with stride 1 and dilation 1
    (:func:`jaxcnn.ops.winograd.unsupported`).
    """
    winograd = not winograd_lib.unsupported(w_shape, config)
    return tuple(impl for impl in CONCRETE_IMPLS if impl != "winograd" or winograd)


def _check_supported(impl: str, w_shape, config: ConvConfig) -> None:
    if impl == "winograd":
        winograd_lib.check_supported(w_shape, config)


# ------------------------------------------------------------------ "auto"

#: ``"auto"`` falls back to ``"lax"`` when im2col's patch matrix would exceed
#: this many elements (1 GiB of float32): the explicit impl materialises it.
MAX_PATCH_ELEMENTS = 2**28
PADDED_LAX_MIN_CHANNELS = 8
PADDED_LAX_MAX_CHANNELS = 32  # a forward alone: lax up to here, chunked explicit above (7×7×64: 5.2 vs 8.3 ms)
HYBRID_MAX_CHANNELS = 16  # the hand rule: "hybrid" up to here (28×28×16: 25 vs 39–47 ms fwd+bwd), explicit above
#: The Winograd row of the hand rule, off (``None``): with an int ``n``, the hand rule of a 3×3 stride-1
#: ungrouped 2-D conv with >= ``n`` input channels resolves to ``"winograd"`` (see :func:`resolve_impl`
#: for why it is off; ``experiments/step_levers.py --variants winograd`` switches it on to measure it).
WINOGRAD_MIN_CHANNELS = None


def _platform(x) -> str:
    """The platform ``x`` lives on (``"cpu"``, ``"gpu"``, ``"tpu"``, ...).

    A concrete ``jax.Array`` answers with its devices; a tracer (inside ``jit``)
    or a NumPy array with ``jax.default_backend()``, the platform ``jit`` compiles for.
    """
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return next(iter(x.devices())).platform
    return jax.default_backend()


_FORWARD_ONLY = contextvars.ContextVar("jaxcnn_conv_forward_only", default=False)


@contextlib.contextmanager
def forward_only():
    """Within this context ``impl="auto"`` resolves for a forward pass that is not differentiated.

    Evaluation traces its model inside it (``jaxcnn.training.steps.make_evaluate``,
    so ``jaxcnn train``'s per-epoch evaluation and ``jaxcnn eval``): the fastest
    forward alone is not always the forward of the fastest training step
    (:func:`resolve_impl`). The decision is taken at trace time, so enter the
    context *inside* the function that ``jax.jit`` traces. Only speed depends on
    it: every impl computes the same convolution, and a gradient taken inside the
    context is still correct.
    """
    token = _FORWARD_ONLY.set(True)
    try:
        yield
    finally:
        _FORWARD_ONLY.reset(token)


def resolve_impl(impl: str, x_shape, w_shape, config: ConvConfig, platform: str, *, forward_only=None,
                 manual: bool = False) -> str:
    """The concrete impl behind ``impl`` (``"auto"`` is decided here, at trace time).

    Decision table for ``"auto"``, from fwd+bwd medians of
    ``experiments/benchmark.py`` and of grouped/strided/3-D cases timed the same
    way (interleaved, batch 128, float32, 2-core CPU; numbers in BENCHMARKS.md),
    and, for the forward-only row, from whole evaluations:

    ===========  ===========================================================  ==============
    platform     shape / config                                               impl
    ===========  ===========================================================  ==============
    not ``cpu``  any (cuDNN / the TPU's convolution units; not measured)      ``"lax"``
    ``cpu``      patch matrix ``N·∏out·∏f·C_in > MAX_PATCH_ELEMENTS``         ``"lax"``
    ``cpu``      depthwise (``groups == C_in > 1``): a tie, 0.9–1.2×          ``"lax"``
    ``cpu``      *forward only* (:func:`forward_only`): 2-D, padded, stride   ``"lax"``
                 1, dilation 1, ``8 <= C_in <= 32`` (ResNet's 3×3 ``SAME``)
    ``cpu``      *hand rule* (``manual``: ``grad="manual"``,                  ``"hybrid"``
                 :func:`conv_backward`), not forward only: 2-D, padded,
                 stride 1, dilation 1, ``8 <= C_in <= 16``
    ``cpu``      *hand rule*, only if :data:`WINOGRAD_MIN_CHANNELS` is set   ``"winograd"``
                 (off by default): 2-D 3×3, stride 1, dilation 1, ungrouped,
                 ``C_in >=`` it, any padding, not the row above
    ``cpu``      every other case, 1-D/2-D/3-D, any stride/dilation/padding   ``"explicit"``
    ===========  ===========================================================  ==============

    On the CPU the explicit impl's fwd+bwd measured 1.3–7.5× faster than
    ``lax`` for the 2-D shapes of the benchmark (3×3, 1–64 input channels),
    a tie for the 1-D one (0.7–1.1× across runs; ``"explicit"`` keeps the
    epoch a rolled scan), 1.7× for a 3×3×3 3-D conv, 1.2× at stride 2 and 3.4×
    with 4 groups (XLA:CPU's own convolution is slow, above all for its
    gradients). ``"fft"`` is never chosen: it only pays for kernels far larger
    than those measured.

    ``"winograd"`` is never chosen by default. Under ``jax.grad`` its
    differentiated forward was 0.82× ``"explicit"`` (BENCHMARKS.md "Winograd").
    With its hand rule it is the fastest impl here for 3×3 layers with 16–64
    input channels, and a row that gave it the hand rule (switched on by
    :data:`WINOGRAD_MIN_CHANNELS`) made the training chunk under
    ``grad="manual"`` 1.12× (classic), 1.05× (lecture) and 1.06× (ResNet-20)
    faster (BENCHMARKS.md "Winograd in the hand rule"). It stays off because the
    modes would then run different forwards, and the two differ where the
    network is not differentiable. First, exact zeros: an output whose 3×3
    window is all zero (MNIST's background) came out of Winograd's tile
    transforms as rounding noise (on 8 MNIST test digits, 32,406 of the 141,184
    classic conv2 outputs that im2col gives as exactly 0, up to 1e-14 in
    float64), the ReLU after it passed or stopped its gradient by the sign of
    that noise, and conv2's bias gradient differed by 36% between ``manual``
    and ``autodiff`` (``jaxcnn check-grads --model classic-dropout --dtype
    float64``, row on). Winograd's forward now sets those outputs to exactly 0
    (:func:`jaxcnn.ops.winograd.winograd_forward`), and with the row on the
    float64 check passes (classic, 256 digits: 1.26e-15). Second, near-ties in
    max pooling: in float32 Winograd's forward differs from im2col's by about
    5e-6 (relative), which reorders the 2×2 windows' largest values wherever
    they are that close, so the pooled gradient goes to another element:
    ``jaxcnn check-grads --model classic --batch 256`` (float32, row on) gave
    conv2's kernel a 4.76e-04 relative difference against the 1e-4 tolerance
    (3.00e-07 with the row off). ``resolve_impl`` cannot see whether a max
    pool follows a layer, so the row stays off for every net.

    Padded 2-D convolutions (ResNet's): in a training step they stay
    ``"explicit"``. A ResNet-20 training chunk (8 steps, batch 125, AdamW) ran
    718 ms a step all-explicit (a rolled scan) against 1266 ms with ``lax`` for
    these layers (unrolled, because XLA:CPU's convolution gradients are slow
    inside a loop), BENCHMARKS.md "One forward per step". A forward alone is
    another matter: XLA:CPU takes a fast path for a padded convolution, and the
    ResNet-20 evaluation of 10,000 test images took 13.6 s with ``lax`` for them
    against 23.4 s all-explicit, while the classic net's ``VALID`` convolutions
    evaluate faster explicit (5.63 against 6.04 s). So the row applies under
    :func:`forward_only` only, and only up to 32 input channels: an explicit
    forward alone runs chunk by chunk (:data:`PATCH_CHUNK_BYTES`), which made the
    7×7×64 layer 5.2 against lax's 8.3 ms and the whole ResNet evaluation 1.13×
    faster (BENCHMARKS.md "The hybrid impl").

    The hand rule has a row of its own. ``"hybrid"`` (XLA's forward and input
    gradient, im2col's chunked ``Pᵀ Ȳ``, :func:`_hybrid_backward`) took a
    28×28×16→16 layer's forward+hand rule to 24–25 ms against the explicit
    impl's 39 ms under ``jax.grad`` and 47 ms by hand; at 32 and 64 channels it
    lost to the explicit rule. Under ``jax.grad`` it would not pay: the
    derivative of ``lax``'s forward brings XLA's slow kernel-gradient convolution
    back. With it, the ResNet-20 training chunk under ``grad="manual"`` ran 671 ms
    a step against 959 ms under ``"autodiff"`` (0.70×), which is why ``jaxcnn
    train --model resnet`` defaults to ``grad="manual"``.

    Every branch depends only on static shapes, the normalised config, the
    platform, the gradient mode and that context, so the choice is fixed once
    per compilation, and under ``grad="manual"`` a layer's forward and hand rule
    resolve identically. The explicit sweep (``mode="backprop"``) runs
    :func:`conv_forward`, the plain forward resolved as the hand rule, and
    :func:`conv_backward`: the same ops as ``grad="manual"``, without its
    ``custom_vjp``.

    Args:
      impl: one of :data:`IMPLS`; anything but ``"auto"`` is returned unchanged.
      x_shape, w_shape: the operands' shapes; config: from :func:`conv_config`.
      platform: e.g. ``"cpu"`` (see :func:`_platform`).
      forward_only: resolve for an undifferentiated forward; ``None`` = whether
        the caller is inside :func:`forward_only`.
      manual: resolve for the hand rule (``grad="manual"``, :func:`conv_backward`).
    """
    if impl != "auto":
        return impl
    rank = len(w_shape) - 2
    out = padding_lib.output_spatial(x_shape[1:-1], w_shape[:rank], config.pairs, config.stride, config.dilation)
    patch_elements = x_shape[0] * math.prod(out) * math.prod(w_shape[:rank]) * x_shape[-1]
    depthwise = 1 < config.groups == x_shape[-1]
    if platform != "cpu" or patch_elements > MAX_PATCH_ELEMENTS or depthwise:
        return "lax"
    padded = any(lo or hi for lo, hi in config.pairs)
    unit = all(s == 1 for s in config.stride) and all(d == 1 for d in config.dilation)
    forward_only = _FORWARD_ONLY.get() if forward_only is None else forward_only
    resnet_like = rank == 2 and padded and unit and x_shape[-1] >= PADDED_LAX_MIN_CHANNELS
    if resnet_like and forward_only and x_shape[-1] <= PADDED_LAX_MAX_CHANNELS:
        return "lax"
    if resnet_like and manual and x_shape[-1] <= HYBRID_MAX_CHANNELS:  # forward only returned above
        return "hybrid"
    if (WINOGRAD_MIN_CHANNELS is not None and manual and not forward_only and rank == 2 and unit
            and tuple(w_shape[:2]) == (3, 3) and config.groups == 1 and x_shape[-1] >= WINOGRAD_MIN_CHANNELS):
        return "winograd"
    return "explicit"


# ---------------------------------------------------------------- public ops


def _forward(x, w, b, *, impl: str, config: ConvConfig):
    y = _FORWARD[impl](x, w, config)
    return y if b is None else y + b.astype(y.dtype)


def _backward(dy, x, w, b, *, impl: str, config: ConvConfig):
    dx, dw = _BACKWARD[impl](dy, x, w, config)
    db = None if b is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1))).astype(b.dtype)
    return dx, dw, db


_manual_conv = manual.hand_rule(_forward, _backward)


def conv(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto", grad="autodiff"):
    """N-d cross-correlation (the deep-learning "convolution").

    Args:
      x: ``(batch, *spatial, in_channels)``, spatial rank 1-3.
      w: ``(*window, in_channels // groups, out_channels)``.
      b: optional ``(out_channels,)`` bias.
      stride, dilation: int or per-dimension tuple, each >= 1.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int, or ``(lo, hi)`` pairs.
      groups: feature groups; divides in and out channels.
      impl: ``"lax"``, ``"explicit"``, ``"fft"``, ``"winograd"`` (3 or 3×3
        windows, stride 1, dilation 1; a ValueError otherwise), ``"hybrid"``
        (``lax``'s forward; its hand rule computes ``x̄`` with ``lax`` and ``w̄``
        with im2col, so under ``grad="autodiff"`` it is ``"lax"``) or ``"auto"``
        (the fastest measured for this backend, shape and ``grad``, see
        :func:`resolve_impl`).
      grad: ``"autodiff"`` (``jax.grad`` derives the gradient) or ``"manual"``
        (the hand rule :func:`conv_backward` is the VJP).

    Returns:
      ``(batch, *out_spatial, out_channels)`` with ``out`` given by
      :func:`jaxcnn.ops.padding.conv_output_size`.
    """
    _check_impl(impl)
    manual.check_grad(grad)
    impl, config = _resolved(x, w, b, impl, manual=grad == "manual", stride=stride, padding=padding,
                             dilation=dilation, groups=groups)
    op = _manual_conv if grad == "manual" else _forward
    return op(x, w, b, impl=impl, config=config)


def _resolved(x, w, b, impl, *, manual, **options):
    """``(concrete impl, config)`` of a forward call, the bias checked (for :func:`conv`, :func:`conv_forward`)."""
    config = conv_config(jnp.shape(x), jnp.shape(w), **options)
    _check_bias(b, jnp.shape(w)[-1])
    impl = resolve_impl(impl, jnp.shape(x), jnp.shape(w), config, _platform(x), manual=manual)
    _check_supported(impl, jnp.shape(w), config)
    return impl, config


def conv_forward(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto"):
    """The plain forward that pairs with :func:`conv_backward`: :func:`conv` with ``impl`` resolved as for
    the hand rule, differentiated (if ever) by JAX, no ``custom_vjp``.

    It computes with the same ops as the forward of ``conv(..., grad="manual")``, so the explicit sweep
    (``mode="backprop"``), which calls it and then :func:`conv_backward`, runs what ``grad="manual"``
    runs: under ``impl="auto"`` ResNet's padded 16-channel layers get ``"hybrid"``'s forward (XLA's
    convolution) in both, where ``jax.grad``'s resolution would give im2col's. Arguments and result as in
    :func:`conv`.
    """
    _check_impl(impl)
    impl, config = _resolved(x, w, b, impl, manual=True, stride=stride, padding=padding, dilation=dilation,
                             groups=groups)
    return _forward(x, w, b, impl=impl, config=config)


def conv_backward(dy, x, w, *, stride=1, padding="VALID", dilation=1, groups=1, impl="auto"):
    """The hand-derived gradient of :func:`conv` (docs/derivations.md#conv-input-gradient).

    .. math::
       \\bar{x} = \\mathrm{corr}(\\mathrm{dilate}_s(\\bar{y}), \\mathrm{rot}_{180}(w)^{T}), \\quad
       \\bar{w} = \\mathrm{corr}(x_{pad}, \\mathrm{dilate}_s(\\bar{y})), \\quad
       \\bar{b} = \\sum_{n, p} \\bar{y}[n, p]

    with "full" padding ``d(f−1)`` corrected to ``(d(f−1) − lo, d(f−1) − hi + r)``.

    Args:
      dy: ``(batch, *out_spatial, out_channels)``, the output cotangent.
      x, w: the forward's input and kernel; other arguments as in :func:`conv`.

    Returns:
      ``(dx, dw, db)`` shaped like ``x``, ``w`` and ``(out_channels,)``.
    """
    _check_impl(impl)
    config = conv_config(jnp.shape(x), jnp.shape(w), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    expected = (x.shape[0], *padding_lib.output_spatial(
        x.shape[1:-1], w.shape[:-2], config.pairs, config.stride, config.dilation), w.shape[-1])
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the forward output's shape {expected}, got {tuple(dy.shape)}")
    impl = resolve_impl(impl, jnp.shape(x), jnp.shape(w), config, _platform(x), manual=True)
    _check_supported(impl, jnp.shape(w), config)
    dx, dw = _BACKWARD[impl](dy, x, w, config)
    return dx, dw, jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))
