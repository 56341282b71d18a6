"""Tests for jaxcnn.training.loop (and its pieces: steps, checkpoint, plots, augment).

Short runs on real bundled digits: 1,000 training and 1,000 test digits (fixed
random subsets), classic network, SGD with momentum and the default one-cycle
schedule and augmentation, 2 epochs of 20 batches of 50. Measured on a 2-core
CPU the three gradient modes reach 92.1% test accuracy after epoch 2 (chance is
10%); the bar below is 85%. Their losses agree to ~1e-7 after epoch 1 and ~4e-5
after epoch 2 (float32 rounding differences, amplified by training); the test
asks for 1e-4. (Adam amplifies them more: it normalises even rounding-level
gradients to steps of size lr.)
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.training import augment
from jaxcnn.training import checkpoint
from jaxcnn.training import data
from jaxcnn.proof import gradients
from jaxcnn.nn import layers, models
from jaxcnn.ops import onednn
from jaxcnn.ops._native import loader
from jaxcnn.training import optim
from jaxcnn.training import plots
from jaxcnn.training import steps
from jaxcnn.training import loop as train

SMALL = train.TrainConfig(
    model="classic", dataset="mnist-sample", train_limit=1000, test_limit=1000,
    epochs=2, batch_size=50, steps_per_call=4, optimizer="momentum",
)
ACCURACY_BAR = 0.85
REQUIRED_KEYS = {
    "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds",
    "images_per_second", "devices", "grad", "impl", "model", "optimizer", "lr", "batch_size", "seed",
}
TIMING_KEYS = {"epoch_seconds", "eval_seconds", "images_per_second", "compile_seconds"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quiet(*args):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-epoch run per gradient mode: ``{mode: (workdir, Result)}``."""
    results = {}
    for mode in gradients.MODES:
        workdir = tmp_path_factory.mktemp(f"run-{mode}")
        config = dataclasses.replace(SMALL, grad=mode)
        results[mode] = workdir, train.train_and_evaluate(config, workdir, progress=False, log=_quiet)
    return results


def _without_timings(record):
    return {key: value for key, value in record.items() if key not in TIMING_KEYS}


# ------------------------------------------------------------- whole runs


@pytest.mark.parametrize("mode", gradients.MODES)
@pytest.mark.slow
def test_each_gradient_mode_learns(runs, mode):
    history = runs[mode][1].history
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["test_accuracy"] > ACCURACY_BAR
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.slow
def test_gradient_modes_give_the_same_losses(runs):
    reference = runs["autodiff"][1].history
    for mode in ("manual", "backprop"):
        for ours, theirs in zip(runs[mode][1].history, reference):
            for key in ("train_loss", "test_loss"):
                assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (mode, key)


@pytest.mark.slow
def test_metrics_file_has_every_epoch_and_required_key(runs):
    workdir, result = runs["autodiff"]
    records = checkpoint.read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert REQUIRED_KEYS <= set(record)
        assert record["grad"] == "autodiff" and record["impl"] == "auto" and record["devices"] >= 1
        assert record["train_examples"] == 1000 and record["test_examples"] == 1000
        assert record["epoch_seconds"] > 0 and record["images_per_second"] > 0
    assert "compile_seconds" in records[0] and "compile_seconds" not in records[1]
    assert records == json.loads(json.dumps(result.history))


@pytest.mark.slow
def test_plots_are_pngs(runs):
    workdir = runs["autodiff"][0]
    for name in (plots.CURVES_FILE, plots.FILTERS_FILE):
        assert (workdir / name).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_config_is_saved_with_the_resolved_learning_rate(runs):
    saved = train.TrainConfig.from_dict(checkpoint.load_config(runs["autodiff"][0]))
    assert saved == dataclasses.replace(SMALL, grad="autodiff", lr=optim.DEFAULT_LR["momentum"])


