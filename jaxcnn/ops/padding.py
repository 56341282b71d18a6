"""Argument normalisers and the one place where shape arithmetic lives.

Every op in jaxcnn accepts ``stride``, ``dilation`` and ``window`` as an int or a
per-dimension tuple, and ``padding`` as ``"VALID"``, ``"SAME"``, ``"FULL"``, an int
or a sequence of ``(lo, hi)`` pairs. The helpers here turn those into tuples of
ints and tuples of pairs once, with errors that name the argument, the value and
the accepted forms (docs/derivations.md#conv-forward: N₂ = ⌊(N₁ + 2P − F)/S⌋ + 1).
"""

from __future__ import annotations

import numbers
from typing import Sequence, Tuple, Union

Pairs = Tuple[Tuple[int, int], ...]
PaddingLike = Union[str, int, Sequence[Tuple[int, int]]]

PADDING_STRINGS = ("VALID", "SAME", "FULL")
_PADDING_FORMS = (
    '"VALID", "SAME", "FULL", a non-negative int, or a sequence of one '
    "(lo, hi) pair of ints per spatial dimension"
)


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalize_tuple(value, rank: int, name: str, *, minimum: int = 1) -> Tuple[int, ...]:
    """Returns ``value`` as a tuple of ``rank`` ints, each ``>= minimum``.

    Args:
      value: an int (used for every dimension) or a sequence of ``rank`` ints.
      rank: number of spatial dimensions.
      name: the argument's name, used in error messages.
      minimum: the smallest accepted entry.

    Raises:
      TypeError: ``value`` is neither an int nor a sequence of ints.
      ValueError: wrong length or an entry below ``minimum``.
    """
    if is_int(value):
        values = (int(value),) * rank
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(is_int(v) for v in value):
            raise TypeError(
                f"{name} must be an int or a tuple of {rank} ints, got {value!r}"
            )
        values = tuple(int(v) for v in value)
        if len(values) != rank:
            raise ValueError(
                f"{name} must be an int or a tuple of {rank} ints (one per spatial "
                f"dimension), got {value!r} with {len(values)} entries"
            )
    else:
        raise TypeError(f"{name} must be an int or a tuple of {rank} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} entries must be >= {minimum}, got {value!r}")
    return values


