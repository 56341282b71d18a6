"""Convolution with oneDNN's primitives (CPU, float32), each pass an XLA FFI custom call.

Layout as in :mod:`jaxcnn.ops.convolution`: ``x`` is ``(batch, *spatial, in_channels)``, ``w`` is
``(*window, in_channels // groups, out_channels)``, spatial rank 1, 2 or 3, any padding, stride,
dilation and groups that :func:`jaxcnn.ops.convolution.conv_config` accepts. Three oneDNN primitives compute
the three passes (``_native/onednn_conv.cc``):

.. math::
   y = \\mathrm{corr}(x_{pad}, w) + b \\quad\\text{(convolution\\_forward)}

   \\bar{x} = \\mathrm{corr}(\\mathrm{pad}_{d(f-1)}(\\mathrm{dilate}_s(\\bar{y})),\\,
              \\mathrm{rot}_{180}(w)^{T}) \\quad\\text{(convolution\\_backward\\_data)}

   \\bar{w}[t, i, o] = \\sum_{n, p} x_{pad}[n, p·s + t·d, i] \\; \\bar{y}[n, p, o]
   \\quad\\text{(convolution\\_backward\\_weights)}

The hand rule is the lecture's: ``x̄`` is the backward-data primitive, the "full"-padded
correlation of the stride-dilated ``ȳ`` with the 180°-rotated, channel-swapped kernel (the
padding corrected for the forward's, as in :func:`jaxcnn.ops.convolution.input_grad_padding`), and ``w̄``
is the backward-weights primitive, the correlation of the padded ``x`` with ``ȳ`` summed over
the batch. Each pass is linear in each operand, so its own derivative is another pass (``ḡ`` the
cotangent of the pass's output):

.. math::
   \\partial_{\\bar{y}} \\langle \\bar{x}(\\bar{y}, w), ḡ \\rangle = y(ḡ, w), \\quad
   \\partial_{w} \\langle \\bar{x}(\\bar{y}, w), ḡ \\rangle = \\bar{w}(\\bar{y}, ḡ), \\quad
   \\partial_{\\bar{y}} \\langle \\bar{w}(\\bar{y}, x), ḡ \\rangle = y(x, ḡ), \\quad
   \\partial_{x} \\langle \\bar{w}(\\bar{y}, x), ḡ \\rangle = \\bar{x}(\\bar{y}, ḡ),

which makes grad-of-grad run on oneDNN too. The passes are ``custom_vjp`` functions, so forward
mode (``jax.jvp``, ``jax.jacfwd``) is not defined for them. Under ``vmap`` a batch of activations
with shared weights folds into the batch axis; batched weights fold into the groups (``B``
convolutions side by side as one with ``B·groups`` groups), as XLA batches its own convolution.

float64 operands, or a platform other than the CPU, fall back to conv's ``"lax"`` impl
(``lax.conv_general_dilated`` and its hand rule, :mod:`jaxcnn.ops.convolution.lax`). So does float32 when the native part is not :func:`available`, with a
``RuntimeWarning`` giving :func:`unavailable_reason`. Other dtypes raise a ``ValueError``.
``impl="auto"`` (:data:`jaxcnn.ops.convolution.AUTO`) picks this impl for float32 on the CPU, in every
pass, where :func:`available`; elsewhere it takes its other rows, so it never reaches this fallback.

Dependency and build (:mod:`jaxcnn.ops._native.loader`): the PyPI wheels ``onednn-cpu-gomp``
and ``onednn-devel-cpu-gomp`` (oneDNN 3.2, CPU-only, GNU OpenMP); the machine's ``g++`` builds
the extension on first use into ``~/.cache/jaxcnn``. Without a compiler, oneDNN or x86-64 Linux,
:func:`available` is ``False`` with a one-line :func:`unavailable_reason`.

Threads: oneDNN runs its loops on OpenMP, ``omp_get_max_threads()`` threads (``OMP_NUM_THREADS``,
default one per core), in a team started by the XLA thread that runs the custom call. XLA runs
independent custom calls at once (a layer's ``x̄`` and ``w̄``, on two of its threads), and two
teams would put twice as many threads as cores to work, so the extension runs one primitive at a
time; the other XLA thread sleeps until it is done. Weight reorders (a few thousand floats) run on
one thread. Measured on 2 cores (BENCHMARKS.md, "oneDNN's convolution passes"), the ``jaxcnn train``
path runs as fast with ``OMP_NUM_THREADS`` unset as with 2, and 4 threads oversubscribe the cores
(classic 0.79×, ResNet-20 0.61× the images/s). Where other processes keep the cores busy,
``OMP_NUM_THREADS=1`` spends less CPU time per step: a team of two then waits at each barrier for a
thread the scheduler has not run.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops import hand_rule as manual
from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops._native import loader


# ------------------------------------------------------------------ availability


def available() -> bool:
    """Whether the oneDNN passes can run here (builds the extension on first call)."""
    return loader.native().library is not None


def unavailable_reason() -> str:
    """One line saying why :func:`available` is ``False``; ``""`` when it is ``True``."""
    return loader.native().reason


# ------------------------------------------------------------------ arguments


def _config(x_shape, w_shape, *, stride, padding, dilation, groups):
    # conv imports this module for its impl table, so its normaliser is imported where it is used
    from jaxcnn.ops.convolution import conv_config

    return conv_config(x_shape, w_shape, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _out_shape(x_shape, w_shape, config) -> tuple:
    rank = len(w_shape) - 2
    out = padding_lib.output_spatial(x_shape[1:-1], w_shape[:rank], config.pairs, config.stride, config.dilation)
    return (x_shape[0], *out, w_shape[-1])


def _use_onednn(*arrays) -> bool:
    """``True`` for float32 on the CPU with the extension available; ``False`` to fall back to ``lax``.

    Raises:
      ValueError: a dtype other than float32/float64, or operands of different dtypes.
    """
    dtypes = {jnp.dtype(a.dtype) for a in arrays if a is not None}
    if len(dtypes) != 1:
        raise ValueError(f"the oneDNN convolution's operands must share one dtype, got {sorted(map(str, dtypes))}")
    (dtype,) = dtypes
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype must be float32 (oneDNN) or float64 (falls back to lax), got {dtype}")
    if dtype != jnp.float32 or _platform(arrays[0]) != "cpu":
        return False
    if not available():
        warnings.warn(f"oneDNN convolution unavailable ({unavailable_reason()}); using lax.conv_general_dilated",
                      RuntimeWarning, stacklevel=3)
        return False
    return True


def _platform(x) -> str:
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return next(iter(x.devices())).platform
    return jax.default_backend()


def _attributes(config) -> dict:
    lo, hi = zip(*config.pairs)
    return dict(stride=np.array(config.stride, np.int64), dilation=np.array(config.dilation, np.int64),
                padding_lo=np.array(lo, np.int64), padding_hi=np.array(hi, np.int64),
                groups=np.int64(config.groups))


# ------------------------------------------------------------------ the custom calls


def _call(target, out_shape, config, *operands, **attributes):
    """One custom call; an empty operand or result (a zero in some shape) gives zeros without one."""
    if 0 in out_shape or any(a.size == 0 for a in operands):
        return jnp.zeros(out_shape, jnp.float32)
    out = jax.ShapeDtypeStruct(tuple(out_shape), jnp.float32)
    return jax.ffi.ffi_call(loader.TARGETS[target], out)(*operands, **attributes, **_attributes(config))


def _call_forward(x, w, b, config):
    out_shape = _out_shape(x.shape, w.shape, config)
    if b is not None and 0 not in out_shape and (x.size == 0 or w.size == 0):  # no input channels: y = b
        return jnp.broadcast_to(b, out_shape)
    bias = jnp.zeros((w.shape[-1],), jnp.float32) if b is None else b
    return _call("forward", out_shape, config, x, w, bias, with_bias=np.int64(b is not None))


def _call_backward_data(dy, w, x_shape, config):
    return _call("backward_data", tuple(x_shape), config, dy, w)


def _call_backward_weights(dy, x, w_shape, config):
    return _call("backward_weights", tuple(w_shape), config, dy, x)


# ------------------------------------------------------------------ vmap: fold into batch or groups


def _broadcast(a, batched: bool, size: int):
    return a if batched else jnp.broadcast_to(a, (size, *a.shape))


def _fold_batch(a):
    """``(B, N, ...) -> (B·N, ...)``."""
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _fold_channels(a):
    """Activations ``(B, N, *spatial, C) -> (N, *spatial, B·C)``: ``B`` groups side by side."""
    moved = jnp.moveaxis(a, 0, -2)
    return moved.reshape(*moved.shape[:-2], -1)


def _unfold_channels(a, size: int):
    return jnp.moveaxis(a.reshape(*a.shape[:-1], size, a.shape[-1] // size), -2, 0)


def _fold_kernel(w):
    """Kernels ``(B, *window, C_g, O) -> (*window, C_g, B·O)``, the out-channels of ``B·groups`` groups."""
    return _fold_channels(w)


def _grouped(config, size: int):
    return config._replace(groups=config.groups * size)


def _forward_call(config):
    @jax.custom_batching.custom_vmap
    def call(x, w, b):
        return _call_forward(x, w, b, config)

    @call.def_vmap
    def rule(size, in_batched, x, w, b):
        x_batched, w_batched, b_batched = in_batched
        if not (w_batched or b_batched):
            y = _forward_call(config)(_fold_batch(x), w, b)
            return y.reshape(size, x.shape[1], *y.shape[1:]), True
        x, w = _broadcast(x, x_batched, size), _broadcast(w, w_batched, size)
        b = None if b is None else _broadcast(b, b_batched, size).reshape(-1)
        y = _forward_call(_grouped(config, size))(_fold_channels(x), _fold_kernel(w), b)
        return _unfold_channels(y, size), True

    return call


def _backward_data_call(x_shape, config):
    @jax.custom_batching.custom_vmap
    def call(dy, w):
        return _call_backward_data(dy, w, x_shape, config)

    @call.def_vmap
    def rule(size, in_batched, dy, w):
        dy_batched, w_batched = in_batched
        if not w_batched:
            dx = _backward_data_call((size * x_shape[0], *x_shape[1:]), config)(_fold_batch(dy), w)
            return dx.reshape(size, *x_shape), True
        dy, w = _broadcast(dy, dy_batched, size), _broadcast(w, w_batched, size)
        folded_shape = (*x_shape[:-1], size * x_shape[-1])
        dx = _backward_data_call(folded_shape, _grouped(config, size))(_fold_channels(dy), _fold_kernel(w))
        return _unfold_channels(dx, size), True

    return call


def _backward_weights_call(w_shape, config):
    @jax.custom_batching.custom_vmap
    def call(dy, x):
        return _call_backward_weights(dy, x, w_shape, config)

    @call.def_vmap
    def rule(size, in_batched, dy, x):
        dy, x = _broadcast(dy, in_batched[0], size), _broadcast(x, in_batched[1], size)
        folded_shape = (*w_shape[:-1], size * w_shape[-1])
        dw = _backward_weights_call(folded_shape, _grouped(config, size))(_fold_channels(dy), _fold_channels(x))
        return _unfold_channels(dw, size), True

    return call


# ------------------------------------------------------------------ differentiable passes


def _forward_pass(x, w, b, *, config):
    return _forward_call(config)(x, w, b)


def _forward_pass_backward(dy, x, w, b, *, config):
    dx = _backward_data_pass(dy, w, x_shape=x.shape, config=config)
    dw = _backward_weights_pass(dy, x, w_shape=w.shape, config=config)
    db = None if b is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))
    return dx, dw, db


def _backward_data(dy, w, *, x_shape, config):
    return _backward_data_call(x_shape, config)(dy, w)


def _backward_data_backward(g, dy, w, *, x_shape, config):
    """``⟨x̄(ȳ, w), g⟩`` is ``⟨y(g, w), ȳ⟩``: its gradients are a forward and a weight gradient."""
    return _onednn_forward(g, w, None, config=config), _backward_weights_pass(dy, g, w_shape=w.shape, config=config)


def _backward_weights(dy, x, *, w_shape, config):
    return _backward_weights_call(w_shape, config)(dy, x)


def _backward_weights_backward(g, dy, x, *, w_shape, config):
    """``⟨w̄(ȳ, x), g⟩`` is ``⟨y(x, g), ȳ⟩``: its gradients are a forward and an input gradient."""
    return _onednn_forward(x, g, None, config=config), _backward_data_pass(dy, g, x_shape=x.shape, config=config)


_onednn_forward = manual.hand_rule(_forward_pass, _forward_pass_backward)
_backward_data_pass = manual.hand_rule(_backward_data, _backward_data_backward)
_backward_weights_pass = manual.hand_rule(_backward_weights, _backward_weights_backward)


# ------------------------------------------------------------------ float64 / fallback: lax


def _lax():
    """conv's ``lax`` impl (forward, input gradient, kernel gradient); imported here because conv's
    registry imports this module."""
    from jaxcnn.ops.convolution import lax as lax_impl  # pylint: disable=import-outside-toplevel

    return lax_impl


# ------------------------------------------------------------------ public passes


def forward(x, w, config):
    """``y = corr(x_pad, w)``: oneDNN's convolution_forward (float64 or not the CPU: ``lax``).

    Args:
      x: ``(batch, *spatial, C_in)``; w: ``(*window, C_in // groups, C_out)``;
      config: normalised arguments (``stride``, ``pairs``, ``dilation``, ``groups``), e.g.
        :func:`jaxcnn.ops.convolution.conv_config`'s.

    Returns:
      ``(batch, *out_spatial, C_out)``.
    """
    if not _use_onednn(x, w):
        return _lax().forward(x, w, config)
    return _onednn_forward(x, w, None, config=config)


def input_gradient(dy, x, w, config):
    """``x̄``: oneDNN's convolution_backward_data, the full-padded correlation of the stride-dilated
    ``ȳ`` with the 180°-rotated, channel-swapped kernel.

    Args:
      dy: ``(batch, *out_spatial, C_out)``; x: the forward's input (only its shape is read);
      w, config: as in :func:`forward`.

    Returns:
      ``x̄`` shaped like ``x``.
    """
    if not _use_onednn(dy, w):
        return _lax().input_grad(dy, tuple(x.shape), w, config)
    return _backward_data_pass(dy, w, x_shape=tuple(x.shape), config=config)


def weight_gradient(dy, x, w, config):
    """``w̄[t, i, o] = Σ_{n,p} x_pad[n, p·s + t·d, i] ȳ[n, p, o]``: oneDNN's convolution_backward_weights.

    Args:
      dy, x, config: as in :func:`input_gradient`; w: the forward's kernel (only its shape is read).

    Returns:
      ``w̄`` shaped like ``w``.
    """
    if not _use_onednn(dy, x):
        return _lax().kernel_grad(dy, x, tuple(w.shape), config)
    return _backward_weights_pass(dy, x, w_shape=tuple(w.shape), config=config)


def backward(dy, x, w, config):
    """``(x̄, w̄)``: :func:`input_gradient` and :func:`weight_gradient` (the impl table's backward)."""
    return input_gradient(dy, x, w, config), weight_gradient(dy, x, w, config)


def _conv_forward(x, w, b, *, config):
    if not _use_onednn(x, w, b):
        y = _lax().forward(x, w, config)
        return y if b is None else y + b
    return _onednn_forward(x, w, b, config=config)


def _conv_backward(dy, x, w, b, *, config):
    dx, dw = backward(dy, x, w, config)
    return dx, dw, None if b is None else jnp.sum(dy, axis=tuple(range(dy.ndim - 1)))


_hand_rule_conv = manual.hand_rule(_conv_forward, _conv_backward)


def conv_onednn(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1):
    """N-d cross-correlation on oneDNN, with the hand rule as its VJP.

    .. math::
       y = \\mathrm{corr}(x_{pad}, w) + b, \\quad
       \\bar{x} = \\mathrm{corr}(\\mathrm{pad}_{d(f-1)}(\\mathrm{dilate}_s(\\bar{y})), \\mathrm{rot}_{180}(w)^{T}),
       \\quad \\bar{w} = \\mathrm{corr}(x_{pad}, \\mathrm{dilate}_s(\\bar{y})), \\quad \\bar{b} = \\sum_{n, p} \\bar{y}

    ``x̄`` is oneDNN's backward-data primitive, ``w̄`` its backward-weights primitive (module
    docstring); float64 runs on ``lax``.

    Args:
      x: ``(batch, *spatial, in_channels)``, spatial rank 1-3, float32 (float64 falls back to ``lax``).
      w: ``(*window, in_channels // groups, out_channels)``, the same dtype.
      b: optional ``(out_channels,)`` bias.
      stride, padding, dilation, groups: as in :func:`jaxcnn.ops.convolution.conv`.

    Returns:
      ``(batch, *out_spatial, out_channels)``.
    """
    config = _config(jnp.shape(x), jnp.shape(w), stride=stride, padding=padding, dilation=dilation, groups=groups)
    if b is not None and tuple(jnp.shape(b)) != (jnp.shape(w)[-1],):
        raise ValueError(f"b must have shape ({jnp.shape(w)[-1]},) (out_channels), got {jnp.shape(b)}")
    return _hand_rule_conv(x, w, b, config=config)


def input_grad(dy, x_shape, w, config):
    """:func:`input_gradient` in the convolution registry's form (``x`` given by its shape)."""
    if not _use_onednn(dy, w):
        return _lax().input_grad(dy, tuple(x_shape), w, config)
    return _backward_data_pass(dy, w, x_shape=tuple(x_shape), config=config)


def kernel_grad(dy, x, w_shape, config):
    """:func:`weight_gradient` in the convolution registry's form (``w`` given by its shape)."""
    if not _use_onednn(dy, x):
        return _lax().kernel_grad(dy, x, tuple(w_shape), config)
    return _backward_weights_pass(dy, x, w_shape=tuple(w_shape), config=config)