@pytest.mark.slow
def test_evaluate_checkpoint_reproduces_the_last_test_metrics(runs):
    workdir, result = runs["autodiff"]
    evaluated = train.evaluate_checkpoint(workdir)
    assert evaluated["epoch"] == 2
    assert evaluated["test_accuracy"] == result.history[-1]["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(result.history[-1]["test_loss"], rel=1e-6)


@pytest.mark.slow
def test_resume_continues_exactly(runs, tmp_path):
    """Stop after epoch 1, leave a stray epoch-2 line as a crash would, resume: the
    metrics and params equal those of the uninterrupted run."""
    train.train_and_evaluate(SMALL, tmp_path, progress=False, stop_after=1, log=_quiet)
    assert checkpoint.latest_epoch(tmp_path) == 1
    checkpoint.append_metrics(tmp_path, {"epoch": 2, "stray": True})
    resumed = train.train_and_evaluate(SMALL, tmp_path, resume=True, progress=False, log=_quiet)
    uninterrupted = runs["autodiff"][1]
    records = checkpoint.read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    assert [_without_timings(r) for r in records] == [_without_timings(r) for r in uninterrupted.history]
    assert "compile_seconds" in records[1]  # the resumed process compiled again
    jax.tree.map(np.testing.assert_array_equal, resumed.params, uninterrupted.params)


@pytest.mark.slow
def test_resume_needs_a_checkpoint_and_the_same_config(runs, tmp_path):
    with pytest.raises(ValueError, match="holds no training run"):
        train.prepare(SMALL, tmp_path, resume=True, notice=_quiet)
    workdir = runs["autodiff"][0]
    with pytest.raises(ValueError, match="only epochs may change.*lr=0.5"):
        train.prepare(dataclasses.replace(SMALL, lr=0.5), workdir, resume=True, notice=_quiet)
    with pytest.raises(ValueError, match="already holds a run"):
        train.prepare(SMALL, workdir, notice=_quiet)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("field, value", [
    ("model", "resnet50"), ("grad", "numeric"), ("impl", "cudnn"), ("optimizer", "lbfgs"),
    ("schedule", "step"), ("augment", "mixup"), ("epochs", 0), ("batch_size", -1), ("batch_size", 2.5),
    ("lr", 0.0), ("lr", float("nan")), ("lr", float("inf")), ("weight_decay", -1.0), ("seed", -1),
    ("train_limit", 0), ("eval_batch_size", 0), ("steps_per_call", 0), ("dataset", ""), ("data_dir", 3),
])
def test_bad_config_fields_raise_value_errors_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(SMALL, **{field: value}).validated()


def test_impl_choices_follow_conv_impls():
    import importlib

    assert train.conv_impls() == tuple(importlib.import_module("jaxcnn.ops.convolution").IMPLS)
    for impl in train.conv_impls():
        assert dataclasses.replace(SMALL, impl=impl).validated().impl == impl


def test_grad_defaults_per_model_and_is_saved_resolved():
    """``grad=None``: ``manual`` for resnet (its hand rules train it faster), ``autodiff`` otherwise;
    ``validated()`` fills it in, so config.json and ``--resume`` see the mode that ran."""
    assert train.TrainConfig().grad is None
    assert dataclasses.replace(SMALL, grad=None).validated().grad == "autodiff"
    assert dataclasses.replace(SMALL, model="resnet", grad=None).validated().grad == "manual"
    for mode in ("autodiff", "manual", "backprop"):
        assert dataclasses.replace(SMALL, model="resnet", grad=mode).validated().grad == mode
    assert train.default_grad("resnet") == "manual" and train.default_grad("classic") == "autodiff"


def test_batch_larger_than_the_training_set_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be at most the 1000 training examples"):
        train.prepare(dataclasses.replace(SMALL, batch_size=1001), tmp_path, notice=_quiet)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        train.TrainConfig.from_dict({"model": "classic", "colour": "red"})


# --------------------------------------------------------------- optimizer


def test_sgd_is_theta_minus_lr_times_gradient():
    config = dataclasses.replace(SMALL, optimizer="sgd", lr=0.1, schedule="constant").validated()
    tx = optim.make_optimizer(config, steps_per_epoch=20)
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([0.3, 0.4]), "b": jnp.array([-1.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    jax.tree.map(lambda p, g, n: np.testing.assert_allclose(n, p - 0.1 * g, rtol=1e-7), params, grads, new)


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
@pytest.mark.slow
def test_schedules_peak_at_lr_and_never_exceed_it(schedule):
    config = dataclasses.replace(SMALL, lr=0.01, schedule=schedule, epochs=10).validated()
    rates = np.array([optim.make_schedule(config, 20)(step) for step in range(200)])
    assert rates.max() == pytest.approx(0.01, rel=1e-3)
    assert np.all(rates <= 0.01 * (1 + 1e-6)) and np.all(rates >= 0)
    if schedule != "constant":
        assert rates[0] < 0.01 / 20 and rates[-1] < 0.01 / 100


def test_adamw_decays_kernels_but_not_biases():
    config = dataclasses.replace(SMALL, optimizer="adamw", lr=0.1, weight_decay=0.5, schedule="constant")
    tx = optim.make_optimizer(config.validated(), steps_per_epoch=1)
    params = [{"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}, ()]
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates[0]["w"], -0.1 * 0.5 * np.ones((2, 2)))
    np.testing.assert_array_equal(updates[0]["b"], np.zeros(2))


# ------------------------------------------------------------------- steps


@pytest.mark.parametrize("steps_per_epoch, most, expected", [
    (40, 8, 8), (39, 8, 3), (7, 8, 7), (1, 8, 1), (37, 8, 1), (20, 4, 4), (12, 5, 4),
])
def test_chunk_size_is_the_largest_divisor_within_the_limit(steps_per_epoch, most, expected):
    assert steps.chunk_size(steps_per_epoch, most) == expected


@pytest.mark.slow
def test_padded_evaluation_counts_every_example_once():
    """Batches of 300 over 1,000 digits (two zero-padded to 1,200) give what one
    unbatched pass gives."""
    images, labels = data.load("mnist-sample", "test")
    images, labels = images[:1000], labels[:1000]
    model = models.classic_net()
    _, params = model.init(jax.random.key(3), (-1, 28, 28, 1))
    batched = steps.batch_for_eval(images, labels, 300)
    assert batched.images.shape[:2] == (4, 300) and float(batched.mask.sum()) == 1000
    loss_sum, correct = steps.make_evaluate(model)(params, batched.images, batched.labels, batched.mask)
    logits = jax.jit(model.apply)(params, jnp.asarray(images))
    expected_loss = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
    assert int(correct) == int(jnp.sum(jnp.argmax(logits, axis=1) == labels))
    assert float(loss_sum) == pytest.approx(float(expected_loss), rel=1e-5)


def test_subsets_are_fixed_and_drawn_from_every_class():
    config = dataclasses.replace(SMALL, train_limit=300).validated()
    first, second = train.load_split(config, "train"), train.load_split(config, "train")
    np.testing.assert_array_equal(first[1], second[1])
    assert len(first[1]) == 300 and set(first[1].tolist()) == set(range(10))


# ------------------------------------------------------------------ augment


def _digits(count=8):
    images, _ = data.load("mnist-sample", "test")
    return jnp.asarray(images[:count])


def test_random_shift_is_a_whole_pixel_translation_with_zero_fill():
    images = _digits()
    shifted = augment.random_shift(jax.random.key(0), images, max_shift=2)
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for image, out in zip(padded, np.asarray(shifted)):
        crops = [image[r:r + 28, c:c + 28] for r in range(5) for c in range(5)]
        assert any(np.array_equal(out, crop) for crop in crops)


@pytest.mark.slow
def test_random_affine_with_no_range_is_the_identity():
    images = _digits()
    same = augment.random_affine(jax.random.key(0), images, max_shift=0, max_rotation=0, max_scale=0)
    np.testing.assert_allclose(same, images, atol=1e-6)


def test_random_affine_moves_digits_a_little_and_is_keyed():
    images = _digits()
    first = augment.random_affine(jax.random.key(1), images)
    again = jax.jit(augment.random_affine)(jax.random.key(1), images)
    other = augment.random_affine(jax.random.key(2), images)
    assert first.shape == images.shape and first.dtype == images.dtype
    np.testing.assert_allclose(first, again, atol=1e-5)  # jit fuses, rounding differs slightly
    assert not np.allclose(first, other)
    assert float(first.min()) >= 0 and float(first.max()) <= 1 + 1e-6
    ink = np.asarray(images).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(first).sum(axis=(1, 2, 3)), ink, rtol=0.35)


def test_augment_names_are_checked():
    with pytest.raises(ValueError, match="augment must be one of"):
        augment.augment_batch("flip", jax.random.key(0), _digits())


# ------------------------------------------------------------------- plots


def test_filter_tiles_scale_each_filter_to_unit_range():
    w = np.random.default_rng(0).normal(size=(3, 3, 1, 5))
    tiles = plots.filter_tiles(w)
    assert tiles.shape == (5, 3, 3)
    np.testing.assert_allclose(tiles.min(axis=(1, 2)), 0)
    np.testing.assert_allclose(tiles.max(axis=(1, 2)), 1)
    assert plots.filter_tiles(np.ones((3, 3, 3, 4))).shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match="2-D kernel"):
        plots.filter_tiles(np.ones((3, 1, 4)))


# ------------------------------------------------------------------ divergence


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = dataclasses.replace(SMALL, train_limit=200, test_limit=100, epochs=3, augment="none")
    train.run_epochs(train.prepare(config, tmp_path), progress=False, stop_after=1, log=_quiet)
    run = train.prepare(config, tmp_path, resume=True)
    poisoned = run._replace(train_images=run.train_images * jnp.nan)  # every batch of epoch 2 is NaN
    # ReLU propagates NaN (it used to map it to 0 and so hid it), so the loss itself becomes NaN.
    with pytest.raises(train.Diverged, match=r"training loss became nan at epoch 2, step 1;.*"
                                             r"checkpoint \(epoch 1\)"):
        train.run_epochs(poisoned, progress=False, log=_quiet)
    assert checkpoint.latest_epoch(tmp_path) == 1
    assert [r["epoch"] for r in checkpoint.read_metrics(tmp_path)] == [1]
    resumed = train.train_and_evaluate(config, tmp_path, resume=True, progress=False, log=_quiet)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert all(np.isfinite(r["train_loss"]) for r in resumed.history)


@pytest.mark.slow
def test_the_cli_reports_divergence_in_one_line_with_status_3(capsys, monkeypatch, tmp_path):
    from jaxcnn import cli

    def diverge(run, **_):
        raise train.Diverged("the training loss became inf at epoch 4, step 17; stopped.")

    monkeypatch.setattr(train, "run_epochs", diverge)
    status = cli.main(["train", "--dataset", "mnist-sample", "--train-limit", "100", "--test-limit", "100",
                       "--batch-size", "50", "--no-progress", "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == cli.DIVERGED == 3
    assert err == ["jaxcnn: error: the training loss became inf at epoch 4, step 17; stopped."]


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_epoch_1(tmp_path):
    config = dataclasses.replace(SMALL, train_limit=200, test_limit=100, epochs=1, augment="none")
    train.prepare(config, tmp_path)  # wrote config.json, then "died" before a checkpoint
    assert checkpoint.latest_epoch(tmp_path) is None
    result = train.train_and_evaluate(config, tmp_path, resume=True, progress=False, log=_quiet)
    assert [r["epoch"] for r in result.history] == [1] and checkpoint.latest_epoch(tmp_path) == 1


def test_the_config_must_be_a_train_config(tmp_path):
    with pytest.raises(TypeError, match="config must be a jaxcnn.TrainConfig, got dict"):
        train.train_and_evaluate({"model": "classic"}, tmp_path)


@pytest.mark.parametrize("losses, finite, message", [
    ([0.5, np.inf, np.nan], [True, False, False], r"^the training loss became inf at epoch 3, step 11; stopped\. "
                                                  r"The last good checkpoint \(epoch 2\)"),
    ([0.5, 0.4], [True, False], r"^a gradient became NaN or infinite at epoch 3, step 11;"),
])
def test_divergence_names_the_first_bad_step(tmp_path, losses, finite, message):
    train._check_finite(np.asarray(losses, np.float32), np.ones(len(losses), bool), 3, 10, tmp_path)  # no bad step
    with pytest.raises(train.Diverged, match=message):
        train._check_finite(np.asarray(losses, np.float32), np.asarray(finite), 3, 10, tmp_path)


def _count(jaxpr, primitive: str) -> int:
    return str(jaxpr).count(f" {primitive}[")


@pytest.mark.parametrize("grad", gradients.MODES)
def test_a_training_step_runs_one_forward(grad):
    """The step's accuracy comes from the differentiated forward's logits: the chunk's program has as many
    matrix products as ``loss_and_grad`` itself (a second ``apply`` for the accuracy was not merged with the
    forward by XLA under autodiff and cost a ResNet-20 step about 40%)."""
    model, tx = models.classic_net(impl="explicit"), optax.adam(1e-3)
    _, params = model.init(jax.random.key(0), (-1, 28, 28, 1))
    images, labels = jnp.zeros((8, 28, 28, 1)), jnp.zeros((8,), jnp.int32)
    chunk = steps.make_train_chunk(model, tx, grad=grad, augment="none", batch_size=4, steps_per_epoch=2, chunk=1)
    program = jax.make_jaxpr(chunk)(params, tx.init(params), images, labels, jax.random.key(1), jnp.int32(0))
    alone = jax.make_jaxpr(lambda p, x, y: gradients.loss_and_grad(model, p, x, y, grad=grad))(
        params, images[:4], labels[:4])
    assert _count(alone, "dot_general") >= 6  # 2 convs + 2 dense, forward and backward
    assert _count(program, "dot_general") == _count(alone, "dot_general")


def test_evaluation_resolves_auto_for_a_forward_alone(monkeypatch):
    """Without oneDNN's extension, ResNet's padded 3×3 convs train explicit (a rolled epoch scan) and evaluate
    with XLA's convolution (conv.resolve_impl's forward-only row); with it, float32 trains and evaluates on
    oneDNN."""
    model = models.resnet(blocks_per_stage=1)
    _, params, state = model.init_with_state(jax.random.key(0), (-1, 28, 28, 1))
    test = steps.batch_for_eval(np.zeros((4, 28, 28, 1), np.float32), np.zeros((4,), np.int32), 4)
    program = lambda: str(jax.make_jaxpr(steps.make_evaluate(model))(params, test.images, test.labels, test.mask,
                                                                     state))
    if onednn.available():
        assert not steps.lax_conv_on_cpu(model, params, (4, 28, 28, 1), state)
        text = program()
        assert "conv_general_dilated" not in text and "jaxcnn_onednn_conv_forward" in text
    monkeypatch.setattr(loader, "native", lambda: loader.Native(None, "hidden by the test"))
    assert not steps.lax_conv_on_cpu(model, params, (4, 28, 28, 1), state)
    assert "conv_general_dilated" in program()
