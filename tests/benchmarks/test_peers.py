"""The peer networks of ``benchmarks/throughput.py`` are jaxcnn's networks.

For classic, lecture and resnet, in PyTorch, Flax NNX and Equinox (``benchmarks/peer_nets.py``):
the parameter count equals jaxcnn's, and with jaxcnn's params copied in (random ones, so that
every copied array, BatchNorm's scale and offset and the biases included, differs from the
peer's own initialisation) the peer's training-mode logits equal jaxcnn's (resnet: BatchNorm on the batch's
statistics). A peer framework that is not installed skips its tests. One slow smoke test runs
the throughput script on a tiny configuration.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import models
from jaxcnn.ops import onednn

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import peer_nets  # noqa: E402

MODULES = {"torch": "torch", "nnx": "flax.nnx", "equinox": "equinox"}
EXPECTED_PARAMS = {"classic": 1_199_882, "lecture": 14_768_826, "resnet": 272_186}
BATCH = 4


def _random(path, shape, rng):
    """A random value for jaxcnn's param at ``path``: every array differs from any peer's own
    initialisation (BatchNorm's scale is not 1, its offset not 0, biases not 0)."""
    kind = path[-1].key
    if kind == "w":
        return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    if kind == "scale":
        return 1.0 + 0.2 * rng.normal(size=shape)
    return 0.2 * rng.normal(size=shape)  # "b", "offset"


def _jaxcnn(name):
    """Random params of jaxcnn's ``name`` (its pytree, from ``eval_shape`` of ``init``: tracing,
    no compile), a batch and jaxcnn's training-mode logits on it."""
    model = models.get_model(name)
    _, params, state = jax.eval_shape(lambda k: model.init_with_state(k, (-1, *peer_nets.INPUT_SHAPE)),
                                      jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(lambda path, a: _random(path, a.shape, rng).astype(np.float32), params)
    state = jax.tree_util.tree_map_with_path(
        lambda path, a: np.full(a.shape, 1.0 if path[-1].key == "var" else 0.0, np.float32), state)
    x = rng.uniform(size=(BATCH, *peer_nets.INPUT_SHAPE)).astype(np.float32)
    logits, _ = jax.jit(lambda p, s, x: model.apply_with_state(p, s, x, train=True))(params, state, x)
    return params, x, np.asarray(logits)


@pytest.fixture(scope="module")
def reference():
    """name -> (params, x, logits), computed once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _jaxcnn(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def peer(reference):
    """(framework, name) -> the peer holding ``reference(name)``'s params, built once per module."""
    cache = {}

    def get(framework, name):
        pytest.importorskip(MODULES[framework])
        if (framework, name) not in cache:
            cache[framework, name] = peer_nets.build(framework, name, reference(name)[0])
        return cache[framework, name]

    return get


@pytest.mark.parametrize("framework", peer_nets.FRAMEWORKS)
@pytest.mark.parametrize("name", peer_nets.MODELS)
def test_peer_has_jaxcnn_parameter_count(name, framework, reference, peer):
    pytest.importorskip(MODULES[framework])
    assert peer_nets.jaxcnn_param_count(reference(name)[0]) == EXPECTED_PARAMS[name]
    assert peer_nets.param_count(framework, peer(framework, name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("framework", peer_nets.FRAMEWORKS)
@pytest.mark.parametrize("name", peer_nets.MODELS)
def test_peer_with_jaxcnn_params_gives_jaxcnn_training_logits(name, framework, reference, peer):
    pytest.importorskip(MODULES[framework])
    _, x, expected = reference(name)
    logits = peer_nets.training_logits(framework, peer(framework, name), x)
    assert logits.shape == expected.shape == (BATCH, peer_nets.NUM_CLASSES)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * scale)
    # the logits differ between examples: a constant (broken) network would not pass for a real match
    assert float(np.ptp(expected, axis=0).max()) > 1e-2 * scale


def test_torch_strided_convs_pad_as_xla_same(reference, peer):
    """PyTorch's symmetric ``padding=1`` is not XLA's SAME at stride 2: the peer pads (0, 1) itself."""
    torch = pytest.importorskip("torch")
    _, x, expected = reference("resnet")
    net = peer("torch", "resnet")
    strided = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)
               and m.kernel_size == (3, 3)]
    assert len(strided) == 2 and all(m.padding == (0, 0) for m in strided)
    same = peer_nets.training_logits("torch", net, x)
    np.testing.assert_allclose(same, expected, rtol=0, atol=1e-4 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.slow
@pytest.mark.benchmark
def test_throughput_smoke_run_reports_every_candidate(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--out", str(tmp_path), "--models", "classic",
         "--steps", "2", "--rounds", "1", "--batch", "8"],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((tmp_path / "throughput.json").read_text())
    rows = record["models"]["classic"]["rows"]
    assert [r["candidate"] for r in rows] == ["jaxcnn train path", "jaxcnn jit step", "pytorch eager",
                                              "torch.compile", "flax nnx", "equinox"]
    for row in rows + record["conv"]["rows"]:
        if "unavailable" in row:
            assert isinstance(row["unavailable"], str) and row["unavailable"], row
        else:
            assert row.get("images_per_second", row.get("ms", 0)) > 0, row
    conv_rows = [r["candidate"] for r in record["conv"]["rows"]]
    auto = "onednn" if onednn.available() else "explicit"  # float32 on the CPU
    assert conv_rows[:2] == [f"jaxcnn.conv auto→{auto} autodiff (NHWC)", f"jaxcnn.conv auto→{auto} manual (NHWC)"]
    assert record["conv"]["hand_rule_resolves_to"] == auto
    path = next(r for r in rows if r["candidate"] == "jaxcnn train path")
    assert "images_per_second" in path and path["steps"] == 2, path
    assert "jit step / train path" in result.stdout and record["environment"]["cpu"] in result.stdout
    assert (tmp_path / "throughput.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
