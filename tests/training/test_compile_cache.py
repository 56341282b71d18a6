"""Training runs switch on JAX's persistent compilation cache; a second run loads instead of compiling
(counted by JAX's own ``cache_hits`` monitoring event)."""

import pathlib

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jaxcnn.training import compile_cache
from jaxcnn.training import loop as train


@pytest.fixture
def fresh_cache_config(monkeypatch):
    """Each test starts with no cache directory configured, and leaves the session's as it found it."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
    yield monkeypatch
    jax.config.update("jax_compilation_cache_dir", before)
    compilation_cache.reset_cache()


def _entries(path):
    return sorted(p.name for p in pathlib.Path(path).iterdir())


@pytest.mark.slow
def test_a_second_training_run_loads_its_programs_from_the_cache(tmp_path, fresh_cache_config):
    fresh_cache_config.setenv(compile_cache.ENV, str(tmp_path / "cache"))
    minimum = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # tiny programs compile fast
    try:
        config = train.TrainConfig(model="classic", dataset="mnist-sample", epochs=1, batch_size=50,
                                   train_limit=100, test_limit=100, augment="none")
        hits = []
        listener = lambda event, **_: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
        jax.monitoring.register_event_listener(listener)
        train.train_and_evaluate(config, tmp_path / "run1", progress=False, log=lambda _: None)
        first, first_hits = _entries(tmp_path / "cache"), len(hits)
        assert any(name.startswith("jit_train_chunk") for name in first), first
        assert any(name.startswith("jit_evaluate") for name in first), first
        train.train_and_evaluate(config, tmp_path / "run2", progress=False, log=lambda _: None)
        # run 2 loaded the epoch program and the evaluation from the cache, and compiled nothing new
        assert len(hits) - first_hits >= 2, (first_hits, len(hits))
        assert _entries(tmp_path / "cache") == first
    finally:
        jax.monitoring.unregister_event_listener(listener)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", minimum)


def test_the_switch_turns_it_off_and_a_users_directory_is_kept(tmp_path, fresh_cache_config):
    fresh_cache_config.setenv(compile_cache.ENV, "off")
    assert compile_cache.enable() is None
    assert not jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    fresh_cache_config.setenv(compile_cache.ENV, str(tmp_path / "ours"))
    assert compile_cache.enable() == str(tmp_path / "mine")
    assert not (tmp_path / "ours").exists()


def test_the_default_directory_follows_xdg(tmp_path, fresh_cache_config):
    fresh_cache_config.delenv(compile_cache.ENV, raising=False)
    fresh_cache_config.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.enable() == str(tmp_path / "jaxcnn" / "xla")
    assert (tmp_path / "jaxcnn" / "xla").is_dir()
