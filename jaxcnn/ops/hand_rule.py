"""One declaration per op: its plain forward, its hand rule, and the ``grad=`` switch between them.

``declare(forward, backward)`` turns the function that reads an op's public arguments into an
:class:`Op`: calling it runs ``forward`` (``grad="autodiff"``: JAX differentiates it) or the same
forward whose reverse-mode derivative is ``backward`` (``grad="manual"``, via ``jax.custom_vjp``).
The layer of an op (:func:`jaxcnn.nn.layers.layer_from_op`), the explicit sweep and the proof
registry read ``op.forward`` and ``op.backward`` from the same declaration::

    def _square(x):
        return x * x

    def square_backward(dy, x):
        return 2 * x * dy

    @declare(_square, square_backward)
    def square(x):
        \"\"\"x², elementwise.\"\"\"
        return (x,), {}          # the arrays, and the static configuration

Positional arrays are arrays or ``None`` (an absent bias); keyword configuration is static
(stride, padding, ...). ``backward(dy, *arrays, **config)`` returns one cotangent per array
(``None`` for integer labels, keys or an absent bias), or, for a one-array op, the cotangent alone.
Because ``backward`` is ordinary JAX code, grad-of-grad differentiates the hand rule itself.
Forward-mode (``jax.jvp``, ``jax.jacfwd``) has no hand rule: under ``grad="manual"`` it raises
:class:`ForwardModeError`, which says to use ``grad="autodiff"``.
"""

from __future__ import annotations

import functools
import inspect

import jax

GRAD_MODES = ("autodiff", "manual")


class ForwardModeError(TypeError):
    """Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) of an op under its hand rule."""


def check_grad(grad: str) -> str:
    """Validates an op's ``grad`` argument."""
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    return grad


def _as_tuple(cotangents):
    return tuple(cotangents) if isinstance(cotangents, (tuple, list)) else (cotangents,)


def _with_rule(forward, backward, name):
    """``forward`` whose VJP is ``backward``; forward mode raises :class:`ForwardModeError`."""

    def op(*arrays, **config):
        @jax.custom_vjp
        def apply(*primals):
            return forward(*primals, **config)

        def apply_fwd(*primals):
            return forward(*primals, **config), primals

        def apply_bwd(primals, dy):
            return _as_tuple(backward(dy, *primals, **config))

        apply.defvjp(apply_fwd, apply_bwd)
        try:
            return apply(*arrays)
        except TypeError as error:
            if "custom_vjp" in str(error) and ("forward-mode" in str(error) or "jvp" in str(error).lower()):
                raise ForwardModeError(
                    f"{name} under grad='manual' has a hand rule for reverse mode only: jax.jvp, jax.jacfwd and "
                    "jax.linearize cannot run through it. Use grad='autodiff' for forward-mode "
                    "derivatives; Hessian-vector products work in every mode as reverse-over-reverse "
                    "(jax.grad of a jax.grad)") from error
            raise

    return op


def _positional(*arrays, **config):
    return arrays, config


class Op:
    """An op declared once: ``op(*args, grad="autodiff", **kwargs)``, ``op.forward``, ``op.backward``.

    Attributes:
      name: the op's name.
      forward: ``forward(*arrays, **config) -> y``, the plain forward.
      backward: ``backward(dy, *arrays, **config)``, the hand rule (:meth:`rule` always gives a tuple).
      arguments: ``arguments(*args, **kwargs) -> (arrays, config)``: reads and checks the public arguments.
      default_grad: the mode used when ``grad`` is not given.
    """

    def __init__(self, forward, backward, arguments=None, *, name=None, default_grad="autodiff"):
        self.forward, self.backward = forward, backward
        self.arguments = _positional if arguments is None else arguments
        self.name = name or getattr(arguments, "__name__", None) or getattr(forward, "__name__", "op")
        self.default_grad = check_grad(default_grad)
        self.manual = _with_rule(forward, backward, self.name)
        source = forward if arguments is None else arguments
        functools.update_wrapper(self, source, updated=())
        self.__name__ = self.name
        try:
            signature = inspect.signature(source)
            extra = inspect.Parameter("grad", inspect.Parameter.KEYWORD_ONLY, default=self.default_grad)
            parameters = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
            tail = [p for p in signature.parameters.values() if p.kind == inspect.Parameter.VAR_KEYWORD]
            self.__signature__ = signature.replace(parameters=[*parameters, extra, *tail])
        except (TypeError, ValueError):
            pass

    def __call__(self, *args, grad=None, **kwargs):
        grad = check_grad(self.default_grad if grad is None else grad)
        arrays, config = self.arguments(*args, **kwargs)
        return (self.manual if grad == "manual" else self.forward)(*arrays, **config)

    def rule(self, dy, *args, **kwargs) -> tuple:
        """The hand rule on the public arguments: one cotangent per array, always a tuple."""
        arrays, config = self.arguments(*args, **kwargs)
        return _as_tuple(self.backward(dy, *arrays, **config))

    def __repr__(self):
        return f"<jaxcnn op {self.name}>"


def declare(forward, backward, *, name=None):
    """Decorator: the function that reads an op's public arguments becomes the :class:`Op`.

    Args:
      forward: ``forward(*arrays, **config) -> y``.
      backward: ``backward(dy, *arrays, **config)``: one cotangent per array (a tuple), or the
        cotangent alone for a one-array op.
      name: the op's name (default: the decorated function's).

    Returns:
      A decorator; the decorated ``arguments(*args, **kwargs) -> (arrays, config)`` gives the
      :class:`Op` its signature and docstring (with ``grad="autodiff"`` added).
    """
    return lambda arguments: Op(forward, backward, arguments, name=name)


def hand_rule(forward, backward):
    """``forward`` with ``backward`` as its VJP: an :class:`Op` whose default mode is ``"manual"``.

    Args:
      forward: ``forward(*arrays, **config) -> y``.
      backward: ``backward(dy, *arrays, **config) -> tuple`` with one cotangent per positional
        array (``None`` for non-differentiable or absent inputs, e.g. integer labels or a missing bias).

    Returns:
      ``op(*arrays, **config)`` computing ``forward`` with the hand rule as VJP (``grad="autodiff"``
      gives the plain forward). It works as a loss or, through
      :func:`jaxcnn.nn.layers.layer_from_op`, as a layer, in every gradient mode.
    """
    return Op(forward, backward, name=getattr(forward, "__name__", "op"), default_grad="manual")
