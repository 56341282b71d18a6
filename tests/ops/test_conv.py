"""Proofs for jaxcnn.conv: hand rules == jax.grad, explicit == lax, every option."""

import dataclasses
import itertools
import warnings

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxcnn import conv, conv_backward, conv_output_size
from jaxcnn.ops import convolution as conv_lib
from jaxcnn.ops import onednn
from jaxcnn.ops._native import loader
from jaxcnn.ops.convolution import (
    PATCH_CHUNK_BYTES,
    AUTO,
    CONCRETE_IMPLS,
    MAX_PATCH_ELEMENTS,
    REGISTRY,
    Impl,
    Policy,
    Rule,
    conv_config,
    explicit_impl,
    forward_only,
    hybrid_impl,
    resolve_impl,
    transpose_kernel,
    use_policy,
    winograd_rule,
)
from hypothesis_profiles import examples
from oracles import assert_close, conv_arrays as _arrays, conv_cases, vjp

# "auto" has its own tests below (it resolves to one of these at trace time).
IMPLS = ("lax", "explicit", "hybrid")
#: ``auto`` with the hand rule's Winograd row switched on at 16 input channels.
WINOGRAD_ROW = AUTO.with_rules(winograd_rule(16))


# ------------------------------------------------------------------ strategies


def _all_gradients(x, w, b, dy, options, impls):
    """Every impl's forward, hand rule, manual VJP and autodiff VJP (one jit program)."""
    results = {}
    for name, impl in impls.items():
        results[name] = (
            conv(x, w, b, impl=impl, **options),
            conv_backward(dy, x, w, impl=impl, **options),
            vjp(lambda *a: conv(*a, impl=impl, grad="manual", **options), (x, w, b), dy),
            vjp(lambda *a: conv(*a, impl=impl, **options), (x, w, b), dy),
        )
    return results


def _check_all(x, w, b, options, rtol, seed=0, impls=None):
    """Compares every impl and rule against ``jax.vjp`` of the lax conv (the oracle).

    ``impls``: name -> what ``impl=`` gets (default: each of :data:`IMPLS` by its name).
    """
    impls = impls or {name: name for name in IMPLS}
    reference = conv(x, w, b, impl="lax", **options)
    dy = jnp.asarray(np.random.default_rng(seed + 1).normal(size=reference.shape), x.dtype)
    # Compilation dominates these small cases; XLA's backend optimisations buy nothing here.
    compiled = jax.jit(lambda *a: _all_gradients(*a, options, impls),
                       compiler_options={"xla_backend_optimization_level": 0})
    results = compiled(x, w, b, dy)
    expected = results["lax"][3]
    for impl in impls:
        msg = f"impl={impl} {options} x{x.shape} w{w.shape}"
        forward, hand, manual, autodiff = results[impl]
        assert_close(forward, reference, rtol=rtol, err_msg=msg)
        for name, h, m, a, e in zip("xwb", hand, manual, autodiff, expected):
            assert_close(h, e, rtol=rtol, err_msg=f"hand d{name} {msg}")
            assert_close(m, e, rtol=rtol, err_msg=f"manual d{name} {msg}")
            assert_close(a, e, rtol=rtol, err_msg=f"autodiff d{name} {msg}")


# ---------------------------------------------------------------- properties


@given(conv_cases())
@pytest.mark.slow
def test_hand_rules_equal_autodiff_float64(x64, case):
    x_shape, w_shape, options, seed = case
    x, w, b = _arrays(x_shape, w_shape, seed, jnp.float64)
    _check_all(x, w, b, options, rtol=1e-10, seed=seed)


GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g)
    for s, p, d, g in itertools.product(
        (1, 2), ("VALID", "SAME", "FULL", 1, [(0, 2), (3, 1)]), (1, 2), (1, 2)
    )
]


