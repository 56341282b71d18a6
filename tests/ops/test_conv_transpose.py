"""Proofs for jaxcnn.conv_transpose: the adjoint of conv, hand rule == jax.vjp, lax == explicit, == PyTorch.

Oracles: the defining identity ⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩ with
``jaxcnn.conv`` (itself proven against jax.grad and loops in test_conv.py), JAX's
own transpose of ``lax.conv_general_dilated`` (``jax.vjp`` of the lax conv in x),
``jax.vjp`` of the autodiff op for the hand rule, and
``torch.nn.functional.conv_transpose{1,2,3}d``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn import conv, conv_transpose, conv_transpose_backward
from jaxcnn.ops import onednn
from jaxcnn.ops._native import loader
from jaxcnn.ops import padding as padding_lib
from jaxcnn.ops.convolution import CONCRETE_IMPLS, MAX_PATCH_ELEMENTS, conv_config
from jaxcnn.ops.transposed_conv import resolve_impl, transpose_config
from jaxcnn.testing import assert_hand_rule
from hypothesis_profiles import examples
from oracles import assert_close, conv_cases, needs_onednn, run_fast, vjp

IMPLS = ("lax", "explicit")  # what "auto" picks; the other impls of conv's: test_every_conv_impl_transposes_like_lax


def _normal(shape, seed, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _conv_options(options):
    return {k: v for k, v in options.items() if k != "output_padding"}


# ------------------------------------------------------------------ strategies


@st.composite
def transpose_cases(draw):
    """``(x_shape, w_shape, y_shape, options, seed)`` of a conv ``x → y`` and the
    ``output_padding`` that makes its transpose map ``y`` back onto ``x``'s shape.

    ``conv_cases`` draws any conv; ``op`` is the number of trailing input rows that
    the stride never reached, ``(n + lo + hi − d(f−1) − 1) mod s``, so ``x``'s shape is
    the expected result of the transpose. With ``"SAME"`` the transpose's size is
    ``s·n_y`` (and ``op = 0``), so ``x`` is redrawn at that size.
    """
    x_shape, w_shape, options, seed = draw(conv_cases())
    rank = len(w_shape) - 2
    stride = padding_lib.normalize_tuple(options["stride"], rank, "stride")
    config = conv_config(x_shape, w_shape, **options)
    y_spatial = padding_lib.output_spatial(x_shape[1:-1], w_shape[:rank], config.pairs, stride, config.dilation)
    if isinstance(options["padding"], str) and options["padding"] == "SAME":
        x_shape = (x_shape[0], *(s * n for s, n in zip(stride, y_spatial)), x_shape[-1])
        output_padding = 0
    else:
        output_padding = tuple(
            (n + lo + hi - d * (f - 1) - 1) % s
            for n, f, (lo, hi), s, d in zip(x_shape[1:-1], w_shape[:rank], config.pairs, stride, config.dilation)
        )
        if draw(st.booleans()) and len(set(output_padding)) == 1:
            output_padding = output_padding[0]  # the int form
    y_shape = (x_shape[0], *y_spatial, w_shape[-1])
    return x_shape, w_shape, y_shape, dict(options, output_padding=output_padding), seed


def _everything(x, y, w, b, dz, options):
    """Both impls' forward, inner product, hand rule and VJPs, plus conv's side (one jit program)."""
    results = {}
    for impl in IMPLS:
        def op(y, w, b, grad="autodiff", impl=impl):
            return conv_transpose(y, w, b, impl=impl, grad=grad, **options)

        z = op(y, w, None)
        results[impl] = dict(
            z=z,
            inner=jnp.vdot(x, z),
            scale=jnp.vdot(jnp.abs(x), jnp.abs(z)),
            biased=op(y, w, b),
            hand=conv_transpose_backward(dz, y, w, impl=impl, **options),
            manual=vjp(lambda *a: op(*a, grad="manual"), (y, w, b), dz),
            autodiff=vjp(op, (y, w, b), dz),
        )
    # jax.vjp of the explicit conv (no lax.conv*): XLA:CPU aborts on some transposes of lax convs.
    explicit_conv = lambda x: conv(x, w, impl="explicit", **_conv_options(options))
    results["conv"] = dict(inner=jnp.vdot(conv(x, w, impl="lax", **_conv_options(options)), y),
                           transpose=vjp(explicit_conv, (x,), y)[0])
    return results


# ---------------------------------------------------------------- properties


@given(transpose_cases())
@pytest.mark.slow
def test_adjoint_identity_hand_rule_and_impls_float64(x64, case):
    """⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩; result == JAX's transpose of the explicit conv;
    lax == explicit; hand rule, manual and autodiff VJPs == jax.vjp of the lax op; all to 1e-10."""
    x_shape, w_shape, y_shape, options, seed = case
    x, y, w = _normal(x_shape, seed), _normal(y_shape, seed + 1), _normal(w_shape, seed + 2)
    b, dz = _normal(x_shape[-1:], seed + 3), _normal(x_shape, seed + 4)
    compiled = jax.jit(lambda *a: _everything(*a, options),
                       compiler_options={"xla_backend_optimization_level": 0})
    results = compiled(x, y, w, b, dz)
    expected = results["lax"]["autodiff"]
    for impl in IMPLS:
        msg = f"impl={impl} {options} y{y_shape} w{w_shape}"
        got = results[impl]
        assert got["z"].shape == x_shape, msg
        inner, reference = float(got["inner"]), float(results["conv"]["inner"])
        assert abs(inner - reference) <= 1e-10 * max(1.0, float(got["scale"])), (inner, reference, msg)
        assert_close(got["z"], results["conv"]["transpose"], rtol=1e-10, err_msg=msg)
        assert_close(got["biased"], got["z"] + b, rtol=1e-10, err_msg=msg)
        for name, hand, manual, autodiff, want in zip("ywb", got["hand"], got["manual"], got["autodiff"], expected):
            assert_close(hand, want, rtol=1e-10, err_msg=f"hand d{name} {msg}")
            assert_close(manual, want, rtol=1e-10, err_msg=f"manual d{name} {msg}")
            assert_close(autodiff, want, rtol=1e-10, err_msg=f"autodiff d{name} {msg}")


# (y_shape, w_shape, options) on which every impl of conv's serves as the transposed conv's: a 3×3
# stride-1 one (Winograd's) and a strided, dilated, grouped one (the others').
EVERY_IMPL_CASES = [
    ((2, 5, 4, 4), (3, 3, 2, 4), dict(padding="SAME", groups=2)),
    ((1, 4, 5, 6), (3, 2, 2, 6), dict(stride=2, padding=1, output_padding=(1, 0), dilation=(1, 2), groups=3)),
]


@pytest.mark.parametrize("y_shape,w_shape,options", EVERY_IMPL_CASES, ids=["3x3", "strided"])
def test_every_conv_impl_transposes_like_lax_float64(x64, y_shape, w_shape, options):
    """conv's impls beyond lax and explicit (fft, winograd, hybrid; onednn through its float64 fallback to lax) as the
    transposed conv's: its forward (their
    input gradient), its hand rule (their forward and kernel gradient) and both VJPs equal lax's, to 1e-10."""
    impls = [impl for impl in CONCRETE_IMPLS if impl not in IMPLS]
    if options.get("stride", 1) != 1:
        impls.remove("winograd")
    x_shape, _ = transpose_config(y_shape, w_shape, **dict(dict(stride=1, output_padding=0, dilation=1, groups=1),
                                                           **options))
    y, w, b, dz = (_normal(shape, i) for i, shape in enumerate((y_shape, w_shape, x_shape[-1:], x_shape)))

    def everything(y, w, b, dz):
        results = {}
        for impl in ("lax", *impls):
            op = lambda *a, impl=impl, grad="autodiff": conv_transpose(*a, impl=impl, grad=grad, **options)
            results[impl] = (op(y, w, b), conv_transpose_backward(dz, y, w, impl=impl, **options),
                             vjp(lambda *a: op(*a, grad="manual"), (y, w, b), dz), vjp(op, (y, w, b), dz))
        return results

    results = run_fast(everything, y, w, b, dz)
    reference, _, _, expected = results.pop("lax")
    for impl, (z, hand, manual, autodiff) in results.items():
        assert_close(z, reference, rtol=1e-10, err_msg=impl)
        for name, h, m, a, e in zip("ywb", hand, manual, autodiff, expected):
            for rule, got in (("hand", h), ("manual", m), ("autodiff", a)):
                assert_close(got, e, rtol=1e-10, err_msg=f"{impl} {rule} d{name}")


