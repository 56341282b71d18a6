"""The checker for anyone's hand rule: ``backward`` against ``jax.vjp(forward)``, in float64.

:func:`assert_hand_rule` takes exactly the pair that :func:`jaxcnn.ops.hand_rule.hand_rule`
takes, ``forward(*arrays, **config) -> y`` and ``backward(dy, *arrays, **config) -> tuple``
(one cotangent per positional array, ``None`` for absent or non-differentiable ones),
and proves the rule on the given arrays the way this library proves its own ops:

1. float64 on, floating arrays cast to float64 (integer arrays such as labels, PRNG keys
   and ``None`` pass through unchanged);
2. random cotangents ``dy`` drawn from ``seed``; the oracle is ``jax.vjp(forward)``;
3. ``backward`` run under ``jax.jit`` on the given arrays, and under ``jax.vmap`` over a
   leading axis stacking two independent inputs (the given arrays, and the same arrays
   with every floating element scaled by its own factor in [0.5, 1], which keeps signs,
   exact zeros and positive domains) with two independent cotangents;
4. the largest relative difference ``max|a − b| / max(max|b|, tiny)`` over every
   differentiable argument and both transformations must be ``<= rtol``.

Public face: :mod:`jaxcnn.testing`.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

_TINY = float(np.finfo(np.float64).tiny)


def _check_arguments(forward, backward, rtol) -> None:
    for name, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__} {fn!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
        raise TypeError(f"rtol must be a real number in (0, inf), got {type(rtol).__name__} {rtol!r}")
    if not 0 < float(rtol) < math.inf:
        raise ValueError(f"rtol must be a real number in (0, inf), got {rtol!r}")


def _is_key(array) -> bool:
    return jax.dtypes.issubdtype(jnp.result_type(array), jax.dtypes.prng_key)


def _to_float64(array):
    """float64 for floating arrays (complex128 for complex); anything else unchanged.

    Converted on the host (NumPy), so that no new shape costs an eager XLA compilation.
    """
    if array is None or _is_key(array) or isinstance(array, jax.core.Tracer):
        return array
    host = np.asarray(array)
    if np.issubdtype(host.dtype, np.complexfloating):
        return jnp.asarray(host.astype(np.complex128))
    if np.issubdtype(host.dtype, np.floating) or host.dtype == jnp.bfloat16:
        return jnp.asarray(host.astype(np.float64))
    return jnp.asarray(array)


def _differentiable(array) -> bool:
    return array is not None and not _is_key(array) and jnp.issubdtype(array.dtype, jnp.inexact)


def _argument_names(forward, count):
    """``'x' (argument 0)`` from the forward's signature where it names the position."""
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [
        p.name for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return [f"{positional[i]!r} (argument {i})" if i < len(positional) else f"argument {i}" for i in range(count)]


def _random_like(rng, shapes):
    """A standard normal cotangent for each leaf of ``shapes`` (``jax.ShapeDtypeStruct``\\ s)."""

    def draw(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            raise TypeError(f"forward must return floating arrays, got an output of dtype {leaf.dtype}")
        return jnp.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype))

    return jax.tree.map(draw, shapes)


def _perturbed(rng, array):
    """An independent second input: each floating element times its own factor in [0.5, 1]."""
    if not _differentiable(array):
        return array
    host = np.asarray(array)
    return jnp.asarray((host * rng.uniform(0.5, 1.0, size=host.shape)).astype(host.dtype))


def _stack(first, second):
    return jax.tree.map(lambda a, b: jnp.asarray(np.stack([np.asarray(a), np.asarray(b)])), first, second)