@pytest.mark.parametrize("options", GRID, ids=str)
@pytest.mark.slow
def test_hand_rules_equal_autodiff_float32_2d(device, options):
    x, w, b = _arrays((2, 9, 8, 4), (3, 2, 4 // options["groups"], 6), 7, jnp.float32)
    x, w, b = jax.device_put((x, w, b), device)
    _check_all(x, w, b, options, rtol=1e-5)


@pytest.mark.parametrize("rank", (1, 3))
@pytest.mark.slow
def test_hand_rules_equal_autodiff_float32_1d_3d(device, rank):
    spatial, window = ((11,), (3,)) if rank == 1 else ((5, 6, 4), (2, 3, 2))
    x, w, b = _arrays((2, *spatial, 2), (*window, 2, 3), 3, jnp.float32)
    x, w, b = jax.device_put((x, w, b), device)
    _check_all(x, w, b, dict(stride=2, padding="SAME", dilation=1, groups=1), rtol=1e-5)
    _check_all(x, w, b, dict(stride=1, padding="FULL", dilation=2, groups=1), rtol=1e-5)


# ------------------------------------------------------------ slow references


def _loop_conv(x, w, stride, pad, dilation):
    """The definition, one output at a time (2-D, groups 1): y = Σ x_pad[p·s + t·d] w[t]."""
    x = np.pad(np.asarray(x), ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, _, cout = w.shape
    oh = (x.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    ow = (x.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, cout))
    for i, j, a, c in itertools.product(range(oh), range(ow), range(kh), range(kw)):
        y[:, i, j] += x[:, i * stride + a * dilation, j * stride + c * dilation] @ np.asarray(w)[a, c]
    return y


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_loop_definition(x64, impl):
    x, w, _ = _arrays((2, 7, 6, 3), (3, 2, 3, 4), 0, jnp.float64)
    for stride, dilation, pad in [(1, 1, ((0, 0), (0, 0))), (2, 2, ((1, 2), (3, 0)))]:
        y = conv(x, w, stride=stride, dilation=dilation, padding=pad, impl=impl)
        assert_close(y, _loop_conv(x, w, stride, pad, dilation), rtol=1e-12)


@pytest.mark.slow
def test_input_gradient_is_full_correlation_with_rotated_kernel(x64):
    """Seed 001: ∂L/∂X = full-padded ∂L/∂Z correlated with K rotated 180°."""
    x, w, _ = _arrays((1, 6, 6, 1), (3, 3, 1, 1), 1, jnp.float64)
    dy = jnp.asarray(np.random.default_rng(2).normal(size=(1, 4, 4, 1)))
    dx, _, _ = conv_backward(dy, x, w)
    rotated = np.asarray(w)[::-1, ::-1]
    assert_close(dx, _loop_conv(dy, rotated, 1, ((2, 2), (2, 2)), 1), rtol=1e-12)


def test_seed_001_two_by_two_example():
    """Seed 003's worked 3×3 input, 2×2 filter, stride 1: output 2×2, N₂ = (3 − 2)/1 + 1."""
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    w = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    y = conv(x, w)[0, :, :, 0]
    xs, ws = np.arange(9.0).reshape(3, 3), np.array([[1.0, 2.0], [3.0, 4.0]])
    top_left = xs[0, 0] * ws[0, 0] + xs[0, 1] * ws[0, 1] + xs[1, 0] * ws[1, 0] + xs[1, 1] * ws[1, 1]
    assert y.shape == (2, 2) and float(y[0, 0]) == top_left
    assert float(y[1, 1]) == xs[1, 1] * 1 + xs[1, 2] * 2 + xs[2, 1] * 3 + xs[2, 2] * 4


def test_rotated_kernel_seed_001():
    """K = [[K11, K12], [K21, K22]] rotated 180° is [[K22, K21], [K12, K11]]."""
    k = jnp.array([[11.0, 12.0], [21.0, 22.0]]).reshape(2, 2, 1, 1)
    np.testing.assert_array_equal(transpose_kernel(k, 1)[..., 0, 0], [[22.0, 21.0], [12.0, 11.0]])


def test_transpose_kernel_swaps_channels_per_group():
    w = jnp.arange(2 * 3 * 4.0).reshape(1, 2, 3, 4)  # groups=2: C_in/g=3, C_out=4
    t = transpose_kernel(w, 2)
    assert t.shape == (1, 2, 2, 6)
    # group 1, out channel 1 of that group (global 3), in channel 2 of that group (global 5)
    assert t[0, 1, 1, 5] == w[0, 0, 2, 3]


# ----------------------------------------------------- transformations, checks


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.slow
def test_check_grads_numerical(x64, impl):
    x, w, b = _arrays((2, 6, 5, 2), (3, 2, 1, 4), 4, jnp.float64)
    options = dict(stride=2, padding=[(1, 0), (2, 1)], dilation=(1, 2), groups=2, impl=impl)
    for grad in ("autodiff", "manual"):
        jax.test_util.check_grads(
            lambda *a: conv(*a, grad=grad, **options), (x, w, b), order=2, modes=["rev"]
        )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.slow
def test_grad_of_grad_manual_equals_autodiff(x64, impl):
    x, w, b = _arrays((2, 7, 3), (3, 3, 2), 5, jnp.float64)
    options = dict(stride=2, padding="SAME", dilation=2, impl=impl)

    def input_grad_norm(w, grad):
        loss = lambda x: jnp.sum(jnp.tanh(conv(x, w, b, grad=grad, **options)))
        return jnp.sum(jax.grad(loss)(x) ** 2)

    expected = jax.grad(input_grad_norm)(w, "autodiff")
    assert_close(jax.grad(input_grad_norm)(w, "manual"), expected, rtol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_under_jit_and_vmap(impl):
    x, w, b = _arrays((3, 2, 8, 8, 2), (3, 3, 2, 3), 6, jnp.float32)
    options = dict(stride=2, padding="SAME", impl=impl)

    def grads(grad):
        loss = lambda x, w, b: jnp.sum(conv(x, w, b, grad=grad, **options) ** 2)
        return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, None, None)))(x, w, b)

    for hand, auto in zip(grads("manual"), grads("autodiff")):
        assert_close(hand, auto, rtol=1e-5)


# --------------------------------------------------------------- bad arguments

X, W = jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 4, 2))
BAD = [
    (dict(x=jnp.zeros((5, 5, 4))), ValueError, "x must have shape"),
    (dict(w=jnp.zeros((3, 4, 2, 2, 2, 2))), ValueError, "w must have shape"),
    (dict(w=jnp.zeros((3, 3, 3, 2))), ValueError, "channel mismatch"),
    (dict(groups=3), ValueError, "groups=3 must divide"),
    (dict(groups=0), ValueError, "groups must be a positive int"),
    (dict(stride=0), ValueError, "stride entries must be >= 1"),
    (dict(stride=(1, 2, 3)), ValueError, "stride must be an int or a tuple of 2"),
    (dict(dilation=-1), ValueError, "dilation entries must be >= 1"),
    (dict(dilation=1.5), TypeError, "dilation must be an int"),
    (dict(padding="HALF"), ValueError, "padding must be .*VALID.*got the string 'HALF'"),
    (dict(padding=[(1, 1)]), ValueError, "one \\(lo, hi\\) pair per spatial dimension \\(2\\)"),
    (dict(padding=[(1, 1), (1,)]), TypeError, "padding must be"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(w=jnp.zeros((7, 7, 4, 2))), ValueError, "larger than the padded input"),
    (dict(impl="cudnn"), ValueError, "impl must be one of \\('lax', 'explicit', 'fft', 'winograd', 'hybrid', 'onednn', 'auto'\\), got 'cudnn'"),
    (dict(grad="numeric"), ValueError, "grad must be one of \\('autodiff', 'manual'\\)"),
    (dict(b=jnp.zeros(3)), ValueError, "b must have shape \\(2,\\)"),
    (dict(impl="fft", x=X.astype(jnp.bfloat16), w=W.astype(jnp.bfloat16)), ValueError,
     'impl="fft" supports float32 and float64 operands, got x of dtype bfloat16; use impl="lax", "explicit", '
     '"winograd", "hybrid" or "auto" for bfloat16'),
    (dict(impl="fft", w=W.astype(jnp.float16)), ValueError, 'impl="fft" supports .* got w of dtype float16'),
    (dict(impl="fft", x=X.astype(jnp.int32), w=W.astype(jnp.int32)), ValueError,
     'impl="fft" supports float32 and float64 operands, got x of dtype int32'),
    (dict(impl="winograd", x=X.astype(jnp.int32), w=W.astype(jnp.int32)), ValueError,
     'impl="winograd" supports floating-point and complex operands, got x of dtype int32; use impl="lax", '
     '"explicit", "hybrid" or "auto" for int32'),
    (dict(impl=AUTO.with_rules(winograd_rule(1)), grad="manual", x=X.astype(jnp.int32), w=W.astype(jnp.int32)),
     ValueError, 'impl="winograd" supports floating-point and complex operands'),  # a policy's pick is checked too
]


