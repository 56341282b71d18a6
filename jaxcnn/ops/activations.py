"""Elementwise activations and softmax, each activation's hand rule beside it.

ReLU(x) is 0 for x ≤ 0 and x for x > 0 (docs/derivations.md#relu), softmax e^{z_i}/Σ_j e^{z_j}; the others
(tanh, sigmoid, leaky ReLU, ELU, GELU, softplus, SiLU, Mish) follow their PyTorch definitions. Every
activation maps NaN to NaN, takes ``grad="autodiff"`` (JAX differentiates the forward) or
``grad="manual"`` (the public ``<op>_backward`` is the VJP): each is declared once with
:func:`jaxcnn.ops.hand_rule.declare`,
and at a kink its hand rule picks the subgradient ``jax.grad`` of the forward picks.

The hand rules are written in forms without cancellation, accurate to a few roundings relative
to each element: :math:`\\sigma'(x) = \\sigma(x)\\sigma(-x)` rather than :math:`\\sigma(1 - \\sigma)`,
:math:`\\tanh'(x) = 4\\sigma(2x)\\sigma(-2x)` rather than :math:`1 - \\tanh^2 x`, :math:`e^x` rather than
:math:`\\mathrm{expm1}(x) + 1`. JAX's own rules use the second forms, which lose relative accuracy
where the derivative is below ~1e-8 of its neighbours' (deep in saturation); measured against the
gradient's scale the two agree to rounding.
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
from jax import lax

from jaxcnn.ops.hand_rule import declare

__all__ = [
    "relu", "relu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward", "leaky_relu",
    "leaky_relu_backward", "elu", "elu_backward", "gelu", "gelu_backward", "softplus", "softplus_backward", "silu",
    "silu_backward", "mish", "mish_backward", "softmax", "log_softmax",
]


def _check_real(value, name):
    """A finite real number (Python or NumPy scalar); returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _inexact(x):
    """``x`` as a JAX array, integers promoted to the default float type (as ``jax.nn`` does)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


# ------------------------------------------------------------------------ relu


def _relu(x):
    return jnp.where(x <= 0, jnp.zeros_like(x), x)  # x <= 0 is False for NaN: NaN passes through


def relu_backward(dy, x):
    """Hand rule of :func:`relu`, subgradient 0 at 0 (as ``jax.grad``).

    .. math::
       \\bar{x} = \\bar{y} \\cdot [x > 0]

    (``dy`` passes where ``x`` is NaN, as autodiff of the forward's ``where`` passes it.)

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return jnp.where(x <= 0, jnp.zeros_like(dy), dy)




@declare(_relu, relu_backward)
def relu(x):
    """Rectified linear unit :math:`\\max(x, 0)`, elementwise, any shape; NaN stays NaN."""
    return (x,), {}


# ------------------------------------------------------------------------ tanh


def tanh_backward(dy, x):
    """Hand rule of :func:`tanh`.

    .. math::
       \\bar{x} = \\bar{y} (1 - \\tanh^2 x) = \\bar{y}\\, 4 \\sigma(2x)\\, \\sigma(-2x)

    (since :math:`1 \\pm \\tanh x = 2\\sigma(\\pm 2x)`; the product keeps full relative accuracy
    where :math:`1 - \\tanh^2 x` would cancel).

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return dy * (4 * (_sigmoid(2 * x) * _sigmoid(-2 * x)))




@declare(jnp.tanh, tanh_backward)
def tanh(x):
    """Hyperbolic tangent, elementwise, any shape."""
    return (_inexact(x),), {}


# --------------------------------------------------------------------- sigmoid


def _sigmoid(x):
    return lax.logistic(x)  # 1 / (1 + e^{-x}): e^{-x} = inf gives 0, never inf / inf


def sigmoid_backward(dy, x):
    """Hand rule of :func:`sigmoid`.

    .. math::
       \\bar{x} = \\bar{y}\\, \\sigma(x) (1 - \\sigma(x)) = \\bar{y}\\, \\sigma(x)\\, \\sigma(-x)

    (the product of two sigmoids keeps full relative accuracy where :math:`1 - \\sigma(x)` cancels).

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return dy * (_sigmoid(x) * _sigmoid(-x))




@declare(_sigmoid, sigmoid_backward)
def sigmoid(x):
    """Logistic sigmoid :math:`\\sigma(x) = 1 / (1 + e^{-x})`, stable for any ``x``, any shape."""
    return (_inexact(x),), {}


# ------------------------------------------------------------------ leaky relu


def _leaky_relu(x, *, negative_slope):
    return jnp.where(x >= 0, x, negative_slope * x)


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """Hand rule of :func:`leaky_relu`, derivative 1 at 0 (as ``jax.grad`` of ``jax.nn.leaky_relu``).

    .. math::
       \\bar{x} = \\bar{y} \\cdot \\begin{cases} 1 & x \\ge 0 \\\\ a & x < 0 \\end{cases}

    Args:
      dy, x: arrays of the same shape; negative_slope: the slope :math:`a`.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return jnp.where(x >= 0, dy, negative_slope * dy)




@declare(_leaky_relu, leaky_relu_backward)
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU :math:`x` for :math:`x \\ge 0`, :math:`a x` below, elementwise, any shape.

    Args:
      x: any shape.
      negative_slope: :math:`a`, a finite real number.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`leaky_relu_backward` as the VJP).
    """
    return (_inexact(x),), {"negative_slope": _check_real(negative_slope, "negative_slope")}


# ------------------------------------------------------------------------- elu


def _elu(x, *, alpha):
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)  # expm1 never sees a large positive x
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative))