# (y_shape, w_shape, options): 1-D, 2-D, 3-D; groups; dilation; every padding form; output_padding.
CASES = [
    ((2, 5, 3), (3, 2, 3), dict(stride=2, padding="VALID", output_padding=1)),
    ((2, 6, 4), (2, 1, 4), dict(stride=3, padding=[(2, 0)], dilation=2, groups=2, output_padding=2)),
    ((1, 4, 5, 6), (3, 2, 2, 6), dict(stride=2, padding=1, output_padding=(1, 0), dilation=(1, 2), groups=3)),
    ((2, 3, 4, 2), (3, 3, 2, 2), dict(stride=(2, 1), padding="SAME")),
    ((1, 6, 5, 2), (2, 3, 3, 2), dict(padding="FULL")),
    ((1, 3, 4, 2, 4), (2, 3, 2, 1, 4), dict(stride=(2, 1, 2), padding=[(0, 1), (1, 1), (1, 0)],
                                            output_padding=(1, 0, 0), groups=2)),
    ((1, 2, 3, 3, 2), (2, 2, 2, 3, 2), dict(stride=2, padding="SAME", dilation=(1, 2, 1))),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("y_shape,w_shape,options", CASES, ids=[str(c[2]) for c in CASES])
@pytest.mark.slow
def test_hand_rule_assert_hand_rule(impl, y_shape, w_shape, options):
    """The public checker: conv_transpose_backward == jax.vjp(conv_transpose), float64, jit and vmap."""
    y, w = _normal(y_shape, 0, jnp.float32), _normal(w_shape, 1, jnp.float32)
    x_shape, _ = transpose_config(y_shape, w_shape, **dict(dict(stride=1, padding="VALID", output_padding=0,
                                                                dilation=1, groups=1), **options))
    b = _normal(x_shape[-1:], 2, jnp.float32)
    # The config is baked into jitted functions: the checker's eager jax.vjp oracle then runs one program.
    difference = assert_hand_rule(
        jax.jit(lambda y, w, b: conv_transpose(y, w, b, impl=impl, **options)),
        lambda dx, y, w, b: conv_transpose_backward(dx, y, w, impl=impl, **options),
        y, w, b, rtol=1e-10,
    )
    assert difference <= 1e-10


FLOAT32_GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g, output_padding=0 if s == 1 or p == "SAME" else 1)
    for s, p, (d, g) in itertools.product((1, 2), ("VALID", "SAME", "FULL", 1, [(0, 2), (3, 1)]), ((1, 1), (2, 2)))
]


