"""Proofs for jaxcnn.ops.onednn: oneDNN's three passes == lax and jax.grad of lax, every option.

float32 tolerance: each output element of a pass is a sum of ``K`` float32 products (``K`` =
window·C_in/groups for ``y``, window·C_out/groups for ``x̄``, batch·out-positions for ``w̄``). With
exact inputs, rounding (half an ulp per product and per addition, of random sign) grows like
``ε₃₂·√K`` times the sum of the terms' magnitudes, ``(|x| ⋆ |w|)``, computed here in float64 by
the same linear map on absolute values. So the check is elementwise
``|a − e| <= 2·ε₃₂·√K·(|x| ⋆ |w|)`` against float64 ``lax`` (120 hypothesis cases measured at most
0.27 of it): no scale of the whole array to hide a wrong element behind, and no slack for a real
error (a missing or wrong term changes an element by about its own magnitude).
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import warnings
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from jaxcnn import loss_and_grad
from jaxcnn.nn import layers as L
from jaxcnn.ops import onednn
from jaxcnn.ops._native import loader
from jaxcnn.ops.convolution import conv_config, resolve_impl
from jaxcnn.proof.gradients import MODES
from jaxcnn.ops.padding import output_spatial
from hypothesis_profiles import examples
from oracles import assert_close, conv_cases, needs_onednn, run_fast

EPS32 = float(np.finfo(np.float32).eps)


def _lax(x, w, config):
    spatial = "DHW"[3 - (w.ndim - 2):]
    return jax.lax.conv_general_dilated(
        x, w, window_strides=config.stride, padding=config.pairs, rhs_dilation=config.dilation,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"), feature_group_count=config.groups,
    )


def _out_shape(x_shape, w_shape, config):
    out = output_spatial(x_shape[1:-1], w_shape[:-2], config.pairs, config.stride, config.dilation)
    return (x_shape[0], *out, w_shape[-1])


def _reference(x, w, b, dy, config):
    """float64 ``lax``: the forward and its VJP, and the same maps applied to absolute values."""
    def conv(x, w):
        return _lax(x, w, config)

    def passes(x, w, b, dy):
        y, pullback = jax.vjp(conv, x, w)
        return (y + b, *pullback(dy))

    with jax.enable_x64(True):
        args = [jnp.asarray(np.asarray(a), jnp.float64) for a in (x, w, b, dy)]
        both = run_fast(lambda *a: (passes(*a), passes(*map(jnp.abs, a))), *args)
        return [np.asarray(a) for a in jax.tree.leaves(both)]


def _terms(x_shape, w_shape, y_shape, groups):
    """``K`` of each pass: how many products one output element of it sums."""
    window = math.prod(w_shape[:-2])
    return window * x_shape[-1] // groups, window * w_shape[-1] // groups, y_shape[0] * math.prod(y_shape[1:-1])


def _assert_rounding_close(actual, expected, magnitude, terms, name):
    actual = np.asarray(actual, np.float64)
    bound = 2 * EPS32 * math.sqrt(terms) * magnitude + 1e-30
    excess = np.abs(actual - expected) / bound
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    assert excess.max(initial=0) <= 1, f"{name}: error {excess.max():.2f}× the rounding bound (K={terms})"


def _value_and_vjp(fn, primals, cotangent):
    y, pullback = jax.vjp(fn, *primals)
    return y, pullback(cotangent)


def _case_arrays(x_shape, w_shape, seed):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in (x_shape, w_shape, w_shape[-1:]))


@needs_onednn
@examples(12)
@given(conv_cases())
def test_forward_and_hand_rule_equal_lax_float32(case):
    x_shape, w_shape, options, seed = case
    x, w, b = _case_arrays(x_shape, w_shape, seed)
    config = conv_config(x_shape, w_shape, **options)
    y_shape = _out_shape(x_shape, w_shape, config)
    dy = jnp.asarray(np.random.default_rng(seed + 1).normal(size=y_shape), jnp.float32)
    y, (dx, dw, db) = run_fast(lambda *a: _value_and_vjp(lambda *a: onednn.conv_onednn(*a, **options), a[:3], a[3]),
                               x, w, b, dy)
    y_ref, dx_ref, dw_ref, y_abs, dx_abs, dw_abs = _reference(x, w, b, dy, config)
    k_y, k_dx, k_dw = _terms(x_shape, w_shape, y.shape, config.groups)
    msg = f"{options} x{x_shape} w{w_shape}"
    _assert_rounding_close(y, y_ref, y_abs, k_y + 1, f"y {msg}")
    _assert_rounding_close(dx, dx_ref, dx_abs, k_dx, f"dx {msg}")
    _assert_rounding_close(dw, dw_ref, dw_abs, k_dw, f"dw {msg}")
    _assert_rounding_close(db, np.sum(np.asarray(dy, np.float64), axis=tuple(range(dy.ndim - 1))),
                           np.sum(np.abs(np.asarray(dy, np.float64)), axis=tuple(range(dy.ndim - 1))),
                           dy.size // dy.shape[-1], f"db {msg}")


@needs_onednn
def test_the_passes_run_on_onednn_under_jit():
    """Forward, x̄ and w̄ are the three custom calls, and jit gives the eager values."""
    x, w, b = _case_arrays((2, 7, 6, 4), (3, 3, 2, 6), 1)
    options = dict(stride=(2, 1), padding="SAME", dilation=(1, 2), groups=2)

    def loss(x, w, b):
        return jnp.sum(jnp.sin(onednn.conv_onednn(x, w, b, **options)))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    text = jax.jit(grad).lower(x, w, b).as_text()
    for target in loader.TARGETS.values():
        assert f"custom_call @{target}(" in text, target
    for jitted, eager in zip(jax.jit(grad)(x, w, b), grad(x, w, b)):
        np.testing.assert_array_equal(jitted, eager)


@needs_onednn
def test_public_passes_equal_lax_vjp():
    """``forward``, ``input_gradient``, ``weight_gradient`` (the impl table's entries) against lax."""
    x, w, _ = _case_arrays((3, 5, 4, 6, 3), (2, 3, 2, 3, 4), 2)
    config = conv_config(x.shape, w.shape, stride=(1, 2, 1), padding=((1, 0), (2, 1), (0, 2)), dilation=1,
                         groups=1)
    y, pullback = jax.vjp(lambda x, w: _lax(x, w, config), x, w)
    dy = jnp.asarray(np.random.default_rng(3).normal(size=y.shape), jnp.float32)
    dx, dw = pullback(dy)
    assert_close(onednn.forward(x, w, config), y, rtol=1e-5)
    assert_close(onednn.input_gradient(dy, x, w, config), dx, rtol=1e-5)
    assert_close(onednn.weight_gradient(dy, x, w, config), dw, rtol=1e-5)
    for got, expected in zip(onednn.backward(dy, x, w, config), (dx, dw)):
        assert_close(got, expected, rtol=1e-5)


VMAP_OPTIONS = dict(stride=2, padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)


def _vmap_arrays(seed=4):
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(3, 2, 7, 8, 4)), jnp.float32)
    ws = jnp.asarray(rng.normal(size=(3, 3, 2, 2, 6)), jnp.float32)
    bs = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    return xs, ws, bs