@pytest.mark.parametrize("change,error,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_raise_clear_errors(change, error, match):
    args = dict(x=X, w=W, b=None)
    args.update(change)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    with pytest.raises(error, match=match):
        conv(x, w, b, **args)


def test_conv_backward_rejects_bad_impl_listing_the_accepted_ones():
    with pytest.raises(ValueError, match="impl must be one of .*'auto'.*got 'Auto'"):
        conv_backward(jnp.zeros((1, 3, 3, 2)), X, W, impl="Auto")


def test_conv_backward_and_the_hand_rule_refuse_an_unsupported_dtype_in_one_line():
    x, w = X.astype(jnp.bfloat16), W.astype(jnp.bfloat16)
    for call in (lambda: conv_backward(jnp.zeros((1, 3, 3, 2), jnp.bfloat16), x, w, impl="fft"),
                 lambda: conv(x, w, impl="fft", grad="manual"),
                 lambda: jax.grad(lambda x: jnp.sum(conv(x, w, impl="fft")))(x)):
        with pytest.raises(ValueError, match='^impl="fft" supports float32 and float64 operands, got x of dtype '
                                             'bfloat16; use impl=.*"explicit".* for bfloat16'):
            call()
    with pytest.raises(ValueError, match='impl="fft" supports .* got dy of dtype bfloat16'):
        conv_backward(jnp.zeros((1, 3, 3, 2), jnp.bfloat16), X, W, impl="fft")


# ------------------------------------------------------ the registry and policies


def test_registry_rows_declare_their_dtypes():
    assert tuple(REGISTRY) == CONCRETE_IMPLS == ("lax", "explicit", "fft", "winograd", "hybrid", "onednn")
    assert all(REGISTRY[name].takes(dtype) for name in ("lax", "explicit", "hybrid")
               for dtype in (jnp.bfloat16, jnp.float16, jnp.float32, jnp.int32, jnp.complex64, jnp.bool_))
    assert REGISTRY["fft"].takes(jnp.float32) and not REGISTRY["fft"].takes(jnp.bfloat16)
    assert REGISTRY["winograd"].takes(jnp.float16) and not REGISTRY["winograd"].takes(jnp.int8)
    assert REGISTRY["onednn"].takes(jnp.float32) and REGISTRY["onednn"].takes(jnp.float64)
    assert not REGISTRY["onednn"].takes(jnp.bfloat16) and not REGISTRY["onednn"].takes(jnp.int32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["lax"].forward = None
    with pytest.raises(TypeError):
        REGISTRY["lax"] = REGISTRY["explicit"]  # an immutable mapping


def test_policy_table_is_immutable_and_checked():
    assert isinstance(AUTO.rules, tuple) and [rule.impl for rule in AUTO.rules] == [
        "lax", "lax", "onednn", "lax", "lax", "hybrid", "explicit"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AUTO.rules = ()
    with pytest.raises(ValueError, match="Rule impl must be one of \\('lax', .*'onednn'\\) or an Impl, got 'cudnn'"):
        Rule("cudnn", lambda case: True, "")
    only_gpu = Policy((Rule("lax", lambda case: case.platform == "gpu", "gpu only"),))
    with pytest.raises(ValueError, match="no rule of the conv policy holds"):
        conv(X, W, impl=only_gpu)
    with pytest.raises(TypeError, match="policy must be a jaxcnn.ops.convolution.Policy, got 'lax'"):
        with use_policy("lax"):
            pass


def test_a_policy_or_an_impl_passed_as_impl_decides_for_that_call_only(x64):
    """``impl=Policy`` and ``impl=Impl`` (explicit's forward with lax's hand rule, an unregistered mix) run what
    they name; ``use_policy`` changes what ``"auto"`` means inside it, and nothing outside."""
    x, w, b = _arrays((2, 7, 6, 3), (3, 3, 3, 4), 0, jnp.float64)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 4, 4)))
    mixed = Impl("mixed", REGISTRY["explicit"].forward, REGISTRY["lax"].input_grad, REGISTRY["lax"].kernel_grad)
    program = lambda impl, grad="autodiff": str(jax.make_jaxpr(
        lambda x, w: jax.vjp(lambda x, w: conv(x, w, impl=impl, grad=grad), x, w)[1](dy))(x, w))
    assert "conv_general_dilated" not in program(mixed) and "conv_general_dilated" in program(mixed, "manual")
    everything_lax = Policy((Rule("lax", lambda case: True, "always"),))
    assert "conv_general_dilated" in program(everything_lax) and "conv_general_dilated" not in program("auto")
    with use_policy(everything_lax):
        assert "conv_general_dilated" in program("auto")
    expected = vjp(lambda *a: conv(*a, impl="lax"), (x, w, b), dy)
    for got, want in zip(vjp(lambda *a: conv(*a, impl=mixed, grad="manual"), (x, w, b), dy), expected):
        assert_close(got, want, rtol=1e-10)
    assert_close(conv(x, w, b, impl=mixed), conv(x, w, b, impl="lax"), rtol=1e-10)