def _impl_results(y, w, b, dz, options, impls=IMPLS):
    results = {}
    for impl in impls:
        op = lambda *a, impl=impl, grad="autodiff": conv_transpose(*a, impl=impl, grad=grad, **options)
        results[impl] = (op(y, w, b), conv_transpose_backward(dz, y, w, impl=impl, **options),
                         vjp(lambda *a: op(*a, grad="manual"), (y, w, b), dz), vjp(op, (y, w, b), dz))
    return results


def _check_float32(device, y_shape, w_shape, options, impl="explicit", seed=0):
    """lax == ``impl`` in float32, forward and every backward (hand rule, manual and autodiff VJPs), to 1e-5 of
    the result's scale."""
    x_shape, _ = transpose_config(y_shape, w_shape, **options)
    shapes = (y_shape, w_shape, x_shape[-1:], x_shape)
    arrays = [_normal(s, seed + i, jnp.float32) for i, s in enumerate(shapes)]
    arrays = jax.device_put(arrays, device)
    results = jax.jit(lambda *a: _impl_results(*a, options, impls=("lax", impl)))(*arrays)
    lax_forward, *lax_grads = results["lax"]
    impl_forward, *impl_grads = results[impl]
    msg = f"impl={impl} {options} y{y_shape} w{w_shape}"
    assert_close(impl_forward, lax_forward, rtol=1e-5, err_msg=msg)
    for lax_rule, impl_rule in zip(lax_grads, impl_grads):
        for name, got, want in zip("ywb", impl_rule, lax_rule):
            assert_close(got, want, rtol=1e-5, err_msg=f"d{name} {msg}")