def _loss(conv):
    return lambda x, w, b: jnp.sum(jnp.cos(conv(x, w, b, **VMAP_OPTIONS)))


def _lax_conv(x, w, b, *, stride=1, padding="VALID", dilation=1, groups=1):
    config = conv_config(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _lax(x, w, config) + b


@needs_onednn
@pytest.mark.parametrize("in_axes", [(0, None, None), (0, 0, 0), (None, 0, None), (1, None, 0)],
                         ids=["x", "x-w-b", "w", "x-axis1-b"])
def test_vmap_forward_and_per_example_gradients(in_axes):
    """vmap folds a batch of x into the batch axis, batched w (or b) into the groups; grads under vmap too."""
    xs, ws, bs = _vmap_arrays()
    args = (xs if in_axes[0] == 0 else jnp.moveaxis(xs, 0, 1) if in_axes[0] == 1 else xs[0],
            ws if in_axes[1] == 0 else ws[0], bs if in_axes[2] == 0 else bs[0])
    for transform in (lambda c: lambda *a: c(*a, **VMAP_OPTIONS), lambda c: jax.grad(_loss(c), argnums=(0, 1, 2))):
        got = jax.jit(jax.vmap(transform(onednn.conv_onednn), in_axes=in_axes))(*args)
        expected = jax.vmap(transform(_lax_conv), in_axes=in_axes)(*args)
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            assert_close(g, e, rtol=1e-5)


@needs_onednn
def test_nested_vmap():
    """vmap of vmap: the batching rules call the batchable calls again."""
    xs, ws, bs = _vmap_arrays(8)
    xss = jnp.stack([xs, -xs])
    for axes in [(0, None, None), (0, 0, 0)]:
        def twice(conv):
            inner = jax.vmap(lambda *a: conv(*a, **VMAP_OPTIONS), in_axes=axes)
            grad = jax.grad(lambda *a: jnp.sum(jnp.cos(inner(*a))), argnums=(0, 1, 2))
            return jax.vmap(grad, in_axes=(0, None, None))

        args = (xss, ws if axes[1] == 0 else ws[0], bs if axes[2] == 0 else bs[0])
        for g, e in zip(jax.jit(twice(onednn.conv_onednn))(*args), twice(_lax_conv)(*args)):
            assert_close(g, e, rtol=1e-5, err_msg=str(axes))


@needs_onednn
def test_vmap_of_the_passes_with_batched_kernels():
    """x̄ and w̄ under vmap with batched kernels and cotangents (the group-folding rules)."""
    xs, ws, _ = _vmap_arrays(5)
    config = conv_config(xs.shape[1:], ws.shape[1:], **VMAP_OPTIONS)
    dys = jnp.asarray(np.random.default_rng(6).normal(size=(3, *_out_shape(xs.shape[1:], ws.shape[1:],
                                                                                     config))), jnp.float32)

    def lax_input_gradient(dy, x, w):
        return jax.vjp(lambda x: _lax(x, w, config), x)[1](dy)[0]

    def lax_weight_gradient(dy, x, w):
        return jax.vjp(lambda w: _lax(x, w, config), w)[1](dy)[0]

    for axes in [(0, 0, 0), (None, 0, 0), (0, None, None), (0, 0, None), (None, 0, None)]:
        args = tuple(a if axis == 0 else a[0] for a, axis in zip((dys, xs, ws), axes))
        for ours, theirs in [(onednn.input_gradient, lax_input_gradient),
                             (onednn.weight_gradient, lax_weight_gradient)]:
            got = jax.vmap(lambda dy, x, w: ours(dy, x, w, config), in_axes=axes)(*args)
            assert_close(got, jax.vmap(theirs, in_axes=axes)(*args), rtol=1e-5, err_msg=f"{ours.__name__} {axes}")


@needs_onednn
def test_grad_of_grad_runs_the_passes_again():
    """The hand rule's own derivative (a gradient penalty's gradient) == lax's, and is oneDNN all the way."""
    x, w, b = _case_arrays((2, 6, 7, 4), (3, 2, 2, 4), 7)
    options = dict(stride=(1, 2), padding="SAME", dilation=(2, 1), groups=2)

    def penalty(conv):
        def inner(x, w, b):
            return jnp.sum(jnp.tanh(conv(x, w, b, **options)))

        def outer(x, w, b):
            dx, dw, db = jax.grad(inner, argnums=(0, 1, 2))(x, w, b)
            return jnp.sum(dx ** 2) + jnp.sum(dw ** 2) + jnp.sum(db ** 2)

        return jax.grad(outer, argnums=(0, 1, 2))

    lowered = jax.jit(penalty(onednn.conv_onednn)).lower(x, w, b)
    assert "convolution" not in lowered.as_text()  # every pass of every order is a custom call
    got = lowered.compile()(x, w, b)
    with jax.enable_x64(True):
        expected = run_fast(penalty(_lax_conv), *(jnp.asarray(np.asarray(a), jnp.float64) for a in (x, w, b)))
    for name, g, e in zip("xwb", got, expected):
        assert_close(g, e, rtol=1e-5, err_msg=f"d{name}")


@given(conv_cases())
@examples(5)
def test_float64_falls_back_to_lax_with_the_same_hand_rule(x64, case):
    """float64 runs on lax (no custom call) and equals jax.grad of lax to 1e-10."""
    x_shape, w_shape, options, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (jnp.asarray(rng.normal(size=s), jnp.float64) for s in (x_shape, w_shape, w_shape[-1:]))
    dy = jnp.asarray(rng.normal(size=_out_shape(x_shape, w_shape, conv_config(x_shape, w_shape, **options))),
                     jnp.float64)

    def both(x, w, b, dy):
        return [_value_and_vjp(lambda *a: conv(*a, **options), (x, w, b), dy)
                for conv in (onednn.conv_onednn, _lax_conv)]

    lowered = jax.jit(both).lower(x, w, b, dy)
    assert lowered.as_text().count("custom_call") == 0
    (y, grads), (y_ref, grads_ref) = lowered.compile({"xla_backend_optimization_level": 0})(x, w, b, dy)
    assert y.dtype == jnp.float64
    assert_close(y, y_ref, rtol=1e-10)
    for got, expected in zip(grads, grads_ref):
        assert_close(got, expected, rtol=1e-10)


@needs_onednn
@pytest.mark.parametrize("x_shape, w_shape", [((0, 5, 5, 2), (3, 3, 2, 4)), ((2, 5, 5, 0), (3, 3, 0, 4)),
                                              ((2, 5, 5, 2), (3, 3, 2, 0))], ids=["batch", "in", "out"])
def test_empty_operands_give_lax_values(x_shape, w_shape):
    """A zero in a shape never reaches oneDNN: zeros (or the bias) as lax gives them."""
    x, w, b = _case_arrays(x_shape, w_shape, 0)
    dy = jnp.ones((x_shape[0], 3, 3, w_shape[-1]))
    got = jax.jit(_value_and_vjp, static_argnums=0)(onednn.conv_onednn, (x, w, b), dy)
    expected = _value_and_vjp(_lax_conv, (x, w, b), dy)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(g, e)


def test_bad_dtypes_and_options_name_what_is_wrong():
    x, w, b = _case_arrays((1, 5, 5, 2), (3, 3, 2, 2), 0)
    with pytest.raises(ValueError, match="dtype must be float32 .* or float64 .*, got bfloat16"):
        onednn.conv_onednn(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="share one dtype"):
        onednn.conv_onednn(x, w.astype(jnp.float16))
    with pytest.raises(ValueError, match="stride"):
        onednn.conv_onednn(x, w, stride=0)
    with pytest.raises(ValueError, match="groups"):
        onednn.conv_onednn(x, w, groups=3)
    with pytest.raises(ValueError, match="b must have shape"):
        onednn.conv_onednn(x, w, b[:1])


@pytest.fixture
def fresh_loader():
    """Forget the loaded extension before and after the test (the next use loads it again)."""
    loader.native.cache_clear()
    yield
    loader.native.cache_clear()


def _missing_package(name):
    raise metadata.PackageNotFoundError(name)


@pytest.mark.parametrize("hide", ["compiler", "onednn", "cache"])
def test_without_compiler_or_onednn_it_is_unavailable_and_falls_back(fresh_loader, monkeypatch, tmp_path, hide):
    """No compiler (an empty build cache), no oneDNN wheel or an unwritable cache: available() is
    False with a one-line reason, and conv_onednn warns with it and computes with lax."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if hide != "onednn":  # the checks past oneDNN's wheels run whether they are installed or not
        monkeypatch.setattr(loader, "onednn_paths", lambda: (tmp_path / "lib", tmp_path / "include"))
    if hide == "compiler":
        monkeypatch.setenv("CXX", "no-such-compiler-g++")
        expected = "no C++ compiler to build the oneDNN extension ('no-such-compiler-g++' not found)"
    elif hide == "onednn":
        monkeypatch.setattr(loader.metadata, "distribution", _missing_package)
        expected = "oneDNN is not installed (pip package onednn-cpu-gomp missing)"
    else:
        cache.write_text("a file where the cache directory would be")
        expected = f"building the oneDNN extension failed: [Errno 20] Not a directory: '{cache / 'jaxcnn'}'"
    assert not onednn.available()
    assert onednn.unavailable_reason() == expected
    assert "\n" not in expected and not (cache / "jaxcnn").exists()
    x, w, b = _case_arrays((2, 6, 6, 2), (3, 3, 2, 3), 9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = onednn.conv_onednn(x, w, b, padding="SAME")
    assert [str(c.message) for c in caught] == [
        f"oneDNN convolution unavailable ({expected}); using lax.conv_general_dilated"]
    assert_close(y, _lax_conv(x, w, b, padding="SAME"), rtol=1e-6)


# ------------------------------------------------------------------ impl="auto"


def _small_net():
    """Padded, strided, dilated and grouped convolutions between ReLU, max pool and dense layers."""
    return L.serial(
        L.Conv(4, 3, padding="SAME"), L.Relu(), L.MaxPool(2, padding="SAME"),
        L.Conv(6, 2, stride=(1, 2), padding=[(1, 0), (0, 1)], dilation=2, groups=2), L.Relu(),
        L.Flatten(), L.Dense(5, init="glorot"),
    )


def test_auto_resolves_float32_on_the_cpu_to_onednn_and_float64_as_before():
    """``auto``'s oneDNN row: float32 on the CPU where the extension is available; never float64, other
    dtypes, depthwise layers or another platform."""
    x_shape, w_shape = (8, 9, 8, 4), (3, 3, 2, 6)
    config = conv_config(x_shape, w_shape, stride=1, padding="SAME", dilation=1, groups=2)
    resolve = lambda dtype, platform="cpu", **passes: resolve_impl("auto", x_shape, w_shape, config, platform,
                                                                   dtype=dtype, **passes)
    float32 = "onednn" if onednn.available() else "explicit"
    for passes in (dict(), dict(manual=True), dict(forward_only=True), dict(manual=True, forward_only=True)):
        assert resolve("float32", **passes) == float32, passes
        assert resolve(jnp.float32, **passes) == float32, passes
        assert resolve("float64", **passes) == "explicit", passes
        assert resolve("bfloat16", **passes) == "explicit", passes
        assert resolve("float32", platform="gpu", **passes) == "lax", passes
    depthwise = conv_config(x_shape, (3, 3, 1, 4), stride=1, padding="SAME", dilation=1, groups=4)
    assert resolve_impl("auto", x_shape, (3, 3, 1, 4), depthwise, "cpu", dtype="float32") == "lax"


@needs_onednn
def test_auto_runs_a_float32_model_on_onednn_and_the_three_modes_agree():
    """Under ``impl="auto"`` every convolution of a float32 model on the CPU, in all three gradient modes, is
    oneDNN's custom calls (no XLA convolution is left), and the modes agree within the float32 tolerance of
    the mode proofs (tests/proof/test_gradients.py, 1e-5 of each gradient's scale)."""
    model = _small_net()
    _, params = model.init(jax.random.PRNGKey(0), (-1, 9, 8, 2))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 9, 8, 2), jnp.float32)
    labels = jnp.array([0, 4, 2])
    run = jax.jit(lambda p, x, y: {mode: loss_and_grad(model, p, x, y, grad=mode) for mode in MODES})
    lowered = run.lower(params, x, labels)
    text = lowered.as_text()
    assert "convolution" not in text
    for target in loader.TARGETS.values():
        assert f"custom_call @{target}(" in text, target
    results = lowered.compile()(params, x, labels)
    value, grads, _ = results["autodiff"]
    for mode in MODES[1:]:
        assert_close(results[mode][0], value, rtol=1e-5, err_msg=mode)
        for got, expected in zip(jax.tree.leaves(results[mode][1]), jax.tree.leaves(grads)):
            assert_close(got, expected, rtol=1e-5, err_msg=mode)


