"""The experiment scripts run end to end on small settings and write sane files."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(script, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_conv_views_writes_agreement_timings_and_notes_numbers(tmp_path):
    stdout = _run("conv_views.py", "--out", tmp_path, "--batch", 2, "--size", 7, "--repeats", 1,
                  "--stride", 2, "--dilation", 2)
    record = json.loads((tmp_path / "conv_views.json").read_text())
    assert str(tmp_path / "conv_views.json") in stdout
    assert set(record["views"]) == {"lax", "explicit", "fft", "toeplitz"}
    for name, view in record["views"].items():
        assert view["relative_diff"] < 1e-5, name
        assert 0 < view["median_seconds"] < 10, name
    numbers = record["worked_numbers"]
    assert numbers["seed000 lecture_net total params"] == 14_768_826
    assert numbers["seed000 lecture_net layer params"] == [320, 18_496, 14_746_000, 4_010]
    assert numbers["seed004 ten 3x3x3 filters params"] == 280
    assert numbers["seed003 ten 5x5x3 filters params"] == 760
    assert numbers["seed003 one 5x5x3 filter params"] == 76
    assert numbers["seed003 32x32x3 through ten 5x5 output"] == [28, 28, 10]
    assert numbers["seed004 vertical edge window sum"] == -5
    assert [numbers[k] for k in ("seed004 (6x6)*(3x3) output", "seed004 (6x6) p=1 * (3x3) output",
                                 "seed004 floor((8-3)/2+1)")] == [4, 6, 3]
    assert numbers["seed002 (2,-1,1,3,1)*(1,1,2,1)"] == [2, 1, 4, 4, 5, 8, 5, 1]


@pytest.mark.slow
def test_compare_gradients_quick_run_writes_curves_drift_and_numbers(tmp_path):
    stdout = _run("compare_gradients.py", "--out", tmp_path, "--quick", "--dtype", "float32", "float64")
    for name in ("compare-gradients-loss.png", "compare-gradients-diff.png"):
        content = (tmp_path / name).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, name
        assert str(tmp_path / name) in stdout
    record = json.loads((tmp_path / "compare-gradients.json").read_text())
    assert set(record["results"]) == set(record["summary"]) == {"float32", "float64"}
    for dtype, bound in (("float32", 1e-4), ("float64", 1e-12)):
        result, summary = record["results"][dtype], record["summary"][dtype]
        assert result["modes"] == ["autodiff", "manual", "backprop"] and result["config"]["model"] == "sequence"
        assert [len(v) for v in result["max_param_diff"].values()] == [3, 3]  # epochs 0, 1, 2
        assert all(v < bound for v in summary["final_max_param_rel_diff"].values()), summary
        assert all(0.1 < accuracy <= 1 for accuracy in summary["test_accuracy"].values())


@pytest.mark.slow
def test_edge_detection_writes_png_grid(tmp_path):
    stdout = _run("edge_detection.py", "--out", tmp_path, "--digits", 2)
    png = tmp_path / "edge_detection.png"
    assert str(png) in stdout
    content = png.read_bytes()
    assert content.startswith(PNG_MAGIC) and len(content) > 10_000
    width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    assert width > 300 and height > width  # 1 + 3·2 rows of 5 columns
    record = json.loads((tmp_path / "edge_detection.json").read_text())
    assert len(record["labels"]) == 2 and len(set(record["labels"])) == 2
    assert record["shapes"] == {"conv": [2, 28, 28, 4], "relu": [2, 28, 28, 4], "pool": [2, 14, 14, 4]}
    assert all(0 < fraction < 0.5 for fraction in record["relu_active_fraction"].values())


@pytest.mark.slow
def test_autoencoder_trains_in_three_modes_and_draws_reconstructions(tmp_path):
    stdout = _run("autoencoder.py", "--out", tmp_path, "--epochs", 2, "--train-limit", 500, "--test-limit", 100)
    record = json.loads((tmp_path / "autoencoder.json").read_text())
    assert set(record["modes"]) == {"autodiff", "manual", "backprop"}
    for mode, result in record["modes"].items():
        curve = [point["test_mse"] for point in result["curve"]]
        assert len(curve) == 2 and curve[1] < curve[0] < 0.25, (mode, curve)  # it learns
        assert abs(result["test_mse"] - record["modes"]["autodiff"]["test_mse"]) < 1e-4, mode
        assert result["max_param_diff_vs_autodiff"] < 1e-3, mode
    png = (tmp_path / "reconstructions.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    assert "backprop" in stdout


@pytest.mark.slow
def test_winograd_bench_writes_every_candidate(tmp_path):
    stdout = _run("winograd_bench.py", "--out", tmp_path, "--layer", "conv1", "--batch", 2, "--rounds", 1,
                  "--no-torch")
    record = json.loads((tmp_path / "winograd_bench.json").read_text())
    assert str(tmp_path / "winograd_bench.json") in stdout and "model name" not in record["cpu"]
    rows = {(r["impl"], r["what"]): r for r in record["rows"]}
    impls = ("explicit", "lax", "winograd F(4,3)", "winograd F(2,3)")
    assert set(rows) == {(i, w) for i in impls for w in ("forward", "fwd+bwd")} | {
        ("explicit", "fwd+bwd autodiff"), ("winograd F(4,3)", "fwd+bwd autodiff")}
    assert rows[("explicit", "forward")]["vs_explicit"] == 1.0
    assert all(0 < r["ms"] < 10_000 and r["compile_seconds"] > 0 for r in rows.values())


@pytest.mark.slow
def test_fresh_pages_compares_the_allocator_settings_in_alternating_subprocesses(tmp_path):
    # 15 calls, as tests/training/test_allocator.py: glibc now and then places the buffer anew, and over 6 calls
    # 3 such refaults made the median of a run refault too (2026-12-01)
    stdout = _run("fresh_pages.py", "--models", "classic", "--rounds", 1, "--steps", 15, "--out", tmp_path / "f.json")
    record = json.loads((tmp_path / "f.json").read_text())
    (row,) = record["rows"]
    assert row["model"] == "classic" and row["off_ms"] > 0 and row["on_ms"] > 0 and "off/on" in stdout
    # the fact behind the lever, deterministic where the time is not: without the settings every step
    # faults its ~100 MB of temporaries in anew; with them (glibc) the typical (median) step reuses them
    from oracles import small_pages_only  # tests/ is on the path (pyproject)

    if small_pages_only():
        assert row["off_median_faults"] > 20_000 and row["on_median_faults"] < row["off_median_faults"] / 4, row


@pytest.mark.slow
def test_resnet_levers_times_chunks_with_and_without_the_second_forward(tmp_path):
    stdout = _run("resnet_levers.py", "--chunks", "auto:autodiff:rolled", "--second-forward", "--evals",
                  "resnet:auto:16", "--rounds", 1, "--batch", 4, "--test-images", 32, "--out", tmp_path / "r.json")
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["results"]) == {"chunk auto:autodiff:rolled", "chunk auto:autodiff:rolled+2fwd",
                                      "eval resnet:auto:16"}
    assert all(r["median"] > 0 and len(r["rounds"]) == 1 and r["compile_seconds"] > 0
               for r in record["results"].values())
    assert "ms/step" in stdout and "GFLOP/s" in stdout


@pytest.mark.slow
def test_step_levers_times_every_variant(tmp_path):
    """The flat carries, the bias+ReLU bound and the Winograd row switched on, on a tiny classic chunk."""
    stdout = _run("step_levers.py", "--models", "classic", "--grads", "autodiff", "manual", "--rounds", 1,
                  "--batch", 4, "--chunk", 2, "--steps-per-epoch", 4, "--out", tmp_path / "s.json")
    record = json.loads((tmp_path / "s.json").read_text())
    variants = ("tree", "flat-opt", "flat", "no-bias-relu", "partial-lowering", "partial-lowering-forward")
    assert set(record["results"]) == {f"classic {g} {v}" for g in ("autodiff", "manual") for v in variants} | {
        "classic manual winograd"}  # the row changes nothing under autodiff, so it runs under manual only
    assert all(r["median_ms_per_step"] > 0 and len(r["rounds"]) == 1 for r in record["results"].values())
    assert "of tree" in stdout and "GFLOP/s" in stdout


@pytest.mark.parametrize("padding", ["VALID", "SAME", ((1, 2), (0, 1))])
def test_the_partial_lowering_lever_and_its_hand_rule_equal_lax_float64(x64, padding):
    """The lever step_levers.py times is the same convolution: forward, hand rule and jax.grad of the forward
    against lax (float64, 1e-10), through the explicit impl it replaces."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import jax
    import jax.numpy as jnp
    import numpy as np
    import step_levers
    from jaxcnn import conv, conv_backward
    from oracles import assert_close

    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.normal(size=(2, 9, 8, 16))), jnp.asarray(rng.normal(size=(3, 3, 16, 5)))
    y = conv(x, w, padding=padding, impl="lax")
    dy = jnp.asarray(rng.normal(size=y.shape))
    expected = conv_backward(dy, x, w, padding=padding, impl="lax")
    impl = step_levers.partial_lowering_impl()
    program = lambda impl: str(jax.make_jaxpr(lambda x, w: conv(x, w, padding=padding, impl=impl))(x, w))
    assert program(impl) != program("explicit")  # the lowering runs, not the explicit impl it replaces
    assert_close(conv(x, w, padding=padding, impl=impl), y, rtol=1e-10)
    for got, want in zip(conv_backward(dy, x, w, padding=padding, impl=impl), expected):
        assert_close(got, want, rtol=1e-10)
    pulled = jax.vjp(lambda x, w: conv(x, w, padding=padding, impl=impl), x, w)[1](dy)
    for got, want in zip(pulled, expected):
        assert_close(got, want, rtol=1e-10)
    manual = jax.vjp(lambda x, w: conv(x, w, padding=padding, impl=impl, grad="manual"), x, w)[1](dy)
    for got, want in zip(manual, expected):
        assert_close(got, want, rtol=1e-10)


@pytest.mark.slow
def test_layer_breakdown_times_every_layer_and_conv2s_parts(tmp_path):
    stdout = _run("layer_breakdown.py", "--batch", 4, "--rounds", 1, "--out", tmp_path / "l.json")
    record = json.loads((tmp_path / "l.json").read_text())
    layers = ("conv1 1→32", "ReLU", "conv2 32→64", "ReLU + max pool", "dense 9216→128 + ReLU", "dense 128→10 + loss")
    for layer in layers:
        for who in ("jaxcnn autodiff", "jaxcnn manual", "PyTorch"):
            assert record["median_ms"][f"{layer} | {who}"] > 0, (layer, who)
    assert {"whole step, jaxcnn autodiff", "whole step, jaxcnn manual", "whole step, PyTorch"} <= set(record["median_ms"])
    assert "conv2 part: GEMM kernel grad Pᵀ·Ȳ" in record["median_ms"]
    assert "×PyTorch" in stdout and "GFLOP/s" in stdout and stdout.startswith("CPU ")
