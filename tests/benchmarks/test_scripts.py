"""The performance scripts of ``benchmarks/`` run end to end on tiny settings and write sane files.

Each runs as a user runs it: ``python benchmarks/NAME.py`` from the repository root, no ``PYTHONPATH``.
"""

import json
import pathlib
import sys

import pytest

from support.scripts import run_script

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(script, *args):
    return run_script("benchmarks", script, *args)


@pytest.mark.slow
@pytest.mark.benchmark
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
@pytest.mark.benchmark
def test_fresh_pages_compares_the_allocator_settings_in_alternating_subprocesses(tmp_path):
    # 15 calls, as tests/training/test_allocator.py: glibc now and then places the buffer anew, and over 6 calls
    # 3 such refaults made the median of a run refault too (2026-12-01)
    stdout = _run("fresh_pages.py", "--models", "classic", "--rounds", 1, "--steps", 15, "--out", tmp_path / "f.json")
    record = json.loads((tmp_path / "f.json").read_text())
    (row,) = record["rows"]
    assert row["model"] == "classic" and row["off_ms"] > 0 and row["on_ms"] > 0 and "off/on" in stdout
    # the fact behind the lever, deterministic where the time is not: without the settings every step
    # faults its temporaries in anew (about 13,000 pages, 50 MB, with auto on oneDNN; twice that with
    # im2col's patches); with them (glibc) the typical (median) step reuses them
    from oracles import small_pages_only  # tests/ is on the path (pyproject)

    if small_pages_only():
        assert row["off_median_faults"] > 5_000 and row["on_median_faults"] < row["off_median_faults"] / 4, row


@pytest.mark.slow
@pytest.mark.benchmark
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
@pytest.mark.benchmark
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
@pytest.mark.slow
def test_the_partial_lowering_lever_and_its_hand_rule_equal_lax_float64(x64, padding):
    """The lever step_levers.py times is the same convolution: forward, hand rule and jax.grad of the forward
    against lax (float64, 1e-10), through the explicit impl it replaces."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
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
@pytest.mark.benchmark
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


@pytest.mark.slow
@pytest.mark.benchmark
def test_step_breakdown_times_every_layer_of_every_model(tmp_path):
    stdout = _run("step_breakdown.py", "--batch", 4, "--rounds", 1, "--out", tmp_path / "s.json")
    record = json.loads((tmp_path / "s.json").read_text())
    assert set(record["models"]) == {"classic", "lecture", "resnet"} and "model name" not in record["cpu"]
    layer_counts = {"classic": 9, "lecture": 8, "resnet": 14}
    for name, model in record["models"].items():
        layers = [row for row in model["rows"] if row[:2].strip().isdigit()]
        assert len(layers) == layer_counts[name], (name, model["rows"])
        assert all(model["ms"][row] > 0 for row in model["rows"])
        assert model["ms"]["whole step (jit, donated)"] > 0 and model["ms"]["PyTorch eager whole step"] > 0
        # XLA counts the FLOPs of every layer with a convolution or a matmul
        assert all(model["flops"][row] > 0 for row in layers if "Conv" in row or "Dense" in row), name
    assert "BasicBlock16 + Relu" in stdout and "1.5× PyTorch eager" in stdout and stdout.startswith("CPU ")


@pytest.mark.benchmark
def test_onednn_conv_times_every_pass(tmp_path):
    from jaxcnn.ops import onednn

    if not onednn.available():
        pytest.skip(f"oneDNN is not available here: {onednn.unavailable_reason()}")
    stdout = _run("onednn_conv.py", "--batch", 2, "--rounds", 1, "--layers", "resnet 28×28×16→16 SAME",
                  "--out", tmp_path / "o.json")
    record = json.loads((tmp_path / "o.json").read_text())
    assert record["batch"] == 2 and "GFLOP/s" in stdout
    rows = {(row["layer"], row["impl"], row["part"]) for row in record["rows"]}
    for layer in ("autoencoder up 7×7×32→14×14×16", "autoencoder up 14×14×16→28×28×1"):
        assert {(layer, impl, f"fwd+bwd {grad}") for impl in ("onednn", "explicit", "lax")
                for grad in ("manual", "autodiff")} <= rows, layer


def test_the_gpu_script_is_ready_to_run():
    """``benchmarks/gpu.sh`` (the GPU check, run where a GPU is lent) parses, and ``throughput.py`` accepts the
    options it passes."""
    import re
    import subprocess

    script = ROOT / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    (options,) = re.findall(r"benchmarks/throughput.py (.*?)\s*\\\n\s*(.*?) 2>&1", text, flags=re.S)
    argv = " ".join(options).replace('"$out/throughput"', "runs/gpu/throughput").split()
    check = ("import sys; sys.path.insert(0, 'benchmarks'); import throughput; "
             f"args = throughput.parse_args({argv!r}); print(sorted(args.candidates), args.no_conv)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("]")[0].count("'") == 8 and done.stdout.strip().endswith("True"), done.stdout