on_cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the notice is about the CPU's convolutions")


@on_cpu
@pytest.mark.slow
def test_jaxcnn_native_builds_the_extension_now_or_says_why_not(tmp_path):
    """``jaxcnn native`` builds the extension into an empty cache and names the library it loaded (status 0);
    with no compiler it builds nothing and says why in one line (status 1)."""
    root = pathlib.Path(__file__).resolve().parents[2]
    cache, empty_path = tmp_path / "cache", tmp_path / "bin"
    empty_path.mkdir()
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(root))
    built = subprocess.run([sys.executable, "-m", "jaxcnn", "native"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=600)
    if not onednn.available():
        pytest.skip(f"oneDNN is not available here: {onednn.unavailable_reason()}")
    assert built.returncode == 0, built.stdout + built.stderr[-2000:]
    (library,) = cache.glob("jaxcnn/onednn_conv-*.so")
    assert built.stdout.splitlines() == [f"oneDNN convolutions ready: {library}"]
    env = {key: value for key, value in env.items() if key != "CXX"}
    env.update(PATH=str(empty_path), XDG_CACHE_HOME=str(tmp_path / "other-cache"))
    refused = subprocess.run([sys.executable, "-m", "jaxcnn", "native"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=300)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert refused.stdout.splitlines() == [
        "oneDNN convolutions unavailable (no C++ compiler to build the oneDNN extension ('g++' not found)); "
        "impl auto uses XLA and im2col instead"]
    assert not list((tmp_path / "other-cache").glob("jaxcnn/onednn_conv-*"))


@on_cpu
@pytest.mark.slow
def test_jaxcnn_train_without_a_compiler_says_so_once_and_trains(tmp_path):
    """The install without a compiler: ``python -m jaxcnn train`` with no ``g++`` on the ``PATH``, no ``$CXX``
    and an empty build cache trains with ``auto``'s other impls (no call reaches the ``onednn`` impl's own
    fallback, which would warn) and says why in exactly one line, after its header on stdout."""
    root = pathlib.Path(__file__).resolve().parents[2]
    empty_path, cache, workdir = tmp_path / "bin", tmp_path / "cache", tmp_path / "run"
    empty_path.mkdir()
    cache.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "CXX"}
    env.update(PATH=str(empty_path), XDG_CACHE_HOME=str(cache), PYTHONPATH=str(root))
    argv = ["train", "--model", "sequence", "--dataset", "mnist-sample", "--train-limit", "500", "--test-limit",
            "500", "--batch-size", "50", "--epochs", "1", "--no-progress", "--workdir", str(workdir)]
    done = subprocess.run([sys.executable, "-m", "jaxcnn", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oneDNN" not in done.stderr, done.stderr
    notes = [line for line in done.stdout.splitlines() if "oneDNN" in line]
    assert notes == ["note: oneDNN convolutions unavailable (no C++ compiler to build the oneDNN extension "
                     "('g++' not found)); impl auto uses XLA and im2col instead"], done.stdout
    assert done.stdout.splitlines()[1] == notes[0]  # right after the header
    assert "using lax.conv_general_dilated" not in done.stderr and not list(cache.glob("jaxcnn/onednn_conv-*"))
    (record,) = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and math.isfinite(record["train_loss"])
    assert record["train_loss"] < math.log(10) and record["test_accuracy"] > 0.2  # chance: ln 10 and 0.1
    assert "test accuracy" in done.stdout


@on_cpu
def test_the_train_notice_names_the_reason_only_where_auto_would_use_onednn(monkeypatch):
    """``onednn_notice``: a line for an ``auto`` run of float32 params on the CPU without the extension;
    nothing with the extension, for another impl, or for float64 params."""
    from jaxcnn.training import loop  # pylint: disable=import-outside-toplevel

    params = [{"w": jnp.zeros((3, 3, 1, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}, {}]
    config = loop.TrainConfig(impl="auto")
    monkeypatch.setattr(loader, "native", lambda: loader.Native(None, "no C++ compiler (test)"))
    assert loop.onednn_notice(config, params) == ("note: oneDNN convolutions unavailable (no C++ compiler "
                                                  "(test)); impl auto uses XLA and im2col instead")
    assert loop.onednn_notice(loop.TrainConfig(impl="explicit"), params) is None
    with jax.enable_x64(True):
        assert loop.onednn_notice(config, jax.tree.map(lambda a: a.astype(jnp.float64), params)) is None
    monkeypatch.setattr(loader, "native", lambda: loader.Native(object(), ""))
    assert loop.onednn_notice(config, params) is None