#: ``x`` (1, 3, 4, 2) with a (3, 2) kernel, stride 2, padding 1, dilation (2, 1): the input gradient is an
#: lhs-dilated convolution whose second dimension has f = s = 2, d = 1 and zero padding.
_XLA_ABORT_CASE = """
import jax, jax.numpy as jnp, numpy as np
from jaxcnn import conv
cases = [((1, 3, 4, 2), (3, 2, 2, 2), dict(stride=2, padding=1, dilation=(2, 1))),
         ((1, 3, 6, 2), (2, 2, 2, 2), dict(stride=(3, 2), padding=((1, 1), (1, 2)), dilation=(2, 1))),
         ((1, 4, 6, 2), (2, 3, 2, 2), dict(stride=(2, 3), padding=((1, 1), (0, 1)), dilation=(1, 2))),
         ((1, 1, 4, 2), (3, 2, 2, 2), dict(stride=(3, 2), padding=((2, 1), (1, 1)))),
         ((1, 4, 1, 2), (2, 2, 2, 2), dict(stride=2, padding=((1, 2), (0, 2))))]
worst = 0.0
for x_shape, w_shape, options in cases:
    x = jnp.asarray(np.random.default_rng(0).normal(size=x_shape), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=w_shape), jnp.float32)
    outputs = {}
    for impl in ("lax", "explicit"):
        for grad in ("autodiff", "manual"):
            loss = lambda x, w: jnp.sum(conv(x, w, impl=impl, grad=grad, **options) ** 2)
            outputs[impl, grad] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, w)
    leaves = lambda key: jax.tree.leaves(outputs[key])
    worst = max(worst, *(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for key in outputs
                         for a, b in zip(leaves(key), leaves(("explicit", "autodiff")))))
print(worst)
"""


@pytest.mark.slow
def test_lax_survives_the_xla_cpu_operand_swap_abort():
    """Both gradients of ``lax`` on the cases where XLA:CPU's operand swap aborts the process unguarded (``hybrid``
    runs the same forward and input gradient): the hand rule computes ``x̄`` with the guarded lhs-dilated convolution
    (``jaxcnn.ops.convolution.lax.input_grad``), and ``jax.grad`` differentiates a forward that gives ``x``
    one more zero row there (``jaxcnn.ops.convolution.lax.forward``). The cases are the first one found
    and four that a sweep of random shapes aborted on before the forward's guard (run in a subprocess: an
    abort must fail, not kill, the test)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", _XLA_ABORT_CASE], capture_output=True, text=True,
                            timeout=300, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) <= 1e-5, result.stdout


# -------------------------------------------------------------------- "auto"


def _resolve(x_shape, w_shape, platform, dtype="float64", **options):
    options = dict(dict(stride=1, padding="VALID", dilation=1, groups=1), **options)
    return resolve_impl("auto", x_shape, w_shape, conv_config(x_shape, w_shape, **options), platform, dtype=dtype)


@pytest.fixture
def without_onednn(monkeypatch):
    """The native extension unavailable, as where it cannot be built (``auto`` reads it at trace time)."""
    monkeypatch.setattr(loader, "native", lambda: loader.Native(None, "hidden by the test"))


def test_auto_decision_table():
    """The documented table of ``resolve_impl``, row by row, in float64 (float32 on the CPU takes oneDNN's row
    first where it is available: the pinned test below)."""
    classic = ((128, 26, 26, 32), (3, 3, 32, 64))
    assert _resolve(*classic, "cpu") == "explicit"  # not "winograd": see resolve_impl
    assert _resolve(*classic, "gpu") == "lax" and _resolve(*classic, "tpu") == "lax"
    assert _resolve((4, 9, 8, 4), (3, 3, 2, 6), "cpu", groups=2) == "explicit"
    assert _resolve((4, 9, 8, 4), (3, 3, 1, 8), "cpu", groups=4) == "lax"  # depthwise
    assert _resolve((4, 256, 16), (5, 16, 32), "cpu") == "explicit"
    big = (MAX_PATCH_ELEMENTS // (9 * 64) + 1, 3, 3, 64)  # one output pixel per example
    assert _resolve(big, (3, 3, 64, 8), "cpu") == "lax"
    assert _resolve((1, 3, 3, 64), (3, 3, 64, 8), "cpu") == "explicit"
    # padded 2-D, stride 1, >= 8 input channels (ResNet's 3×3 SAME convs): explicit for training, lax for a
    # forward alone (forward_only); not at stride 2, not C_in = 1, not 1-D, not dilated
    resnet = ((125, 28, 28, 16), (3, 3, 16, 16))
    assert _resolve(*resnet, "cpu", padding="SAME") == "explicit"
    with forward_only():
        assert _resolve(*resnet, "cpu", padding="SAME") == "lax"
        assert _resolve(*resnet, "cpu", padding=[(1, 0), (0, 0)]) == "lax"
        assert _resolve(*classic, "cpu") == "explicit"  # VALID: explicit evaluates faster
        assert _resolve((125, 28, 28, 16), (3, 3, 16, 32), "cpu", padding="SAME", stride=2) == "explicit"
        assert _resolve((125, 28, 28, 1), (3, 3, 1, 16), "cpu", padding="SAME") == "explicit"
        assert _resolve(*resnet, "cpu", padding="SAME", dilation=2) == "explicit"
        assert _resolve((4, 256, 16), (5, 16, 32), "cpu", padding="SAME") == "explicit"
        assert _resolve(*resnet, "gpu", padding="SAME") == "lax"
    assert _resolve(*resnet, "cpu", padding="SAME") == "explicit"  # the context is left behind
    config = conv_config(*resnet, stride=1, padding="SAME", dilation=1, groups=1)
    assert resolve_impl("auto", *resnet, config, "cpu", dtype="float64", forward_only=True) == "lax"
    # the same row under the hand rule (grad="manual", conv_backward): XLA's forward and input gradient,
    # im2col's kernel gradient; a forward alone still resolves to lax
    assert resolve_impl("auto", *resnet, config, "cpu", dtype="float64", manual=True) == "hybrid"
    assert resolve_impl("auto", *resnet, config, "cpu", dtype="float64", manual=True, forward_only=True) == "lax"
    assert resolve_impl("auto", *resnet, config, "gpu", dtype="float64", manual=True) == "lax"
    for x_shape, w_shape, options in [(*classic, {}), ((125, 28, 28, 16), (3, 3, 16, 32), dict(stride=2)),
                                      ((125, 28, 28, 1), (3, 3, 1, 16), {})]:
        options = dict(dict(stride=1, padding="SAME", dilation=1, groups=1), **options)
        if x_shape == classic[0]:
            options["padding"] = "VALID"
        assert resolve_impl("auto", x_shape, w_shape, conv_config(x_shape, w_shape, **options), "cpu",
                            dtype="float64", manual=True) == "explicit", (x_shape, options)
    for impl in CONCRETE_IMPLS:  # concrete names pass through
        assert resolve_impl(impl, *classic, conv_config(*classic, stride=1, padding="VALID",
                                                        dilation=1, groups=1), "gpu") == impl


def test_auto_winograd_row_when_switched_on():
    """The hand rule's Winograd row (off by default: not a rule of ``AUTO``), switched on at 16 (:data:`WINOGRAD_ROW`):
    2-D 3×3, stride 1, undilated, ungrouped, >= 16 input channels, padded or not, not a forward alone, the
    hybrid row first; never under ``jax.grad``. In float64; in float32 on the CPU oneDNN's row comes first."""
    classic = ((128, 26, 26, 32), (3, 3, 32, 64))
    resolve = lambda x_shape, w_shape, manual=True, policy=WINOGRAD_ROW, dtype="float64", **options: resolve_impl(
        policy, x_shape, w_shape, conv_config(x_shape, w_shape, **dict(
            dict(stride=1, padding="VALID", dilation=1, groups=1), **options)), "cpu", dtype=dtype, manual=manual)
    assert resolve(*classic, dtype="float32") == ("onednn" if onednn.available() else "winograd")
    assert all(rule.impl != "winograd" for rule in AUTO.rules) and resolve(*classic, policy=AUTO) == "explicit"
    assert resolve(*classic, policy="auto") == "explicit"  # off by default
    with use_policy(WINOGRAD_ROW):
        assert resolve(*classic, policy="auto") == "winograd"
    assert resolve(*classic) == "winograd" and resolve(*classic, manual=False) == "explicit"
    assert resolve((125, 14, 14, 32), (3, 3, 32, 32), padding="SAME") == "winograd"
    assert resolve((128, 26, 26, 16), (3, 3, 16, 64)) == "winograd"
    assert resolve((128, 26, 26, 15), (3, 3, 15, 64)) == "explicit"  # below the row
    assert resolve((125, 28, 28, 16), (3, 3, 16, 16), padding="SAME") == "hybrid"  # the hybrid row first
    config = conv_config(*classic, stride=1, padding="VALID", dilation=1, groups=1)
    assert resolve_impl(WINOGRAD_ROW, *classic, config, "cpu", dtype="float64", manual=True,
                        forward_only=True) == "explicit"
    assert resolve_impl(WINOGRAD_ROW, *classic, config, "gpu", dtype="float64", manual=True) == "lax"
    for x_shape, w_shape, options in [((125, 28, 28, 32), (3, 3, 32, 32), dict(stride=2)),  # strided
                                      ((125, 28, 28, 32), (3, 3, 32, 32), dict(dilation=2)),  # dilated
                                      ((125, 28, 28, 32), (3, 3, 16, 32), dict(groups=2)),  # grouped
                                      ((125, 28, 28, 32), (5, 5, 32, 32), {}),  # not 3×3
                                      ((125, 28, 32), (3, 32, 32), {})]:  # 1-D
        assert resolve(x_shape, w_shape, **options) == "explicit", (x_shape, w_shape, options)