@needs_onednn
@examples(8)
@given(transpose_cases())
def test_onednn_equals_lax_float32(case):
    """``impl="onednn"`` (conv's three oneDNN passes in the transposed order: backward-data forward, then
    forward and backward-weights as the hand rule) == lax in float32 on drawn 1-3-d shapes with every option,
    to 1e-5 of the result's scale, the float32 agreement the explicit impl is held to; its float64 fallback
    is ``test_every_conv_impl_transposes_like_lax_float64``."""
    _, w_shape, y_shape, options, seed = case
    _check_float32(jax.devices("cpu")[0], y_shape, w_shape, options, impl="onednn", seed=seed)


@pytest.mark.parametrize("options", FLOAT32_GRID, ids=str)
@pytest.mark.slow
def test_explicit_equals_lax_float32_2d(device, options):
    _check_float32(device, (2, 5, 4, 6), (3, 2, 4 // options["groups"], 6), options)


@pytest.mark.parametrize("rank", (1, 3))
def test_explicit_equals_lax_float32_1d_3d(device, rank):
    y_shape, w_shape = ((2, 7, 3), (3, 2, 3)) if rank == 1 else ((1, 3, 4, 2, 3), (2, 3, 2, 2, 3))
    options = dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1)
    _check_float32(device, y_shape, w_shape, options)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.slow
def test_grad_of_grad_manual_equals_autodiff(x64, impl):
    y, w, b = _normal((2, 4, 5, 4), 0), _normal((3, 2, 2, 4), 1), _normal((4,), 2)
    options = dict(stride=2, padding=[(1, 0), (0, 2)], output_padding=(1, 0), dilation=(2, 1), groups=2, impl=impl)

    def input_grad_norm(w, grad):
        loss = lambda y: jnp.sum(jnp.tanh(conv_transpose(y, w, b, grad=grad, **options)))
        return jnp.sum(jax.grad(loss)(y) ** 2)

    expected = jax.grad(input_grad_norm)(w, "autodiff")
    assert_close(jax.grad(input_grad_norm)(w, "manual"), expected, rtol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.slow
def test_check_grads_numerical(x64, impl):
    """Finite differences, second order, for both gradient modes."""
    y, w, b = _normal((2, 4, 3), 3), _normal((3, 2, 3), 4), _normal((2,), 5)
    options = dict(stride=2, padding="SAME", dilation=2, impl=impl)
    for grad in ("autodiff", "manual"):
        jax.test_util.check_grads(
            lambda *a: conv_transpose(*a, grad=grad, **options), (y, w, b), order=2, modes=["rev"])


# ------------------------------------------------------------------ PyTorch


# (y_shape, w_shape, stride, padding (symmetric), output_padding, dilation, groups)
TORCH_CASES = [
    ((2, 7, 3), (3, 2, 3), 2, 1, 1, 1, 1),
    ((1, 6, 4), (4, 1, 4), 3, 2, 2, 2, 2),
    ((2, 4, 5, 6), (3, 2, 2, 6), (2, 3), (1, 0), (1, 2), (1, 2), 3),
    ((1, 5, 5, 4), (3, 3, 4, 4), 1, 2, 0, 2, 1),
    ((2, 3, 4, 2), (2, 2, 3, 2), 2, 0, 1, 1, 1),
    ((1, 3, 2, 4, 4), (2, 3, 2, 1, 4), (2, 1, 2), (1, 1, 0), (1, 0, 1), 1, 2),
    ((1, 2, 3, 2, 2), (3, 2, 2, 2, 2), 2, 1, 0, (2, 1, 1), 1),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
@pytest.mark.slow
def test_forward_matches_pytorch(x64, impl, case):
    """torch's weight is (in_channels of the transpose = conv's out_channels, out // groups, *window)."""
    torch = pytest.importorskip("torch")
    y_shape, w_shape, stride, padding, output_padding, dilation, groups = case
    rank = len(w_shape) - 2
    y, w = _normal(y_shape, 0), _normal(w_shape, 1)
    b = _normal((w_shape[-2] * groups,), 2)
    pairs = [(p, p) for p in padding_lib.normalize_tuple(padding, rank, "padding", minimum=0)]
    z = conv_transpose(y, w, b, stride=stride, padding=pairs, output_padding=output_padding,
                       dilation=dilation, groups=groups, impl=impl)
    torch_fn = getattr(torch.nn.functional, f"conv_transpose{rank}d")
    channels_first = (0, rank + 1, *range(1, rank + 1))
    expected = torch_fn(
        torch.tensor(np.transpose(np.asarray(y), channels_first)),
        torch.tensor(np.transpose(np.asarray(w), (rank + 1, rank, *range(rank)))),
        torch.tensor(np.asarray(b)), stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    ).numpy()
    expected = np.transpose(expected, (0, *range(2, rank + 2), 1))
    assert_close(z, expected, rtol=1e-12, err_msg=str(case))
    if isinstance(padding, int):  # the int padding form means the same thing
        int_form = conv_transpose(y, w, b, stride=stride, padding=padding, output_padding=output_padding,
                                  dilation=dilation, groups=groups, impl=impl)
        assert_close(int_form, expected, rtol=1e-12)


# ------------------------------------------------------- the explicit impl


def _primitives(jaxpr):
    """Every primitive name in a (closed) jaxpr, sub-jaxprs included (pjit, custom_vjp, scan, ...)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(item, "eqns") or hasattr(getattr(item, "jaxpr", None), "eqns"):
                    names |= _primitives(item)
    return names


def _traced_primitives(impl, y_shape, w_shape, options):
    x_shape, _ = transpose_config(y_shape, w_shape, **options)
    y, w, b, dz = (jnp.zeros(s) for s in (y_shape, w_shape, x_shape[-1:], x_shape))
    traces = {"forward": jax.make_jaxpr(lambda *a: conv_transpose(*a, impl=impl, **options))(y, w, b),
              "hand rule": jax.make_jaxpr(lambda *a: conv_transpose_backward(*a, impl=impl, **options))(dz, y, w)}
    for grad in ("autodiff", "manual"):
        op = lambda *a, grad=grad: conv_transpose(*a, impl=impl, grad=grad, **options)
        traces[f"{grad} vjp"] = jax.make_jaxpr(lambda y, w, b, dz: vjp(op, (y, w, b), dz))(y, w, b, dz)
    return {name: _primitives(trace) for name, trace in traces.items()}


EXPLICIT_CASES = [
    ((2, 4, 5, 4), (3, 2, 2, 4), dict(stride=2, padding=[(1, 0), (0, 2)], output_padding=(1, 0),
                                      dilation=(2, 1), groups=2)),
    ((1, 3, 2, 3, 2), (2, 2, 3, 2, 2), dict(stride=(1, 2, 2), padding="SAME", output_padding=0, dilation=1,
                                            groups=1)),
]


@pytest.mark.parametrize("y_shape,w_shape,options", EXPLICIT_CASES, ids=["2d", "3d"])
def test_explicit_impl_has_no_conv_primitive(y_shape, w_shape, options):
    """Forward, hand rule and both VJPs of ``impl="explicit"``: patches, GEMMs and col2im only."""
    for name, primitives in _traced_primitives("explicit", y_shape, w_shape, options).items():
        assert not [p for p in primitives if "conv" in p], (name, sorted(primitives))
    # The checker is not blind: the lax impl's traces do contain the convolution primitive.
    for name, primitives in _traced_primitives("lax", y_shape, w_shape, options).items():
        assert "conv_general_dilated" in primitives, (name, sorted(primitives))


_XLA_ABORT_CASE = """
import jax, jax.numpy as jnp, numpy as np
from jaxcnn import conv_transpose
y = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 3, 2)), jnp.float32)
w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2, 2, 2)), jnp.float32)
options = dict(stride=2, padding=1, dilation=(2, 1))
outputs = {}
for impl in ("lax", "explicit"):
    for grad in ("autodiff", "manual"):
        loss = lambda y, w: jnp.sum(conv_transpose(y, w, impl=impl, grad=grad, **options) ** 2)
        outputs[impl, grad] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(y, w)
