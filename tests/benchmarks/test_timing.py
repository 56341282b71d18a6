"""The measurement helpers (benchmarks/_timing.py), and the benchmark script end to end (tiny shapes)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _timing as timing  # noqa: E402  # pylint: disable=wrong-import-position


def test_interleaved_medians_times_every_candidate():
    calls = []
    medians = timing.interleaved_medians({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then interleaved rounds


@pytest.mark.slow
def test_timed_with_machine_rate_brackets_the_rounds_with_the_matmul_rate():
    calls = []
    times, before, after = timing.timed_with_machine_rate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                                         repeats=2)
    assert calls == ["a", "b"] * 3  # warm-up, then two interleaved rounds
    assert set(times) == {"a", "b"} and all(len(v) == 2 and min(v) >= 0 for v in times.values())
    assert before > 0 and after > 0
    line = timing.machine_line(before, after)
    assert line.startswith(f"CPU {timing.cpu_model()}, jax ") and "GFLOP/s before" in line


@pytest.mark.benchmark
def test_benchmark_quick_run(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # as a user runs it
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--quick", "--no-torch", "--repeats", "1",
         "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert {r["grad"] for r in result["train_steps"]} == {"autodiff", "manual", "backprop"}
    assert all(r["images_per_second"] > 0 for r in result["train_steps"])
    assert all(r["epoch_compile_seconds"] > 0 and r["step_compile_seconds"] > 0 for r in result["compile"])
    assert [r["model"] for r in result["train_path"]] == ["classic"]
    assert all(r["images_per_second"] > 0 for r in result["train_path"])
    assert (tmp_path / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