def elu_backward(dy, x, alpha=1.0):
    """Hand rule of :func:`elu`, derivative :math:`\\alpha` at 0 (as ``jax.grad`` of ``jax.nn.elu``).

    .. math::
       \\bar{x} = \\bar{y} \\cdot \\begin{cases} 1 & x > 0 \\\\ \\alpha e^{x} & x \\le 0 \\end{cases}

    Args:
      dy, x: arrays of the same shape; alpha: :math:`\\alpha`.

    Returns:
      ``dx`` shaped like ``x``.
    """
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, dy, (alpha * dy) * jnp.exp(negative))




@declare(_elu, elu_backward)
def elu(x, alpha=1.0):
    """Exponential linear unit :math:`x` for :math:`x > 0`, :math:`\\alpha (e^x - 1)` below, any shape.

    Args:
      x: any shape.
      alpha: :math:`\\alpha`, a finite real number.
      grad: ``"autodiff"`` or ``"manual"`` (:func:`elu_backward` as the VJP).
    """
    return (_inexact(x),), {"alpha": _check_real(alpha, "alpha")}


# ------------------------------------------------------------------------ gelu

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def _normal_cdf(x):
    return 0.5 * lax.erfc(-x * _SQRT_HALF)  # erfc, not 1 + erf: accurate far into x < 0


def _gelu(x, *, approximate):
    if approximate:
        return x * (0.5 * (1 + jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))))
    return x * _normal_cdf(x)


def gelu_backward(dy, x, approximate=False):
    """Hand rule of :func:`gelu`.

    Exact, with the normal cdf :math:`\\Phi` and pdf :math:`\\varphi`:

    .. math::
       \\bar{x} = \\bar{y} \\left(\\Phi(x) + x \\varphi(x)\\right), \\qquad
       \\Phi(x) = \\tfrac12 \\mathrm{erfc}(-x/\\sqrt{2}), \\quad \\varphi(x) = e^{-x^2/2} / \\sqrt{2\\pi}

    With the tanh approximation :math:`y = x \\cdot \\tfrac12 (1 + \\tanh u)`,
    :math:`u = \\sqrt{2/\\pi}\\,(x + 0.044715 x^3)`, and
    :math:`\\tfrac12 (1 + \\tanh u) = \\sigma(2u)`, :math:`\\tfrac12 (1 - \\tanh u) = \\sigma(-2u)`
    (the same numbers without the cancellation of :math:`1 \\pm \\tanh u`):

    .. math::
       \\bar{x} = \\bar{y} \\left(\\sigma(2u) + 2 x\\, \\sigma(2u)\\, \\sigma(-2u)\\,
           \\sqrt{2/\\pi}\\,(1 + 3 \\cdot 0.044715 x^2)\\right)

    Args:
      dy, x: arrays of the same shape; approximate: ``False`` (erf) or ``True`` (tanh).

    Returns:
      ``dx`` shaped like ``x``.
    """
    if approximate:
        two_u = 2 * _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3)
        cdf = _sigmoid(two_u)
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x**2)
        return dy * (cdf + 2 * x * (cdf * _sigmoid(-two_u)) * du)
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
    return dy * (_normal_cdf(x) + x * pdf)