leaves = lambda key: jax.tree.leaves(outputs[key])
print(max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
          for key in outputs for a, b in zip(leaves(key), leaves(("explicit", "autodiff")))))
"""


@pytest.mark.slow
def test_lax_impl_survives_the_xla_cpu_operand_swap_abort():
    """y (2, 3) with a (3, 2) kernel, stride 2, padding 1: XLA:CPU's simplifier swaps the operands
    of the lhs-dilated convolution and aborts the process on the f = s = 2 dimension unless
    ``jaxcnn.ops.convolution.lax.input_grad`` pads it by one more row (run in a subprocess: an abort must fail, not kill, the test)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", _XLA_ABORT_CASE], capture_output=True, text=True,
                            timeout=300, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) <= 1e-5, result.stdout


def _resolve(y_shape, w_shape, platform, dtype="float64", **options):
    options = dict(dict(stride=1, padding="VALID", output_padding=0, dilation=1, groups=1), **options)
    _, config = transpose_config(y_shape, w_shape, **options)
    return resolve_impl("auto", y_shape, w_shape, config, platform, dtype=dtype)


def test_auto_decision_table():
    """``"auto"`` follows conv's table, in float64: explicit on the CPU unless depthwise or too large; lax
    elsewhere (float32 on the CPU takes oneDNN's row first where it is available: the pinned tests below)."""
    assert _resolve((8, 13, 13, 64), (3, 3, 32, 64), "cpu", stride=2) == "explicit"
    assert _resolve((8, 13, 13, 64), (3, 3, 32, 64), "gpu", stride=2) == "lax"
    assert _resolve((4, 9, 8, 6), (3, 3, 2, 6), "cpu", groups=3) == "explicit"
    assert _resolve((4, 9, 8, 8), (3, 3, 1, 8), "cpu", groups=8) == "lax"  # depthwise
    big = MAX_PATCH_ELEMENTS // (9 * 64) + 1  # batch with one y pixel each: patch matrix just too large
    assert _resolve((big, 1, 1, 8), (3, 3, 64, 8), "cpu") == "lax"
    assert _resolve((1, 1, 1, 8), (3, 3, 64, 8), "cpu") == "explicit"
    for impl in IMPLS:
        assert resolve_impl(impl, None, None, None, "gpu") == impl


