"""The research examples of ``experiments/`` run end to end on small settings and write sane files.

Each runs as a user runs it: ``python experiments/NAME.py`` from the repository root, no ``PYTHONPATH``.
"""

import json

import pytest

from support.scripts import run_script

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(script, *args):
    return run_script("experiments", script, *args)


@pytest.mark.slow
def test_conv_views_writes_agreement_timings_and_notes_numbers(tmp_path):
    stdout = _run("conv_views.py", "--out", tmp_path, "--batch", 2, "--size", 7, "--repeats", 1,
                  "--stride", 2, "--dilation", 2)
    record = json.loads((tmp_path / "conv_views.json").read_text())
    assert str(tmp_path / "conv_views.json") in stdout
    assert set(record["views"]) == {"lax", "explicit", "fft", "onednn", "toeplitz"}
    for name, view in record["views"].items():
        assert view["relative_diff"] < 1e-5, name
        assert 0 < view["median_seconds"] < 10, name
    numbers = record["worked_numbers"]
    assert numbers["lecture_net total params"] == 14_768_826
    assert numbers["lecture_net layer params"] == [320, 18_496, 14_746_000, 4_010]
    assert numbers["ten 3x3x3 filters params"] == 280
    assert numbers["ten 5x5x3 filters params"] == 760
    assert numbers["one 5x5x3 filter params"] == 76
    assert numbers["32x32x3 through ten 5x5 output"] == [28, 28, 10]
    assert numbers["vertical edge window sum"] == -5
    assert [numbers[k] for k in ("(6x6)*(3x3) output", "(6x6) p=1 * (3x3) output",
                                 "floor((8-3)/2+1)")] == [4, 6, 3]
    assert numbers["(2,-1,1,3,1)*(1,1,2,1)"] == [2, 1, 4, 4, 5, 8, 5, 1]


@pytest.mark.slow
def test_compare_gradients_quick_run_writes_curves_drift_and_numbers(tmp_path):
    stdout = _run("compare_gradients.py", "--out", tmp_path, "--quick", "--dtype", "float32")  # float64: tests/training/test_compare.py
    for name in ("compare-gradients-loss.png", "compare-gradients-diff.png"):
        content = (tmp_path / name).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, name
        assert str(tmp_path / name) in stdout
    record = json.loads((tmp_path / "compare-gradients.json").read_text())
    assert set(record["results"]) == set(record["summary"]) == {"float32"}
    for dtype, bound in (("float32", 1e-4),):
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
