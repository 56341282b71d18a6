"""The notes' numbers, pinned: parameter counts, output shapes, output sizes."""

import math

import jax
import jax.numpy as jnp
import pytest

from jaxcnn import conv_output_size
from jaxcnn.nn.layers import Conv, Dense, Flatten, Layer, serial
from jaxcnn.nn.models import classic_net, lecture_net, sequence_net
from jaxcnn.nn.summaries import layer_rows, param_count, summarize_named, summary


def _rows(model, input_shape):
    return [(row.name, row.output_shape, row.params, row.formula) for row in layer_rows(model, input_shape)]


def test_lecture_net_seed_000():
    """28×28×1 → 26×26×32 (320) → 24×24×64 (18,496) → 400 (14,746,000) → 10 (4,010)."""
    rows = _rows(lecture_net(), (28, 28, 1))
    assert [(shape, count) for _, shape, count, _ in rows] == [
        ((26, 26, 32), 320), ((26, 26, 32), 0),
        ((24, 24, 64), 18_496), ((24, 24, 64), 0),
        ((24 * 24 * 64,), 0), ((400,), 14_746_000), ((400,), 0), ((10,), 4_010),
    ]
    assert 9 * 32 + 32 == 320 and 64 * (9 * 32 + 1) == 18_496  # the notes' own forms
    assert 400 + 24 * 24 * 64 * 400 == 14_746_000 and 400 * 10 + 10 == 4_010
    formulas = [formula for *_, formula in rows if formula]
    assert formulas == ["32×(3·3·1+1)", "64×(3·3·32+1)", "24·24·64×400+400", "400×10+10"]
    assert sum(count for _, _, count, _ in rows) == 14_768_826


def test_lecture_net_table_text():
    text = summary(lecture_net(), (28, 28, 1))
    for fragment in ("26×26×32", "24×24×64", "320", "18,496", "14,746,000", "4,010",
                     "64×(3·3·32+1)", "24·24·64×400+400"):
        assert fragment in text, fragment
    last = text.splitlines()[-1].split()
    assert last == ["total", "14,768,826"]
    assert summarize_named("lecture") == text


def test_param_count_equals_initialised_params():
    """The summary's counts are those of the real parameters ``init`` returns."""
    model = lecture_net()
    shape, params = jax.eval_shape(lambda key: model.init(key, (-1, 28, 28, 1)), jax.random.key(0))
    assert param_count(params) == 14_768_826
    assert [param_count(p) for p in params] == [row.params for row in layer_rows(model, (28, 28, 1))]
    assert param_count({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}) == 16
    assert param_count(()) == 0


def test_seed_004_ten_3x3x3_filters_280():
    (row,) = layer_rows(Conv(10, 3), (7, 7, 3))
    assert (row.params, row.formula) == (280, "10×(3·3·3+1)")
    assert 27 * 10 + 10 == 280


def test_seed_003_five_by_five_by_three_filters():
    """One 5×5×3 filter: 5·5·3 + 1 = 76; ten: 760; 32×32×3, P=0, S=1 → 28×28×10."""
    (one,) = layer_rows(Conv(1, 5), (32, 32, 3))
    (ten,) = layer_rows(Conv(10, 5, stride=1, padding=0), (32, 32, 3))
    assert one.params == 76 and one.formula == "1×(5·5·3+1)"
    assert ten.params == 760 and ten.output_shape == (28, 28, 10)
    assert conv_output_size(32, 5, padding=0, stride=1) == (32 - 5) // 1 + 1 == 28


def test_seed_004_output_sizes():
    """(6×6)∗(3×3) → 4×4; padded p=1 (8×8) → 6×6; ⌊(8 − 3)/2 + 1⌋ = 3."""
    assert conv_output_size(6, 3) == 6 - 3 + 1 == 4
    assert conv_output_size(6, 3, padding=1) == 8 - 3 + 1 == 6
    assert conv_output_size(8, 3, stride=2) == math.floor((8 - 3) / 2 + 1) == 3
    (row,) = layer_rows(Conv(1, 3, padding=1), (6, 6, 1))
    assert row.output_shape == (6, 6, 1)
    (row,) = layer_rows(Conv(1, 3, stride=2), (8, 8, 1))
    assert row.output_shape == (3, 3, 1)


def test_classic_net():
    rows = _rows(classic_net(), (28, 28, 1))
    shapes = [shape for _, shape, _, _ in rows]
    assert shapes[4] == (12, 12, 64) and shapes[5] == (9216,)
    counts = [count for _, _, count, _ in rows if count]
    assert counts == [320, 18_496, 12 * 12 * 64 * 128 + 128, 128 * 10 + 10]
    assert sum(counts) == 1_199_882
    assert "12·12·64×128+128" in summarize_named("classic")


def test_sequence_net():
    rows = _rows(sequence_net(), (128, 1))
    shapes = [shape for _, shape, _, _ in rows]
    assert shapes == [(128, 16), (128, 16), (64, 16), (64, 32), (64, 32), (32, 32), (16, 32), (512,), (10,)]
    counts = [count for _, _, count, _ in rows if count]
    assert counts == [16 * (5 * 1 + 1), 32 * (5 * 16 + 1), 512 * 10 + 10] == [96, 2_592, 5_130]
    assert summarize_named("sequence").splitlines()[-1].split() == ["total", "7,818"]


def test_nested_serial_and_groups():
    model = serial(serial(Conv(8, 3, groups=2)), Flatten(), Dense(5))
    rows = _rows(model, (7, 7, 4))
    assert rows[0][2:] == (8 * (3 * 3 * 2 + 1), "8×(3·3·2+1)")
    assert rows[2][2:] == (5 * 5 * 8 * 5 + 5, "5·5·8×5+5")


def test_summarize_named_rejects_unknown_models():
    with pytest.raises(ValueError, match="model must be one of"):
        summarize_named("resnet50")


def test_resnet_summary_counts_and_total():
    lines = summarize_named("resnet").splitlines()
    assert lines[-1].split() == ["total", "272,186"]
    rows = {line.split()[0]: line.split() for line in lines[2:-2]}
    assert rows["BasicBlock32/2+projection"][1:3] == ["14×14×32", "14,528"]
    assert rows["GlobalAvgPool"][1:3] == ["64", "0"]


def test_other_parameter_layers_use_the_sum_of_sizes():
    scale = Layer(lambda key, shape: (shape, {"gamma": jnp.ones(shape[-1:]), "beta": jnp.zeros(shape[-1:])}, ()),
                  None, None, None, "Scale")
    (row,) = layer_rows(scale, (5, 3))
    assert (row.name, row.output_shape, row.params, row.formula) == ("Scale", (5, 3), 6, "3+3")
    assert param_count({"a": 2.0, "b": jnp.zeros((2, 2))}) == 5