#: ``y`` without its batch, ``w`` and the options of transposed convs (the autoencoder's two upsampling layers
#: among them), and what ``auto`` picks for them on the CPU and off it, by batch.
PINNED_LAYERS = {
    "autoencoder up 7→14": ((7, 7, 32), (3, 3, 16, 32), dict(stride=2, padding="SAME")),
    "autoencoder up 14→28": ((14, 14, 16), (3, 3, 1, 16), dict(stride=2, padding="SAME")),
    "stride 2 window 2": ((4, 4, 8), (2, 2, 8, 8), dict(stride=2, padding="VALID")),
    "depthwise": ((9, 8, 4), (3, 3, 1, 4), dict(padding="SAME", groups=4)),
    "1-D grouped": ((16, 4), (5, 2, 4), dict(padding=1, groups=2)),
}
PINNED = {
    ('autoencoder up 7→14', 1): ('explicit', 'lax'),
    ('autoencoder up 7→14', 125): ('explicit', 'lax'),
    ('autoencoder up 7→14', 10000): ('explicit', 'lax'),
    ('autoencoder up 7→14', 100000): ('lax', 'lax'),
    ('autoencoder up 14→28', 1): ('explicit', 'lax'),
    ('autoencoder up 14→28', 125): ('explicit', 'lax'),
    ('autoencoder up 14→28', 10000): ('explicit', 'lax'),
    ('autoencoder up 14→28', 100000): ('explicit', 'lax'),
    ('stride 2 window 2', 1): ('explicit', 'lax'),
    ('stride 2 window 2', 125): ('explicit', 'lax'),
    ('stride 2 window 2', 10000): ('explicit', 'lax'),
    ('stride 2 window 2', 100000): ('explicit', 'lax'),
    ('depthwise', 1): ('lax', 'lax'),
    ('depthwise', 125): ('lax', 'lax'),
    ('depthwise', 10000): ('lax', 'lax'),
    ('depthwise', 100000): ('lax', 'lax'),
    ('1-D grouped', 1): ('explicit', 'lax'),
    ('1-D grouped', 125): ('explicit', 'lax'),
    ('1-D grouped', 10000): ('explicit', 'lax'),
    ('1-D grouped', 100000): ('explicit', 'lax'),
}


