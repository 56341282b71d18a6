"""The registry of convolution impls: one place where a name gets its three functions.

An impl is a forward beside the two halves of its hand rule, all on normalised
arguments (:class:`~jaxcnn.ops.convolution.ConvConfig`):

- ``forward(x, w, config) -> y``;
- ``input_grad(dy, x_shape, w, config) -> dx``, the lecture's ``∂L/∂X``;
- ``kernel_grad(dy, x, w_shape, config) -> dw``, the lecture's ``∂L/∂W``.

:func:`jaxcnn.ops.convolution.conv` runs ``forward`` (differentiated by JAX under
``grad="autodiff"``) and the two halves as its hand rule; :func:`jaxcnn.ops.transposed_conv.conv_transpose`,
the adjoint, runs ``input_grad`` forward and ``forward`` + ``kernel_grad`` as its hand rule.
A new impl is one :class:`Impl` row in :data:`REGISTRY`; an unregistered :class:`Impl` can be
passed as ``impl=`` directly (a forward of one impl with the hand rule of another, say).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Callable, Tuple

import jax.numpy as jnp

from jaxcnn.ops import fft as fft_lib
from jaxcnn.ops import onednn as onednn_lib
from jaxcnn.ops import winograd as winograd_lib
from jaxcnn.ops.convolution import explicit as explicit_lib
from jaxcnn.ops.convolution import lax as lax_lib

#: Every dtype a convolution can take, as kinds (for :attr:`Impl.dtypes`).
ANY_DTYPE = ("floating", "complexfloating", "integer", "bool")
_KINDS = {"floating": jnp.floating, "complexfloating": jnp.complexfloating, "integer": jnp.integer}
_WORDS = {"floating": "floating-point", "complexfloating": "complex"}


def _runs_everything(w_shape, config) -> str:
    return ""


@dataclasses.dataclass(frozen=True)
class Impl:
    """One way to compute the convolution: its forward beside the two halves of its hand rule.

    Attributes:
      name: what ``impl=`` calls it.
      forward: ``(x, w, config) -> y``.
      input_grad: ``(dy, x_shape, w, config) -> dx``.
      kernel_grad: ``(dy, x, w_shape, config) -> dw``.
      dtypes: the operand dtypes it computes correctly: dtype names (``"float32"``) or the
        kinds ``"floating"``, ``"complexfloating"``, ``"integer"``.
      unsupported: ``(w_shape, config) -> str``, why it cannot run a convolution (``""``: it can).
      accepts: the convolutions it runs, in words, for the error when ``unsupported`` answers.
    """

    name: str
    forward: Callable
    input_grad: Callable
    kernel_grad: Callable
    dtypes: Tuple[str, ...] = ANY_DTYPE
    unsupported: Callable = _runs_everything
    accepts: str = "every convolution"

    def takes(self, dtype) -> bool:
        """Whether ``dtype`` is one of :attr:`dtypes`."""
        dtype = jnp.dtype(dtype)
        return any(dtype == jnp.dtype(kind) if kind not in _KINDS else jnp.issubdtype(dtype, _KINDS[kind])
                   for kind in self.dtypes)

    def dtypes_in_words(self) -> str:
        """:attr:`dtypes` as a phrase, e.g. ``"float32 and float64"``."""
        words = [_WORDS.get(kind, kind) for kind in self.dtypes]
        return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def explicit_impl(*, chunk_bytes=explicit_lib.PATCH_CHUNK_BYTES) -> Impl:
    """``"explicit"``: im2col, GEMMs and col2im; a forward alone runs in batch chunks of at most
    ``chunk_bytes`` of patches (``None``: one piece)."""
    return Impl("explicit", functools.partial(explicit_lib.forward, chunk_bytes=chunk_bytes),
                explicit_lib.input_grad, explicit_lib.kernel_grad)


def hybrid_impl(*, chunk_bytes=explicit_lib.PATCH_CHUNK_BYTES) -> Impl:
    """``"hybrid"``: XLA's forward and input gradient, im2col's ``W̄ = Pᵀ Ȳ`` in batch chunks.

    On the CPU XLA's forward-type convolutions are fast, also inside a rolled ``lax.scan``,
    while its kernel-gradient convolution (the batch as the contracted axis) is its slowest
    op (jax-ml/jax#12868); im2col's ``Pᵀ Ȳ`` is one GEMM, chunked because this forward
    builds no patch matrix to share (BENCHMARKS.md "ResNet-20: ``resnet_levers.py``"). Under ``jax.grad``
    it is ``"lax"``.
    """
    return Impl("hybrid", lax_lib.forward, lax_lib.input_grad,
                functools.partial(explicit_lib.kernel_grad, chunk_bytes=chunk_bytes))


#: Every registered impl by name, in the order :data:`~jaxcnn.ops.convolution.IMPLS` lists them.
REGISTRY = types.MappingProxyType({
    "lax": Impl("lax", lax_lib.forward, lax_lib.input_grad, lax_lib.kernel_grad),
    "explicit": explicit_impl(),
    "fft": Impl("fft", fft_lib.fft_forward, fft_lib.fft_input_grad, fft_lib.fft_kernel_grad, dtypes=fft_lib.DTYPES),
    "winograd": Impl("winograd", winograd_lib.winograd_forward, winograd_lib.winograd_input_grad,
                     winograd_lib.winograd_kernel_grad, dtypes=("floating", "complexfloating"),
                     unsupported=winograd_lib.unsupported, accepts=winograd_lib.ACCEPTS),
    "hybrid": hybrid_impl(),
    # oneDNN's three primitives on the CPU in float32 (float64 and other platforms: lax's passes)
    "onednn": Impl("onednn", onednn_lib.forward, onednn_lib.input_grad, onednn_lib.kernel_grad,
                   dtypes=("float32", "float64")),
})


def _alternatives(w_shape, config, dtype) -> str:
    names = [f'"{name}"' for name, impl in REGISTRY.items()
             if not impl.unsupported(w_shape, config) and (dtype is None or impl.takes(dtype))]
    return ", ".join(names) + ' or "auto"'


def check_runs(impl: Impl, w_shape, config, **operands) -> None:
    """Raises a one-line ValueError when ``impl`` cannot run this convolution or these operands' dtypes.

    Args:
      impl: the resolved impl; w_shape, config: the convolution.
      operands: the arrays by argument name (``x=``, ``w=``, ``dy=``), whose dtypes are checked.
    """
    reasons = impl.unsupported(w_shape, config)
    if reasons:
        raise ValueError(f'impl="{impl.name}" accepts {impl.accepts}; got {reasons}; use impl='
                         f'{_alternatives(w_shape, config, None)} for this convolution')
    for name, array in operands.items():
        dtype = jnp.result_type(array)
        if not impl.takes(dtype):
            raise ValueError(f'impl="{impl.name}" supports {impl.dtypes_in_words()} operands, got {name} of '
                             f'dtype {dtype}; use impl={_alternatives(w_shape, config, dtype)} for {dtype}')


def supported_impls(w_shape, config, dtype=None) -> tuple:
    """The names in :data:`REGISTRY` that can compute this convolution (with operands of ``dtype``, if given).

    Every impl but ``"winograd"`` accepts every valid config; ``"winograd"`` needs a 1-D/2-D
    window of 3 with stride 1 and dilation 1 (:func:`jaxcnn.ops.winograd.unsupported`);
    ``"fft"`` takes float32 and float64 only.
    """
    return tuple(name for name, impl in REGISTRY.items()
                 if not impl.unsupported(w_shape, config) and (dtype is None or impl.takes(dtype)))
