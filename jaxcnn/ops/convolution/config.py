"""The convolution's arguments, normalised once, and the index arithmetic its rules share.

Layout: ``x`` is ``(batch, *spatial, in_channels)``, ``w`` is ``(*window, in_channels // groups,
out_channels)``, ``y`` is ``(batch, *out_spatial, out_channels)``; spatial rank 1, 2 or 3.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

from jaxcnn.ops import padding as padding_lib


class ConvConfig(NamedTuple):
    """Normalised, hashable convolution arguments (static under ``jit``)."""

    stride: Tuple[int, ...]
    pairs: Tuple[Tuple[int, int], ...]
    dilation: Tuple[int, ...]
    groups: int


def check_kernel_and_operand(w_shape, operand_shape, operand: str) -> int:
    """The kernel's spatial rank, after checking ``w`` and the operand ``x`` (or ``y``) against each other.

    Raises:
      ValueError naming the argument: ``w`` without 1-3 spatial dims, or the operand of another rank.
    """
    rank = len(w_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "w must have shape (*window, in_channels // groups, out_channels) with 1-3 "
            f"spatial dims, got shape {tuple(w_shape)}"
        )
    if len(operand_shape) != rank + 2:
        raise ValueError(
            f"{operand} must have shape (batch, *spatial, channels) with {rank} spatial dims to "
            f"match w of shape {tuple(w_shape)}, got {operand} of shape {tuple(operand_shape)}"
        )
    return rank


def check_groups(groups) -> None:
    if not padding_lib.is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")


def conv_config(x_shape, w_shape, *, stride, padding, dilation, groups) -> ConvConfig:
    """Validates shapes and normalises the convolution arguments once.

    Raises:
      ValueError/TypeError naming the argument: wrong ranks, channel mismatch,
      ``groups`` not dividing the channels, stride/dilation < 1, bad padding, a
      window larger than the padded input.
    """
    rank = check_kernel_and_operand(w_shape, x_shape, "x")
    check_groups(groups)
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


def output_spatial(x_shape, window, config: ConvConfig):
    """The output's spatial shape for an input of shape ``x_shape``."""
    return padding_lib.output_spatial(x_shape[1:-1], window, config.pairs, config.stride, config.dilation)


def check_bias(b, channels: int, name: str = "out_channels") -> None:
    if b is not None and tuple(jnp.shape(b)) != (channels,):
        raise ValueError(f"b must have shape ({channels},) ({name}), got {jnp.shape(b)}")


def dimension_numbers(rank: int):
    """``lax``'s dimension numbers for channels-last operands and ``(*window, I, O)`` kernels."""
    spatial = "DHW"[-rank:] if rank > 1 else "W"
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


def platform(x) -> str:
    """The platform ``x`` lives on (``"cpu"``, ``"gpu"``, ``"tpu"``, ...).

    A concrete ``jax.Array`` answers with its devices; a tracer (inside ``jit``)
    or a NumPy array with ``jax.default_backend()``, the platform ``jit`` compiles for.
    """
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return next(iter(x.devices())).platform
    return jax.default_backend()


def operands_dtype(*arrays) -> str:
    """The name of the dtype the operands share (``"float32"``), or their names joined by ``"/"``
    in sorted order where they differ (``"float32/float64"``).

    Read from each array's own ``dtype`` (a NumPy float64 array says ``float64`` with or without
    ``jax_enable_x64``); an operand without one (a list, a scalar) by ``jnp.result_type``.
    """
    names = {str(jnp.dtype(a.dtype if hasattr(a, "dtype") else jnp.result_type(a))) for a in arrays}
    return "/".join(sorted(names))


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


# ------------------------------------------------------------------ the pass

_FORWARD_ONLY = contextvars.ContextVar("jaxcnn_conv_forward_only", default=False)


@contextlib.contextmanager
def forward_only():
    """Within this context the convolution is traced for a forward pass that is not differentiated.

    Evaluation traces its model inside it (``jaxcnn.training.steps.make_evaluate``,
    so ``jaxcnn train``'s per-epoch evaluation and ``jaxcnn eval``): ``impl="auto"``
    then resolves for a forward alone (:data:`jaxcnn.ops.convolution.AUTO`), and the
    explicit forward runs batch chunk by batch chunk. The decision is taken at trace
    time, so enter the context *inside* the function that ``jax.jit`` traces. Only
    speed depends on it: every impl computes the same convolution, and a gradient
    taken inside the context is still correct.
    """
    token = _FORWARD_ONLY.set(True)
    try:
        yield
    finally:
        _FORWARD_ONLY.reset(token)


def is_forward_only() -> bool:
    """Whether the caller is inside :func:`forward_only`."""
    return _FORWARD_ONLY.get()