def _pinned_choices(dtype):
    choices = {}
    for name, batch in PINNED:
        spatial, w_shape, options = PINNED_LAYERS[name]
        choices[name, batch] = tuple(_resolve((batch, *spatial), w_shape, platform, dtype=dtype, **options)
                                     for platform in ("cpu", "gpu"))
    return choices


#: float32 where oneDNN's extension is available: every layer on the CPU but the depthwise one runs on oneDNN.
PINNED_FLOAT32_ONEDNN = {key: (("lax" if key[0] == "depthwise" else "onednn"), "lax") for key in PINNED}


def test_auto_picks_the_pinned_impl():
    """The transposed conv's ``auto`` table pinned, layer by layer and batch by batch: float64, and float32
    with oneDNN's row where the extension is available (the float64 table where it is not)."""
    assert _pinned_choices("float64") == PINNED
    assert _pinned_choices("float32") == (PINNED_FLOAT32_ONEDNN if onednn.available() else PINNED)


def test_auto_without_onednn_picks_the_float64_table_in_float32(monkeypatch):
    """Where the extension cannot be loaded, float32 follows the float64 table."""
    monkeypatch.setattr(loader, "native", lambda: loader.Native(None, "hidden by the test"))
    assert not onednn.available()
    assert _pinned_choices("float32") == PINNED


@pytest.mark.slow
def test_auto_on_this_backend_equals_lax():
    y, w = _normal((2, 4, 5, 4), 6, jnp.float32), _normal((3, 2, 2, 4), 7, jnp.float32)
    options = dict(stride=2, padding=1, output_padding=1, groups=2)
    assert_close(conv_transpose(y, w, **options), conv_transpose(y, w, impl="lax", **options), rtol=1e-5)


# ------------------------------------------------------------ output size


def test_output_size_inverts_conv_output_size():
    """Every ``op`` in [0, s) gives an input size the forward conv maps back to ``n``; SAME gives s·n."""
    for n, f, s, d in itertools.product(range(1, 6), range(1, 4), range(1, 4), range(1, 3)):
        assert padding_lib.conv_output_size(padding_lib.conv_transpose_output_size(n, f, "SAME", s, d),
                                            f, "SAME", s, d) == n
        for padding, op in itertools.product(("VALID", "FULL", 1, (2, 0)), range(s)):
            size = padding_lib.conv_transpose_output_size(n, f, padding, s, d, op)
            if size >= 1:
                assert padding_lib.conv_output_size(size, f, padding, s, d) == n, (n, f, s, d, padding, op)
                assert padding_lib.conv_output_size(size + s - op, f, padding, s, d) == n + 1


def test_output_size_numbers():
    size = padding_lib.conv_transpose_output_size
    assert size(3, 3, stride=2) == 7 and size(3, 3, stride=2, output_padding=1) == 8
    assert size(4, 3, "SAME", 2) == 8 and size(4, 3, 1) == 4 and size(6, 3, "FULL") == 4
    assert size(2, 3, (2, 2), 1, 2) == 2 and size(1, 3, "FULL") == -1


# --------------------------------------------------------------- bad arguments