# ------------------------------------------------- "auto" pinned on the models' layers

#: Every conv layer shape of the classic, lecture, ResNet-20 and sequence nets, plus grouped, depthwise,
#: dilated and 3-D ones: ``x`` without its batch, ``w`` and the options.
MODEL_LAYERS = {
    "classic/lecture conv1": ((28, 28, 1), (3, 3, 1, 32), dict(padding="VALID")),
    "classic/lecture conv2": ((26, 26, 32), (3, 3, 32, 64), dict(padding="VALID")),
    "resnet stem": ((28, 28, 1), (3, 3, 1, 16), dict(padding="SAME")),
    "resnet stage1": ((28, 28, 16), (3, 3, 16, 16), dict(padding="SAME")),
    "resnet stage2 down": ((28, 28, 16), (3, 3, 16, 32), dict(padding="SAME", stride=2)),
    "resnet stage2 project": ((28, 28, 16), (1, 1, 16, 32), dict(padding="VALID", stride=2)),
    "resnet stage2": ((14, 14, 32), (3, 3, 32, 32), dict(padding="SAME")),
    "resnet stage3 down": ((14, 14, 32), (3, 3, 32, 64), dict(padding="SAME", stride=2)),
    "resnet stage3 project": ((14, 14, 32), (1, 1, 32, 64), dict(padding="VALID", stride=2)),
    "resnet stage3": ((7, 7, 64), (3, 3, 64, 64), dict(padding="SAME")),
    "sequence conv1": ((256, 1), (5, 1, 16), dict(padding="SAME")),
    "sequence conv2": ((128, 16), (5, 16, 32), dict(padding="SAME")),
    "depthwise": ((9, 8, 4), (3, 3, 1, 4), dict(padding="SAME", groups=4)),
    "grouped": ((9, 8, 4), (3, 3, 2, 6), dict(padding="SAME", groups=2)),
    "dilated 16": ((28, 28, 16), (3, 3, 16, 16), dict(padding="SAME", dilation=2)),
    "3-D": ((6, 6, 6, 8), (3, 3, 3, 8, 8), dict(padding="SAME")),
}
#: The passes ``auto`` resolves for, in the order of :data:`PINNED`'s strings: ``(manual, forward_only)``.
PASSES = ((False, False), (True, False), (False, True), (True, True))
#: What ``impl="auto"`` picks on the CPU for (layer, batch), pass by pass: under ``jax.grad``, for the hand
#: rule, for a forward alone, for a forward alone under the hand rule; in float64, in other dtypes but
#: float32, and in float32 where oneDNN's extension is unavailable. Off the CPU every entry is ``"lax"``.
PINNED = {
    ('classic/lecture conv1', 1): 'explicit explicit explicit explicit',
    ('classic/lecture conv1', 125): 'explicit explicit explicit explicit',
    ('classic/lecture conv1', 2000): 'explicit explicit explicit explicit',
    ('classic/lecture conv1', 10000): 'explicit explicit explicit explicit',
    ('classic/lecture conv2', 1): 'explicit explicit explicit explicit',
    ('classic/lecture conv2', 125): 'explicit explicit explicit explicit',
    ('classic/lecture conv2', 2000): 'lax lax lax lax',
    ('classic/lecture conv2', 10000): 'lax lax lax lax',
    ('resnet stem', 1): 'explicit explicit explicit explicit',
    ('resnet stem', 125): 'explicit explicit explicit explicit',
    ('resnet stem', 2000): 'explicit explicit explicit explicit',
    ('resnet stem', 10000): 'explicit explicit explicit explicit',
    ('resnet stage1', 1): 'explicit hybrid lax lax',
    ('resnet stage1', 125): 'explicit hybrid lax lax',
    ('resnet stage1', 2000): 'explicit hybrid lax lax',
    ('resnet stage1', 10000): 'lax lax lax lax',
    ('resnet stage2 down', 1): 'explicit explicit explicit explicit',
    ('resnet stage2 down', 125): 'explicit explicit explicit explicit',
    ('resnet stage2 down', 2000): 'explicit explicit explicit explicit',
    ('resnet stage2 down', 10000): 'lax lax lax lax',
    ('resnet stage2 project', 1): 'explicit explicit explicit explicit',
    ('resnet stage2 project', 125): 'explicit explicit explicit explicit',
    ('resnet stage2 project', 2000): 'explicit explicit explicit explicit',
    ('resnet stage2 project', 10000): 'explicit explicit explicit explicit',
    ('resnet stage2', 1): 'explicit explicit lax lax',
    ('resnet stage2', 125): 'explicit explicit lax lax',
    ('resnet stage2', 2000): 'explicit explicit lax lax',
    ('resnet stage2', 10000): 'lax lax lax lax',
    ('resnet stage3 down', 1): 'explicit explicit explicit explicit',
    ('resnet stage3 down', 125): 'explicit explicit explicit explicit',
    ('resnet stage3 down', 2000): 'explicit explicit explicit explicit',
    ('resnet stage3 down', 10000): 'explicit explicit explicit explicit',
    ('resnet stage3 project', 1): 'explicit explicit explicit explicit',
    ('resnet stage3 project', 125): 'explicit explicit explicit explicit',
    ('resnet stage3 project', 2000): 'explicit explicit explicit explicit',
    ('resnet stage3 project', 10000): 'explicit explicit explicit explicit',
    ('resnet stage3', 1): 'explicit explicit explicit explicit',
    ('resnet stage3', 125): 'explicit explicit explicit explicit',
    ('resnet stage3', 2000): 'explicit explicit explicit explicit',
    ('resnet stage3', 10000): 'lax lax lax lax',
    ('sequence conv1', 1): 'explicit explicit explicit explicit',
    ('sequence conv1', 125): 'explicit explicit explicit explicit',
    ('sequence conv1', 2000): 'explicit explicit explicit explicit',
    ('sequence conv1', 10000): 'explicit explicit explicit explicit',
    ('sequence conv2', 1): 'explicit explicit explicit explicit',
    ('sequence conv2', 125): 'explicit explicit explicit explicit',
    ('sequence conv2', 2000): 'explicit explicit explicit explicit',
    ('sequence conv2', 10000): 'explicit explicit explicit explicit',
    ('depthwise', 1): 'lax lax lax lax',
    ('depthwise', 125): 'lax lax lax lax',
    ('depthwise', 2000): 'lax lax lax lax',
    ('depthwise', 10000): 'lax lax lax lax',
    ('grouped', 1): 'explicit explicit explicit explicit',
    ('grouped', 125): 'explicit explicit explicit explicit',
    ('grouped', 2000): 'explicit explicit explicit explicit',
    ('grouped', 10000): 'explicit explicit explicit explicit',
    ('dilated 16', 1): 'explicit explicit explicit explicit',
    ('dilated 16', 125): 'explicit explicit explicit explicit',
    ('dilated 16', 2000): 'explicit explicit explicit explicit',
    ('dilated 16', 10000): 'lax lax lax lax',
    ('3-D', 1): 'explicit explicit explicit explicit',
    ('3-D', 125): 'explicit explicit explicit explicit',
    ('3-D', 2000): 'explicit explicit explicit explicit',
    ('3-D', 10000): 'lax lax lax lax',
}
#: The entries that change when the hand rule's Winograd row is switched on at 16 input channels.
PINNED_WINOGRAD_ROW = {
    ('classic/lecture conv2', 1): 'explicit winograd explicit explicit',
    ('classic/lecture conv2', 125): 'explicit winograd explicit explicit',
    ('resnet stage2', 1): 'explicit winograd lax lax',
    ('resnet stage2', 125): 'explicit winograd lax lax',
    ('resnet stage2', 2000): 'explicit winograd lax lax',
    ('resnet stage3', 1): 'explicit winograd explicit explicit',
    ('resnet stage3', 125): 'explicit winograd explicit explicit',
    ('resnet stage3', 2000): 'explicit winograd explicit explicit',
}


