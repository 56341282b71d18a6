"""The two layers with state or randomness: ``BatchNorm`` (running statistics) and ``Dropout`` (a key).

Both are :class:`jaxcnn.nn.protocol.Layer` values written directly in the protocol: their functions
take ``train``. In training, ``BatchNorm`` normalises with the batch's statistics and moves its
running statistics towards them, ``Dropout`` draws its mask from ``key``; in evaluation,
``BatchNorm`` normalises with the running statistics and ``Dropout`` is the identity. ``Dropout``
keeps no state (``()``), so a model whose only such layer is a ``Dropout`` is evaluated with the
plain ``model.apply(params, x)``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxcnn.nn.protocol import Layer
from jaxcnn.ops.stochastic import dropout, dropout_backward
from jaxcnn.ops.norms import (
    batch_moments, batch_norm, batch_norm_backward, batch_norm_inference, batch_norm_inference_backward,
)

__all__ = [
    "BatchNorm", "Dropout",
]


def _check_real(name, value, low, high, *, closed_high=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = low <= value <= high if closed_high else low <= value < high
    if not ok:
        interval = f"[{low}, {high}]" if closed_high else f"[{low}, {high})"
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    return float(value)


def BatchNorm(*, momentum: float = 0.9, eps: float = 1e-5):
    """Batch normalisation over every axis but the last, with running statistics.

    Params ``{"scale": (C,), "offset": (C,)}`` (ones, zeros); state ``{"mean": (C,), "var": (C,)}``
    (zeros, ones). In training, with the batch's mean ``μ_B`` and biased variance ``σ²_B``:

    .. math::
       y = \\text{scale} \\cdot \\frac{x - μ_B}{\\sqrt{σ^2_B + ε}} + \\text{offset}, \\qquad
       \\text{mean} \\leftarrow m \\cdot \\text{mean} + (1 - m) μ_B, \\quad
       \\text{var} \\leftarrow m \\cdot \\text{var} + (1 - m) σ^2_B

    (``m = momentum``; the running statistics are not differentiated). In evaluation the running
    ``mean`` and ``var`` replace ``μ_B`` and ``σ²_B``, and the state is returned unchanged. The hand
    rules are :func:`jaxcnn.ops.norms.batch_norm_backward` (training: with the ∂μ/∂x and ∂σ/∂x
    terms) and :func:`jaxcnn.ops.norms.batch_norm_inference_backward` (evaluation: an affine map).
    """
    momentum = _check_real("momentum", momentum, 0.0, 1.0, closed_high=True)
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"eps must be a positive real number, got {eps!r}")

    def init_ws(key, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"BatchNorm expects input_shape (batch, ..., channels), got {tuple(input_shape)}")
        channels = input_shape[-1]
        params = {"scale": jnp.ones((channels,), jnp.float32), "offset": jnp.zeros((channels,), jnp.float32)}
        state = {"mean": jnp.zeros((channels,), jnp.float32), "var": jnp.ones((channels,), jnp.float32)}
        return tuple(input_shape), params, state

    def _moved(state, x):
        mean, var = jax.lax.stop_gradient(batch_moments(x))
        return {"mean": momentum * state["mean"] + (1 - momentum) * mean.astype(state["mean"].dtype),
                "var": momentum * state["var"] + (1 - momentum) * var.astype(state["var"].dtype)}

    def apply_ws(params, state, x, *, key=None, train=False, grad="autodiff"):
        if train:
            return batch_norm(x, params["scale"], params["offset"], eps=eps, grad=grad), _moved(state, x)
        y = batch_norm_inference(x, state["mean"], state["var"], params["scale"], params["offset"], eps=eps,
                                 grad=grad)
        return y, state

    def forward_ws(params, state, x, *, key=None, train=False):
        if train:
            return batch_norm(x, params["scale"], params["offset"], eps=eps), {"x": x}, _moved(state, x)
        y = batch_norm_inference(x, state["mean"], state["var"], params["scale"], params["offset"], eps=eps)
        return y, {"x": x, "mean": state["mean"], "var": state["var"]}, state

    def backward(params, residuals, dy):
        x = residuals["x"]
        if "mean" in residuals:
            dx, *_, dscale, doffset = batch_norm_inference_backward(
                dy, x, residuals["mean"], residuals["var"], params["scale"], params["offset"], eps=eps)
        else:
            dx, dscale, doffset = batch_norm_backward(dy, x, params["scale"], params["offset"], eps=eps)
        return {"scale": dscale, "offset": doffset}, dx

    return Layer(init_ws, apply_ws, forward_ws, backward, "BatchNorm", (), frozenset({"state"}))


def Dropout(rate: float):
    """Inverted dropout: in training keeps each element with probability ``1 - rate`` and scales
    it by ``1 / (1 - rate)``; the identity in evaluation. No params, no state; needs a key in
    training (:func:`jaxcnn.ops.stochastic.dropout`, whose hand rule reuses the key's mask)."""
    rate = _check_real("rate", rate, 0.0, 1.0)

    def init_ws(key, input_shape):
        return tuple(input_shape), (), ()

    def _check_key(key):
        if key is None:
            raise ValueError(f"Dropout(rate={rate}) needs a key in training: pass key= (a jax.random key)")

    def apply_ws(params, state, x, *, key=None, train=False, grad="autodiff"):
        if not train or rate == 0:
            return x, state
        _check_key(key)
        return dropout(x, key, rate=rate, grad=grad), state

    def forward_ws(params, state, x, *, key=None, train=False):
        if not train or rate == 0:
            return x, {}, state
        _check_key(key)
        return dropout(x, key, rate=rate), {"x": x, "key": key}, state

    def backward(params, residuals, dy):
        if not residuals:
            return (), dy
        dx = dropout_backward(dy, residuals["x"], residuals["key"], rate=rate)
        return (), dx[0] if isinstance(dx, tuple) else dx

    return Layer(init_ws, apply_ws, forward_ws, backward, f"Dropout{rate:g}", (), frozenset({"key"}))