Y, W = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 3, 2))
BAD = [
    (dict(y=jnp.zeros((4, 4, 2))), ValueError, "y must have shape .* 2 spatial dims"),
    (dict(w=jnp.zeros((3, 4, 2, 2, 2, 2))), ValueError, "w must have shape"),
    (dict(y=jnp.zeros((1, 4, 4, 3))), ValueError, "channel mismatch: y has 3 channels.*out_channels"),
    (dict(groups=3), ValueError, "groups=3 must divide y's channels"),
    (dict(groups=0), ValueError, "groups must be a positive int"),
    (dict(stride=0), ValueError, "stride entries must be >= 1"),
    (dict(dilation=(1, 2, 1)), ValueError, "dilation must be an int or a tuple of 2"),
    (dict(stride=2, output_padding=2), ValueError, "output_padding must satisfy 0 <= output_padding < stride"),
    (dict(output_padding=1), ValueError, "output_padding must satisfy .* got output_padding=\\(1, 1\\)"),
    (dict(stride=2, output_padding=-1), ValueError, "output_padding entries must be >= 0"),
    (dict(stride=2, output_padding=(1,)), ValueError, "output_padding must be an int or a tuple of 2"),
    (dict(stride=2, output_padding=0.5), TypeError, "output_padding must be an int"),
    (dict(stride=2, padding="SAME", output_padding=1), ValueError, 'output_padding must be 0 with padding="SAME"'),
    (dict(padding=4), ValueError, "padding 4 is too large for window \\(3, 3\\).*output shape \\(-2, -2\\)"),
    (dict(padding="HALF"), ValueError, "padding must be .*got the string 'HALF'"),
    (dict(padding=[(1, 1)]), ValueError, "one \\(lo, hi\\) pair per spatial dimension \\(2\\)"),
    (dict(impl="cudnn"), ValueError,
     "impl must be one of \\('lax', 'explicit', 'fft', 'winograd', 'hybrid', 'onednn', 'auto'\\), got 'cudnn'"),
    (dict(impl="fft", y=Y.astype(jnp.bfloat16), w=W.astype(jnp.bfloat16)), ValueError,
     'impl="fft" supports float32 and float64 operands, got y of dtype bfloat16; use impl="lax", "explicit", '
     '"winograd", "hybrid" or "auto" for bfloat16'),
    (dict(impl="fft", w=W.astype(jnp.float16)), ValueError, 'impl="fft" supports .* got w of dtype float16'),
    (dict(impl="winograd", y=Y.astype(jnp.int32), w=W.astype(jnp.int32)), ValueError,
     'impl="winograd" supports floating-point and complex operands, got y of dtype int32'),
    (dict(impl="winograd", stride=2), ValueError, 'impl="winograd" accepts .*stride 1.*got stride \\(2, 2\\)'),
    (dict(grad="numeric"), ValueError, "grad must be one of \\('autodiff', 'manual'\\)"),
    (dict(b=jnp.zeros(2)), ValueError, "b must have shape \\(3,\\) \\(in_channels"),
]


@pytest.mark.parametrize("change,error,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_clear_errors(change, error, match):
    args = dict(y=Y, w=W, b=None)
    args.update(change)
    y, w, b = args.pop("y"), args.pop("w"), args.pop("b")
    with pytest.raises(error, match=match):
        conv_transpose(y, w, b, **args)


def test_backward_checks_dx_shape_and_impl():
    with pytest.raises(ValueError, match="dx must have the transposed conv's output shape \\(1, 6, 6, 3\\)"):
        conv_transpose_backward(jnp.zeros((1, 6, 6, 2)), Y, W)
    with pytest.raises(ValueError, match="impl must be one of .*got 'Auto'"):
        conv_transpose_backward(jnp.zeros((1, 6, 6, 3)), Y, W, impl="Auto")


def test_output_size_rejects_bad_output_padding():
    with pytest.raises(ValueError, match="output_padding must be an int with 0 <= output_padding < stride \\(2\\)"):
        padding_lib.conv_transpose_output_size(3, 3, stride=2, output_padding=2)