#: What it picks in float32 on the CPU where oneDNN's extension is available: oneDNN in every pass of every
#: layer and batch, the depthwise layer excepted (its row comes first, and oneDNN is not measured there).
PINNED_FLOAT32_ONEDNN = {
    (name, batch): "lax lax lax lax" if name == "depthwise" else "onednn onednn onednn onednn"
    for name, batch in PINNED
}


def _resolve_pass(x_shape, w_shape, config, platform, manual, forward_only, winograd, dtype):
    policy = WINOGRAD_ROW if winograd else "auto"
    return resolve_impl(policy, x_shape, w_shape, config, platform, dtype=dtype, manual=manual,
                        forward_only=forward_only)


def _pinned_choices(platform, winograd, dtype="float64"):
    choices = {}
    for (name, batch) in PINNED:
        spatial, w_shape, options = MODEL_LAYERS[name]
        x_shape = (batch, *spatial)
        config = conv_config(x_shape, w_shape, **dict(dict(stride=1, dilation=1, groups=1), **options))
        choices[name, batch] = " ".join(
            _resolve_pass(x_shape, w_shape, config, platform, manual, forward_only, winograd, dtype)
            for manual, forward_only in PASSES)
    return choices


def test_auto_picks_the_pinned_impl_for_every_model_layer_and_pass():
    """The ``auto`` table pinned: the same impl as measured and documented, for every layer, batch and pass.
    float64 and float16/bfloat16 keep the table without oneDNN; float32 on the CPU runs on oneDNN where its
    extension is available, and on that same table where it is not."""
    for dtype in ("float64", "float16", "bfloat16"):
        assert _pinned_choices("cpu", winograd=False, dtype=dtype) == PINNED, dtype
        assert _pinned_choices("cpu", winograd=True, dtype=dtype) == {**PINNED, **PINNED_WINOGRAD_ROW}, dtype
    with_onednn = onednn.available()
    assert _pinned_choices("cpu", winograd=False, dtype="float32") == (PINNED_FLOAT32_ONEDNN if with_onednn
                                                                       else PINNED)
    assert _pinned_choices("cpu", winograd=True, dtype="float32") == (
        PINNED_FLOAT32_ONEDNN if with_onednn else {**PINNED, **PINNED_WINOGRAD_ROW})
    for dtype in ("float32", "float64"):
        for winograd in (False, True):
            assert set(_pinned_choices("gpu", winograd=winograd, dtype=dtype).values()) == {"lax lax lax lax"}