@declare(_gelu, gelu_backward)
def gelu(x, approximate=False):
    """Gaussian error linear unit :math:`x \\Phi(x)`, elementwise, any shape (``torch.nn.functional.gelu``).

    Args:
      x: any shape.
      approximate: ``False`` for the exact :math:`\\Phi` (through erfc), ``True`` for
        :math:`\\tfrac12 x (1 + \\tanh(\\sqrt{2/\\pi}(x + 0.044715 x^3)))` (PyTorch's ``"tanh"``).
      grad: ``"autodiff"`` or ``"manual"`` (:func:`gelu_backward` as the VJP).
    """
    if not isinstance(approximate, bool):
        raise TypeError(f"approximate must be True or False, got {type(approximate).__name__} {approximate!r}")
    return (_inexact(x),), {"approximate": approximate}


# -------------------------------------------------------------------- softplus


def _softplus(x):
    return jnp.logaddexp(x, jnp.zeros_like(x))  # max(x, 0) + log1p(e^{-|x|}): no overflow at any |x|


def softplus_backward(dy, x):
    """Hand rule of :func:`softplus`: its derivative is the sigmoid.

    .. math::
       \\bar{x} = \\bar{y}\\, \\sigma(x) = \\bar{y} / (1 + e^{-x})

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return dy * _sigmoid(x)




@declare(_softplus, softplus_backward)
def softplus(x):
    """:math:`\\log(1 + e^x)`, computed as :math:`\\max(x, 0) + \\log(1 + e^{-|x|})`, any shape.

    Exact for every finite ``x`` (PyTorch's default replaces it by ``x`` above 20).
    """
    return (_inexact(x),), {}


# ------------------------------------------------------------------------ silu


def _silu(x):
    return x * _sigmoid(x)


def silu_backward(dy, x):
    """Hand rule of :func:`silu` (the product rule).

    .. math::
       \\bar{x} = \\bar{y} \\left(\\sigma(x) + x\\, \\sigma(x)(1 - \\sigma(x))\\right)
             = \\bar{y}\\, \\sigma(x) \\left(1 + x\\, \\sigma(-x)\\right)

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    return dy * (_sigmoid(x) * (1 + x * _sigmoid(-x)))




@declare(_silu, silu_backward)
def silu(x):
    """SiLU (swish) :math:`x\\, \\sigma(x)`, elementwise, any shape."""
    return (_inexact(x),), {}


# ------------------------------------------------------------------------ mish


def _mish(x):
    return x * jnp.tanh(_softplus(x))


def mish_backward(dy, x):
    """Hand rule of :func:`mish` (the product rule, then the chain through softplus).

    With :math:`s = \\mathrm{softplus}(x)`, :math:`s' = \\sigma(x)` and
    :math:`1 - \\tanh^2 s = 4 \\sigma(2s)\\, \\sigma(-2s)` (as in :func:`tanh_backward`):

    .. math::
       \\bar{x} = \\bar{y} \\left(\\tanh s + x\\, \\sigma(x)\\, 4 \\sigma(2s)\\, \\sigma(-2s)\\right)

    Args:
      dy, x: arrays of the same shape.

    Returns:
      ``dx`` shaped like ``x``.
    """
    s = _softplus(x)
    return dy * (jnp.tanh(s) + x * _sigmoid(x) * (4 * (_sigmoid(2 * s) * _sigmoid(-2 * s))))


@declare(_mish, mish_backward)
def mish(x):
    """Mish :math:`x \\tanh(\\mathrm{softplus}(x))` (Misra 2019), elementwise, any shape."""
    return (_inexact(x),), {}


# --------------------------------------------------------------------- softmax


def log_softmax(logits, axis=-1):
    """Numerically stable :math:`z_i - \\log \\sum_j e^{z_j}` along ``axis``.

    Args:
      logits: any shape; ``axis`` holds the classes.
    """
    shifted = logits - jnp.max(logits, axis=axis, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """:math:`\\hat{y}_i = e^{z_i} / \\sum_j e^{z_j}` along ``axis`` (docs/derivations.md#softmax-cross-entropy)."""
    return jnp.exp(log_softmax(logits, axis=axis))