def relative_difference(actual, expected) -> float:
    """``max|a − b| / max(max|b|, tiny)``; NaN or ±inf in the same places count as equal.

    Args:
      actual, expected: arrays of the same shape.

    Returns:
      The relative difference, ``inf`` where a NaN or infinity stands in one and not the other.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.size == 0:
        return 0.0
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(actual - expected))
    diff = np.nan_to_num(diff, nan=np.inf, posinf=np.inf)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(float(finite.max()) if finite.size else 0.0, _TINY)
    return float(np.max(diff)) / scale


def _as_cotangents(result, count, where):
    if not isinstance(result, (tuple, list)):
        raise AssertionError(
            f"backward must return a tuple of {count} cotangents (one per positional array), "
            f"got {type(result).__name__} {where}"
        )
    if len(result) != count:
        raise AssertionError(
            f"backward must return {count} cotangents (one per positional array, None for absent or "
            f"non-differentiable ones), got {len(result)} {where}"
        )
    return tuple(result)


def _compare(actual, expected, arrays, names, where, batch_shape=()):
    """Checks each cotangent against the oracle's; ``{name: relative difference}``."""
    differences = {}
    for i, array in enumerate(arrays):
        if array is None:
            if actual[i] is not None:
                raise AssertionError(f"backward must return None for the absent {names[i]}, got {actual[i]!r} {where}")
            continue
        if not _differentiable(array):
            continue  # labels, keys: hand_rule expects None there; nothing to prove
        if actual[i] is None:
            if np.any(np.asarray(expected[i]) != 0):
                raise AssertionError(
                    f"backward returned None for {names[i]} but jax.vjp gives it a nonzero cotangent {where}"
                )
            differences[names[i]] = 0.0
            continue
        want = batch_shape + tuple(jnp.shape(array))
        if tuple(jnp.shape(actual[i])) != want:
            raise AssertionError(
                f"backward's cotangent for {names[i]} has shape {tuple(jnp.shape(actual[i]))}, "
                f"expected {want} (the argument's shape) {where}"
            )
        differences[names[i]] = relative_difference(actual[i], expected[i])
    return differences


# Every computation below is one jitted program whose functions and configuration are static
# arguments: a new shape costs one compilation each (not one per primitive, as eager dispatch
# would), and a rule, configuration and shape seen before cost none.


def _vjp_of(forward, config_items, slots, dy, *arrays):
    """The oracle: ``jax.vjp`` of ``forward`` in the arrays at ``slots``, applied to ``dy``."""

    def of_differentiable(*values):
        full = list(arrays)
        for i, value in zip(slots, values):
            full[i] = value
        return forward(*full, **dict(config_items))

    _, pullback = jax.vjp(of_differentiable, *(arrays[i] for i in slots))
    return pullback(dy)


def _backward_of(backward, config_items, dy, *arrays):
    return backward(dy, *arrays, **dict(config_items))


def _mapped_backward_of(backward, config_items, in_axes, dy, *arrays):
    rule = lambda dy, *arrays: backward(dy, *arrays, **dict(config_items))
    return jax.vmap(rule, in_axes=in_axes)(dy, *arrays)


_JITTED = {fn: jax.jit(fn, static_argnums=(0, 1, 2)) for fn in (_vjp_of, _mapped_backward_of)}
_JITTED[_backward_of] = jax.jit(_backward_of, static_argnums=(0, 1))


def _compiled(fn, *static):
    """``jit(fn)`` with its leading ``static`` arguments bound: cached when they hash, else fresh."""
    try:
        hash(static)
    except TypeError:  # an unhashable configuration value (a list, an array): compile for this call
        return jax.jit(functools.partial(fn, *static))
    return functools.partial(_JITTED[fn], *static)


def _oracle(forward, config, arrays, rng):
    """``(dy, cotangents)``: a random ``dy`` and ``jax.vjp(forward)(dy)``, None where not differentiable."""
    slots = tuple(i for i, a in enumerate(arrays) if _differentiable(a))
    shapes = jax.eval_shape(lambda *a: forward(*a, **config), *arrays)
    dy = _random_like(rng, shapes)
    grads = _compiled(_vjp_of, forward, _items(config), slots)(dy, *arrays)
    expected = [None] * len(arrays)
    for i, g in zip(slots, grads):
        expected[i] = g
    return dy, expected


def _items(config):
    return tuple(sorted(config.items()))