def test_auto_without_onednn_picks_the_float64_table_in_float32(without_onednn):
    """Where oneDNN's extension cannot be built or loaded, float32 on the CPU falls back to the same table as
    float64, silently (no warning: ``auto`` never sends a convolution to the ``onednn`` impl's fallback)."""
    assert not onednn.available()
    assert _pinned_choices("cpu", winograd=False, dtype="float32") == PINNED
    assert _pinned_choices("cpu", winograd=True, dtype="float32") == {**PINNED, **PINNED_WINOGRAD_ROW}
    x, w, _ = _arrays((2, 7, 6, 4), (3, 3, 4, 2), 0, jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the onednn impl's own fallback warns; auto never reaches it
        y = jax.jit(lambda x, w: conv(x, w, padding="SAME"))(x, w)
    assert_close(y, conv(x, w, padding="SAME", impl="explicit"), rtol=1e-6)


def _auto_and_lax_gradients(x, w, b, dy, options):
    """Forward, hand rule, manual and autodiff VJPs of "auto"; the lax VJP (the oracle)."""
    auto = lambda *a, grad="autodiff": conv(*a, impl="auto", grad=grad, **options)
    return dict(
        forward=(conv(x, w, b, impl="auto", **options), conv(x, w, b, impl="lax", **options)),
        hand=conv_backward(dy, x, w, impl="auto", **options),
        manual=vjp(lambda *a: auto(*a, grad="manual"), (x, w, b), dy),
        autodiff=vjp(auto, (x, w, b), dy),
        expected=vjp(lambda *a: conv(*a, impl="lax", **options), (x, w, b), dy),
    )


@given(conv_cases())
@examples(10)
@pytest.mark.slow
def test_auto_equals_lax_float32(case):
    """``impl="auto"`` equals lax on random configs (strides, dilation, groups, padding, 1-3-D)."""
    x_shape, w_shape, options, seed = case
    x, w, b = _arrays(x_shape, w_shape, seed, jnp.float32)
    y_shape = jax.eval_shape(lambda x, w: conv(x, w, impl="lax", **options), x, w).shape
    dy = jnp.asarray(np.random.default_rng(seed).normal(size=y_shape), jnp.float32)
    compiled = jax.jit(lambda *a: _auto_and_lax_gradients(*a, options),
                       compiler_options={"xla_backend_optimization_level": 0})
    results = compiled(x, w, b, dy)
    assert_close(*results["forward"], rtol=1e-5, err_msg=str(options))
    for rule in ("hand", "manual", "autodiff"):
        for name, got, expected in zip("xwb", results[rule], results["expected"]):
            assert_close(got, expected, rtol=1e-5, err_msg=f"auto {rule} d{name} {options}")


@st.composite
def winograd_row_cases(draw):
    """Convs of ``auto``'s Winograd row when switched on at 16: 2-D 3×3, stride 1, >= 16 input channels."""
    spatial = tuple(draw(st.integers(1, 9)) for _ in range(2))
    padding = draw(st.one_of(st.sampled_from(("VALID", "SAME", "FULL")), st.integers(0, 2),
                             st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=2)))
    pads = padding if isinstance(padding, list) else [padding] * 2
    assume(all(conv_output_size(n, 3, p) >= 1 for n, p in zip(spatial, pads)))
    cin = draw(st.sampled_from((16, 19)))
    batch, cout, seed = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(0, 2**16))
    return (batch, *spatial, cin), (3, 3, cin, cout), dict(padding=padding), seed


@given(winograd_row_cases())
@examples(8)
@pytest.mark.slow
def test_auto_hand_rule_through_winograd_equals_lax_float64(x64, case):
    """With the row switched on, ``auto`` sends these convs' hand rule to Winograd (unless the hybrid row takes
    a padded 16-channel one): its forward, ``conv_backward`` and ``grad="manual"`` VJP equal lax's (float64,
    ≤ 1e-10). What keeps the row off is not the conv but the model: see ``winograd_rule``."""
    x_shape, w_shape, options, seed = case
    config = conv_config(x_shape, w_shape, stride=1, dilation=1, groups=1, **options)
    assert resolve_impl(WINOGRAD_ROW, x_shape, w_shape, config, "cpu", manual=True) in ("winograd", "hybrid")
    x, w, b = _arrays(x_shape, w_shape, seed, jnp.float64)
    y_shape = jax.eval_shape(lambda x, w: conv(x, w, impl="lax", **options), x, w).shape
    dy = jnp.asarray(np.random.default_rng(seed).normal(size=y_shape), jnp.float64)
    with use_policy(WINOGRAD_ROW):  # at trace time: "auto" follows the policy
        results = jax.jit(lambda *a: _auto_and_lax_gradients(*a, options),
                          compiler_options={"xla_backend_optimization_level": 0})(x, w, b, dy)
    assert_close(*results["forward"], rtol=1e-10, err_msg=str(options))
    for rule in ("hand", "manual", "autodiff"):
        for name, got, expected in zip("xwb", results[rule], results["expected"]):
            assert_close(got, expected, rtol=1e-10, err_msg=f"auto {rule} d{name} {options} x{x_shape}")


