"""One generic way to give any forward function a hand-derived gradient.

``hand_rule(forward, backward)`` returns an op with the forward's signature whose
reverse-mode derivative is ``backward`` (via ``jax.custom_vjp``), so ``jit``,
``vmap`` and ``grad`` of anything built from it use the hand rule. Keyword
arguments are static configuration (stride, padding, ...); positional arguments
are arrays or ``None`` (an absent bias), and the residuals are the inputs.
Because ``backward`` is ordinary JAX code, grad-of-grad differentiates the hand
rule itself.
"""

from __future__ import annotations

import functools

import jax

GRAD_MODES = ("autodiff", "manual")


def check_grad(grad: str) -> str:
    """Validates an op's ``grad`` argument."""
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    return grad


def hand_rule(forward, backward):
    """Wraps ``forward`` so that its VJP is ``backward``.

    Args:
      forward: ``forward(*arrays, **config) -> y``.
      backward: ``backward(dy, *arrays, **config) -> tuple`` with one cotangent
        per positional array (``None`` for non-differentiable or absent inputs,
        e.g. integer labels or a missing bias).

    Returns:
      ``op(*arrays, **config)`` computing ``forward`` with the hand rule as VJP.
    """

    @functools.wraps(forward)
    def op(*arrays, **config):
        @jax.custom_vjp
        def apply(*primals):
            return forward(*primals, **config)

        def apply_fwd(*primals):
            return forward(*primals, **config), primals

        def apply_bwd(primals, dy):
            return tuple(backward(dy, *primals, **config))

        apply.defvjp(apply_fwd, apply_bwd)
        return apply(*arrays)

    return op