def _run(fn, where):
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as error:  # the rule's own failure under a transformation is a failed proof
        raise AssertionError(f"backward failed {where}: {type(error).__name__}: {error}") from error


def assert_hand_rule(forward, backward, *arrays, rtol=1e-10, seed=0, **config) -> float:
    """Proves ``backward`` equal to ``jax.vjp(forward)`` in float64, under ``jit`` and ``vmap``.

    For every differentiable (floating) positional array it checks

    .. math::
       \\frac{\\max |\\mathrm{backward}(\\bar{y}, \\dots)_i - \\mathrm{vjp}(\\bar{y})_i|}
             {\\max(\\max |\\mathrm{vjp}(\\bar{y})_i|, \\mathrm{tiny})} \\le \\mathrm{rtol}

    with random cotangents :math:`\\bar{y}`, once under ``jax.jit`` on ``arrays`` and once
    under ``jax.vmap`` over two independent stacked inputs and cotangents.

    Args:
      forward: ``forward(*arrays, **config) -> y`` (an array or a pytree of floating arrays).
      backward: ``backward(dy, *arrays, **config) -> tuple`` with one cotangent per positional
        array, each shaped like its array; ``None`` for absent (``None``) or non-differentiable
        (integer, PRNG key) arrays, and allowed wherever the true cotangent is zero.
      *arrays: the positional inputs, any shapes; floating ones are cast to float64.
      rtol: the largest relative difference accepted, a real number in ``(0, inf)``.
      seed: seeds the cotangents and the second (vmapped) input.
      **config: static keyword configuration passed to both functions.

    The oracle is JAX's own differentiation rules, exact only to rounding relative to the
    gradient's scale: some compute a derivative as a difference that cancels deep in
    saturation (``1 − tanh² x``, ``σ(1 − σ)`` for ``|x| ≳ 10``). An input made only of such
    values compares against the oracle's rounding; include values with an O(1) derivative.

    Returns:
      The largest relative difference found (a float ``<= rtol``).

    Raises:
      AssertionError: the rule differs by more than ``rtol`` (naming the argument, the
        difference and the tolerance), returns the wrong number of cotangents, a wrong
        shape, ``None`` where the true cotangent is nonzero, or fails under ``jit``/``vmap``.
      TypeError, ValueError: ``forward``/``backward`` not callable, or a bad ``rtol``.
    """
    _check_arguments(forward, backward, rtol)
    names = _argument_names(forward, len(arrays))
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        first = tuple(_to_float64(a) for a in arrays)
        second = tuple(_perturbed(rng, a) for a in first)
        dy0, expected0 = _oracle(forward, config, first, rng)
        dy1, expected1 = _oracle(forward, config, second, rng)

        where = "under jax.jit"
        jitted = _run(lambda: _compiled(_backward_of, backward, _items(config))(dy0, *first), where)
        jitted = _as_cotangents(jitted, len(arrays), where)
        differences = {where: _compare(jitted, expected0, first, names, where)}

        where = "under jax.vmap (two stacked inputs)"
        in_axes = (0,) + tuple(0 if _differentiable(a) else None for a in first)
        stacked = tuple(_stack(a, b) if _differentiable(a) else a for a, b in zip(first, second))
        mapped_rule = _compiled(_mapped_backward_of, backward, _items(config), in_axes)
        mapped = _run(lambda: mapped_rule(_stack(dy0, dy1), *stacked), where)
        mapped = _as_cotangents(mapped, len(arrays), where)
        expected = [None if e0 is None else _stack(e0, e1) for e0, e1 in zip(expected0, expected1)]
        differences[where] = _compare(mapped, expected, first, names, where, batch_shape=(2,))

    failures = [
        f"hand rule's cotangent for {name} differs from jax.vjp {where}: "
        f"relative difference {difference:.3g} > rtol {rtol:.3g}"
        for where, by_name in differences.items()
        for name, difference in by_name.items()
        if not difference <= rtol
    ]
    if failures:
        raise AssertionError("\n".join(failures))
    return max((d for by_name in differences.values() for d in by_name.values()), default=0.0)