@pytest.mark.thorough
@pytest.mark.slow
def test_auto_hand_rule_of_the_classic_conv2_with_the_winograd_row_float32():
    """The classic/lecture conv2 (26×26×32→64) under ``grad="manual"`` with the row on: no XLA convolution in
    the hand rule (Winograd's GEMMs), and within Winograd F(4,3)'s documented float32 tolerance of lax
    (tests/ops/test_winograd.py); the policy passed as ``impl=``."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 26, 26, 32)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 32, 64)) * 0.06, jnp.float32)
    dy = jnp.asarray(rng.normal(size=(2, 24, 24, 64)), jnp.float32)
    manual = lambda x, w: conv(x, w, impl=WINOGRAD_ROW, grad="manual")
    jaxpr = str(jax.make_jaxpr(lambda x, w, dy: jax.vjp(manual, x, w)[1](dy))(x, w, dy))
    assert "conv_general_dilated" not in jaxpr
    got = [manual(x, w), *jax.vjp(manual, x, w)[1](dy)]
    expected = [conv(x, w, impl="lax"), *jax.vjp(lambda x, w: conv(x, w, impl="lax"), x, w)[1](dy)]
    for name, g, e in zip(("y", "dx", "dw"), got, expected):
        assert_close(g, e, rtol=5e-5, err_msg=name)


def test_conv_backward_checks_dy_shape():
    with pytest.raises(ValueError, match="dy must have the forward output's shape"):
        conv_backward(jnp.zeros((1, 4, 4, 2)), X, W)


def test_conv_output_size_seed_004_numbers():
    assert conv_output_size(6, 3) == 4
    assert conv_output_size(6, 3, padding=1) == 6
    assert conv_output_size(8, 3, stride=2) == 3
    assert conv_output_size(32, 5) == 28
    assert conv_output_size(5, 3, padding="SAME", stride=2) == 3
    assert conv_output_size(4, 3, padding="FULL") == 6
    assert conv_output_size(4, 3, padding=(2, 0), dilation=2) == 2


# ------------------------------------------------- the kernel gradient in chunks


def test_batch_chunk_fits_the_budget_and_prefers_divisors():
    from jaxcnn.ops.padding import batch_chunk

    per_example = 28 * 28 * 9 * 16 * 4  # one 28×28×16 example's 3×3 patch matrix, float32
    assert batch_chunk(125, per_example, PATCH_CHUNK_BYTES) == 5
    assert batch_chunk(125, 14 * 14 * 9 * 32 * 4, PATCH_CHUNK_BYTES) == 11  # no divisor in 6..11
    assert batch_chunk(128, 100, 1000) == 8  # the divisor 8 rather than 10
    assert batch_chunk(7, 10, 1) == 1 and batch_chunk(7, 10, 10**9) == 7  # at least 1, at most the batch
    assert batch_chunk(7, 0, 5) == 5


@given(conv_cases())
@examples(6)
@pytest.mark.slow
def test_kernel_gradient_in_chunks_equals_autodiff_float64(x64, case):
    """``W̄ = Pᵀ Ȳ`` summed over batch chunks (one example each here) is still the gradient, and the
    explicit forward alone in such chunks is still the convolution."""
    x_shape, w_shape, options, seed = case
    x, w, b = _arrays(x_shape, w_shape, seed, jnp.float64)
    _check_all(x, w, b, options, rtol=1e-10, seed=seed, impls=_chunked(1))
    with forward_only():  # the explicit forward alone runs in the same one-example chunks
        y = conv(x, w, b, impl=explicit_impl(chunk_bytes=1), **options)
    assert_close(y, conv(x, w, b, impl="lax", **options), rtol=1e-10, err_msg=f"forward alone {options}")


def _chunked(chunk_bytes):
    """:data:`IMPLS` with the explicit forward alone and the hybrid kernel gradient in chunks of ``chunk_bytes``."""
    return {"lax": "lax", "explicit": explicit_impl(chunk_bytes=chunk_bytes),
            "hybrid": hybrid_impl(chunk_bytes=chunk_bytes)}


def test_kernel_gradient_in_padded_chunks_float64(x64):
    """A batch of 7 in chunks of 5: the zero-padded examples of the last chunk add nothing."""
    x, w, b = _arrays((7, 9, 8, 4), (3, 3, 2, 6), 5, jnp.float64)
    per_example = 9 * 8 * 9 * 4 * 8  # SAME: 9×8 outputs, 3×3 window, 4 channels, float64
    from jaxcnn.ops.padding import batch_chunk

    assert batch_chunk(7, per_example, 5 * per_example) == 5
    _check_all(x, w, b, dict(stride=1, padding="SAME", dilation=1, groups=2), rtol=1e-10,
               impls=_chunked(5 * per_example))
    _check_all(x, w, b, dict(stride=2, padding=1, dilation=2, groups=2), rtol=1e-10,
               impls=_chunked(5 * per_example))


def test_explicit_forward_alone_in_padded_chunks_float64(x64):
    """Under ``forward_only`` the explicit forward runs in batch chunks: a batch of 7 in chunks of 5 (the last
    zero-padded) and in chunks of 1 equals lax, and outside the context the forward is one piece."""
    x, w, _ = _arrays((7, 9, 8, 4), (3, 3, 2, 6), 11, jnp.float64)
    options = dict(stride=1, padding="SAME", dilation=1, groups=2)
    per_example = 9 * 8 * 9 * 4 * 8
    reference = conv(x, w, impl="lax", **options)
    for budget in (5 * per_example, 1):
        impl = explicit_impl(chunk_bytes=budget)
        with forward_only():
            y = jax.jit(lambda x, w: conv(x, w, impl=impl, **options))(x, w)
            program = jax.make_jaxpr(lambda x, w: conv(x, w, impl=impl, **options))(x, w)
        assert_close(y, reference, rtol=1e-10, err_msg=f"budget {budget}")
        assert "scan" in str(program)
    assert "scan" not in str(jax.make_jaxpr(lambda x, w: conv(x, w, impl="explicit", **options))(x, w))