def _same_pair(n: int, f: int, stride: int, dilation: int) -> Tuple[int, int]:
    """XLA's SAME: output ⌈n/s⌉, total padding split with the extra on the high side."""
    out = -(-n // stride)
    total = max((out - 1) * stride + dilation * (f - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _pairs_from_sequence(padding, rank: int) -> Pairs:
    pairs = tuple(padding)
    if len(pairs) != rank:
        raise ValueError(
            f"padding must have one (lo, hi) pair per spatial dimension ({rank}), "
            f"got {len(pairs)} pairs: {padding!r}"
        )
    result = []
    for pair in pairs:
        if (
            isinstance(pair, str)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(is_int(p) for p in pair)
        ):
            raise TypeError(f"padding must be {_PADDING_FORMS}; got the entry {pair!r} in {padding!r}")
        if pair[0] < 0 or pair[1] < 0:
            raise ValueError(f"padding amounts must be >= 0, got {padding!r}")
        result.append((int(pair[0]), int(pair[1])))
    return tuple(result)


def normalize_padding(
    padding: PaddingLike,
    spatial: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> Pairs:
    """Turns any accepted padding form into one ``(lo, hi)`` pair per dimension.

    ``"VALID"`` is no padding; ``"SAME"`` is XLA's (output ⌈n/s⌉, the odd pixel on
    the high side); ``"FULL"`` pads ``(f−1)·d`` on each side (the "full
    padding" of docs/derivations.md#conv-input-gradient); an int pads every side by that amount.

    Args:
      padding: the user's padding argument.
      spatial: input spatial sizes ``(n_1, ..., n_r)``.
      window: kernel/window sizes ``(f_1, ..., f_r)``.
      stride, dilation: normalised tuples of the same rank.
    """
    rank = len(spatial)
    if isinstance(padding, str):
        key = padding.upper()
        if key == "VALID":
            return ((0, 0),) * rank
        if key == "FULL":
            return tuple((d * (f - 1),) * 2 for f, d in zip(window, dilation))
        if key == "SAME":
            return tuple(
                _same_pair(n, f, s, d) for n, f, s, d in zip(spatial, window, stride, dilation)
            )
        raise ValueError(f"padding must be {_PADDING_FORMS}; got the string {padding!r}")
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"padding must be >= 0 when an int, got {padding!r}")
        return ((int(padding), int(padding)),) * rank
    if isinstance(padding, Sequence):
        return _pairs_from_sequence(padding, rank)
    raise TypeError(f"padding must be {_PADDING_FORMS}; got {padding!r}")


def conv_output_size(n: int, f: int, padding: PaddingLike = "VALID", stride: int = 1, dilation: int = 1) -> int:
    """Output length of a sliding window along one dimension.

    .. math::
       n_{out} = \\left\\lfloor \\frac{n + lo + hi - d(f-1) - 1}{s} \\right\\rfloor + 1

    With ``lo = hi = p`` and ``d = 1`` this is ⌊(n + 2p − f)/s + 1⌋
    (docs/derivations.md#conv-forward), e.g. ``conv_output_size(8, 3, stride=2) == 3``.

    Args:
      n: input length; f: window length.
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int or one ``(lo, hi)`` pair.
      stride, dilation: positive ints.

    Returns:
      The output length, possibly ``<= 0`` when the window does not fit; callers
      that need a valid shape use :func:`output_spatial`, which raises.
    """
    for name, value in (("n", n), ("f", f), ("stride", stride), ("dilation", dilation)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(padding, str) and not is_int(padding):
        padding = [padding]
    ((lo, hi),) = normalize_padding(padding, (n,), (f,), (stride,), (dilation,))
    return (n + lo + hi - dilation * (f - 1) - 1) // stride + 1


def output_spatial(
    spatial: Sequence[int],
    window: Sequence[int],
    pairs: Pairs,
    stride: Sequence[int],
    dilation: Sequence[int],
    *,
    name: str = "window",
) -> Tuple[int, ...]:
    """Output spatial shape for already-normalised arguments; raises if empty.

    Raises:
      ValueError: the (dilated) window is larger than the padded input.
    """
    sizes = tuple(
        conv_output_size(n, f, pair, s, d)
        for n, f, pair, s, d in zip(spatial, window, pairs, stride, dilation)
    )
    if any(size < 1 for size in sizes):
        raise ValueError(
            f"{name} {tuple(window)} (dilation {tuple(dilation)}) is larger than the padded "
            f"input: spatial shape {tuple(spatial)} with padding {pairs} leaves output "
            f"shape {sizes}; use more padding or a smaller {name}"
        )
    return sizes


def padded_spatial(spatial: Sequence[int], pairs: Pairs) -> Tuple[int, ...]:
    """Spatial shape after padding: ``n + lo + hi`` per dimension."""
    return tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pairs))


def unreached(n: int, f: int, pair: Tuple[int, int], stride: int, dilation: int) -> int:
    """Trailing rows of the padded input that no window reaches (stride leftovers).

    .. math::
       r = (n + lo + hi - d(f-1) - 1) \\bmod s
    """
    return (n + pair[0] + pair[1] - dilation * (f - 1) - 1) % stride


def conv_transpose_output_size(
    n: int, f: int, padding: PaddingLike = "VALID", stride: int = 1, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution: the input length of the conv it transposes.

    The smallest length that the forward convolution maps to ``n``, plus
    ``output_padding`` rows on the high side (PyTorch's ``ConvTranspose``):

    .. math::
       n_x = (n - 1)s + d(f-1) + 1 - lo - hi + op, \\qquad 0 \\le op < s

    Every length ``n_x + r`` with ``0 <= r < s`` maps back to ``n``
    (:func:`conv_output_size`), so ``op`` picks among them. ``"SAME"`` is the
    convention of ``lax.conv_transpose`` and Flax/Keras (``n_x = s·n``, the
    largest of them), so it takes no ``output_padding``. E.g.
    ``conv_transpose_output_size(3, 3, stride=2) == 7`` and ``== 8`` with
    ``output_padding=1``; ``conv_transpose_output_size(4, 3, "SAME", 2) == 8``.

    Args:
      n: the transposed conv's input length (the forward conv's output length).
      f: window length; stride, dilation: positive ints.
      padding: the forward conv's ``"VALID"``, ``"SAME"``, ``"FULL"``, int or one ``(lo, hi)`` pair.
      output_padding: an int with ``0 <= output_padding < stride``.

    Returns:
      The output length, possibly ``<= 0`` when the padding exceeds the window;
      :func:`conv_transpose_output_spatial` raises for that.
    """
    for name, value in (("n", n), ("f", f), ("stride", stride), ("dilation", dilation)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not is_int(output_padding) or not 0 <= output_padding < stride:
        raise ValueError(f"output_padding must be an int with 0 <= output_padding < stride ({stride}), "
                         f"got {output_padding!r}")
    if isinstance(padding, str) and padding.upper() == "SAME":
        if output_padding:
            raise ValueError(f'output_padding must be 0 with padding="SAME" (the output length is '
                             f"stride·n = {stride * n}; pass (lo, hi) pairs for another length), "
                             f"got {output_padding!r}")
        return stride * n
    if not isinstance(padding, str) and not is_int(padding):
        padding = [padding]
    ((lo, hi),) = normalize_padding(padding, (n,), (f,), (stride,), (dilation,))
    return (n - 1) * stride + dilation * (f - 1) + 1 - lo - hi + output_padding


def conv_transpose_output_spatial(
    spatial: Sequence[int],
    window: Sequence[int],
    padding: PaddingLike,
    stride: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
) -> Tuple[int, ...]:
    """:func:`conv_transpose_output_size` per dimension; raises if a size is below 1.

    Args:
      spatial: the transposed conv's input spatial shape ``(n_1, ..., n_r)``.
      window: kernel sizes; stride, dilation, output_padding: normalised tuples.
      padding: any form :func:`normalize_padding` accepts (the forward conv's padding).

    Raises:
      ValueError: ``output_padding`` not in ``[0, stride)`` (or nonzero with
        ``"SAME"``), or a padding so large that an output size is below 1.
    """
    bad = [op for op, s in zip(output_padding, stride) if not 0 <= op < s]
    if bad:
        raise ValueError(f"output_padding must satisfy 0 <= output_padding < stride in every dimension, "
                         f"got output_padding={tuple(output_padding)} with stride={tuple(stride)}")
    same = isinstance(padding, str) and padding.upper() == "SAME"
    per_dim = [padding] * len(spatial) if same else normalize_padding(padding, spatial, window, stride, dilation)
    sizes = tuple(
        conv_transpose_output_size(n, f, p, s, d, op)
        for n, f, p, s, d, op in zip(spatial, window, per_dim, stride, dilation, output_padding)
    )
    if any(size < 1 for size in sizes):
        raise ValueError(
            f"padding {padding!r} is too large for window {tuple(window)} (dilation {tuple(dilation)}): "
            f"input spatial shape {tuple(spatial)} with stride {tuple(stride)} and output_padding "
            f"{tuple(output_padding)} leaves output shape {sizes}; use less padding"
        )
    return sizes


def batch_chunk(batch: int, per_example: int, budget: int) -> int:
    """Examples per chunk when a batch is processed in pieces of at most ``budget`` bytes.

    As many as fit (at least 1, at most ``batch``); a divisor of ``batch`` when one
    is at least half that, so the batch needs no zero padding (125 → 5 rather than 6).
    """
    fit = max(1, min(batch, budget // max(1, per_example)))
    divisor = max(d for d in range(1, fit + 1) if batch % d == 0)
    return divisor if 2 * divisor >= fit else fit
