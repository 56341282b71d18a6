"""The public API: explicit ``__all__`` faces, no alias modules, and an import that changes nothing.

- Importing ``jaxcnn.ops``, ``jaxcnn.nn`` or ``jaxcnn.testing`` loads none of the training
  floor's heavy dependencies (optax, orbax, tensorflow_datasets, matplotlib); importing
  ``jaxcnn`` and every name it exports leaves the SIGINT handler as it was and never calls
  glibc's ``mallopt``, while :func:`jaxcnn.configure_process` changes both (the control that
  shows the probes see a change).
- Every name of every face's ``__all__`` exists and has a docstring; every op with its hand rule
  and every layer, combinator and model builder of the floor modules is in its package's
  ``__all__``; the top level re-exports the floors' objects themselves.
- No ``jaxcnn.X`` module in ``sys.modules`` is an alias of another module, and no exported
  name is both a function and a submodule.
"""

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import jaxcnn

HEAVY = ("optax", "orbax", "tensorflow_datasets", "matplotlib")
FACES = ("jaxcnn", "jaxcnn.ops", "jaxcnn.nn", "jaxcnn.proof", "jaxcnn.lecture", "jaxcnn.testing", "jaxcnn.training")


def _run(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["jaxcnn.ops", "jaxcnn.nn", "jaxcnn.testing"])
def test_the_lower_floors_import_no_training_dependency(module):
    loaded = _run(f"""
import json, sys
import {module}
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))))
""")
    assert loaded == [], f"import {module} loaded {loaded}"


def test_the_training_floor_does_load_them():
    """The control: the probe above sees these modules when they are imported."""
    loaded = _run(f"""
import json, sys
import jaxcnn.training.loop
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))))
""")
    assert "optax" in loaded, loaded


PROCESS_PROBE = """
import ctypes, json, signal, sys
mallopt_lookups = []
original_getattr = ctypes.CDLL.__getattr__

def spy(self, name):
    if name == "mallopt":
        mallopt_lookups.append(name)
    return original_getattr(self, name)

ctypes.CDLL.__getattr__ = spy
before = signal.getsignal(signal.SIGINT)
import jaxcnn
import jaxcnn.ops, jaxcnn.nn, jaxcnn.testing, jaxcnn.proof, jaxcnn.lecture
for name in jaxcnn.__all__:  # every exported name, the training floor's included
    getattr(jaxcnn, name)
after_import = dict(handler_unchanged=signal.getsignal(signal.SIGINT) is before, mallopt=len(mallopt_lookups),
                    allocator_applied=sys.modules["jaxcnn.training.allocator"].applied)
settings = jaxcnn.configure_process()
after_call = dict(handler_unchanged=signal.getsignal(signal.SIGINT) is before, mallopt=len(mallopt_lookups),
                  settings=settings._asdict())
print(json.dumps(dict(after_import=after_import, after_call=after_call)))
"""


def test_importing_jaxcnn_changes_nothing_and_configure_process_is_the_one_call():
    result = _run(PROCESS_PROBE)
    assert result["after_import"] == {"handler_unchanged": True, "mallopt": 0, "allocator_applied": False}
    after_call = result["after_call"]
    assert after_call["handler_unchanged"] is False and after_call["settings"]["interrupt"] is True
    if sys.platform.startswith("linux") and after_call["settings"]["allocator"]:
        assert after_call["mallopt"] >= 1  # the spy sees mallopt where glibc's allocator was set


def test_importing_jaxcnn_alone_imports_no_floor():
    loaded = _run("""
import json, sys
import jaxcnn
print(json.dumps(sorted(name for name in sys.modules if name == "jax" or name.startswith(("jax.", "jaxcnn.")))))
""")
    assert loaded == [], loaded


# ------------------------------------------------------------------ the faces


def _face(name):
    return importlib.import_module(name)


@pytest.mark.parametrize("face", FACES)
def test_every_exported_name_exists_once_and_has_a_docstring(face):
    module = _face(face)
    names = module.__all__
    assert len(names) == len(set(names)), [name for name in names if names.count(name) > 1]
    undocumented = [name for name in names if not (inspect.getdoc(getattr(module, name)) or "").strip()]
    assert undocumented == [], f"{face}: no docstring: {undocumented}"
    assert set(names) <= set(dir(module))


def test_the_top_level_re_exports_the_floors_objects():
    for name in jaxcnn.__all__:
        value = getattr(jaxcnn, name)
        if isinstance(value, types.ModuleType):
            assert value.__name__ == f"jaxcnn.{name}"
        else:
            assert value.__module__.startswith("jaxcnn."), (name, value.__module__)
    ops, nn = _face("jaxcnn.ops"), _face("jaxcnn.nn")
    for floor in (ops, nn):
        missing = [name for name in floor.__all__ if name not in jaxcnn.__all__]
        assert missing == [], f"{floor.__name__} exports names the top level does not: {missing}"
        assert all(getattr(jaxcnn, name) is getattr(floor, name) for name in floor.__all__)


def test_an_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'layers'"):
        jaxcnn.layers  # pylint: disable=pointless-statement  # the flat layout's alias, removed


def _submodules(package):
    """Every module of ``package`` (recursively), imported."""
    modules = [package]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if not info.name.endswith(".__main__"):  # running it would run the command
            modules.append(importlib.import_module(info.name))
    return modules


def _function_defined_in(module, name):
    value = getattr(module, name)
    return inspect.isfunction(value) and value.__module__ == module.__name__


def test_every_op_and_its_hand_rule_is_in_the_ops_face():
    """An op is a public function ``f`` of an ``jaxcnn.ops`` module with ``f_backward`` beside it."""
    ops = _face("jaxcnn.ops")
    missing = []
    for module in _submodules(ops)[1:]:
        for name in dir(module):
            if not name.startswith("_") and _function_defined_in(module, name) \
                    and hasattr(module, f"{name}_backward") and _function_defined_in(module, f"{name}_backward"):
                missing += [n for n in (name, f"{name}_backward") if n not in ops.__all__]
    assert missing == [], f"ops with a hand rule missing from jaxcnn.ops.__all__: {missing}"


def test_every_layer_combinator_and_model_builder_is_in_the_nn_face():
    nn = _face("jaxcnn.nn")
    missing = []
    for module_name in ("jaxcnn.nn.layers", "jaxcnn.nn.stateful", "jaxcnn.nn.combinators", "jaxcnn.nn.models"):
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{name}" for name in dir(module)
                    if not name.startswith("_") and not name.isupper() and callable(getattr(module, name))
                    and getattr(getattr(module, name), "__module__", None) == module_name and name not in nn.__all__]
    assert missing == [], f"layers, combinators or models missing from jaxcnn.nn.__all__: {missing}"


# ------------------------------------------------------------ module identity


def test_no_jaxcnn_module_is_an_alias_of_another():
    """Every ``jaxcnn.X`` in ``sys.modules`` is the module of that name, loaded from its own file."""
    _submodules(jaxcnn)
    for name in jaxcnn.__all__:
        getattr(jaxcnn, name)
    aliases = {key: module.__name__ for key, module in sys.modules.items()
               if (key == "jaxcnn" or key.startswith("jaxcnn.")) and module is not None and module.__name__ != key}
    assert aliases == {}, aliases


def _clashes(face):
    """Names of ``face.__all__`` that are a function (or class) while ``face`` has a submodule of that name."""
    module = _face(face)
    if not hasattr(module, "__path__"):
        return []
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    return sorted(name for name in module.__all__
                  if name in submodules and not isinstance(getattr(module, name), types.ModuleType))


@pytest.mark.parametrize("face", ["jaxcnn", "jaxcnn.proof", "jaxcnn.lecture", "jaxcnn.training"])
def test_no_exported_name_is_both_a_module_and_a_function(face):
    assert _clashes(face) == []


@pytest.mark.parametrize("face", ["jaxcnn.ops", "jaxcnn.nn"])
def test_no_floor_name_is_both_a_module_and_a_function(face):
    assert _clashes(face) == []


def test_the_top_level_exports_no_module_but_its_subpackages():
    modules = [name for name in jaxcnn.__all__ if isinstance(getattr(jaxcnn, name), types.ModuleType)]
    assert sorted(modules) == sorted(["ops", "nn", "proof", "training", "lecture", "testing"])


# ------------------------------------------------------------- a new op's reach

NEW_OP = '''

def _softsign(x):
    return x / (1 + jnp.abs(x))


def softsign_backward(dy, x):
    """Hand rule of :func:`softsign`: ``dx = dy / (1 + |x|)²``."""
    return dy / (1 + jnp.abs(x)) ** 2


@declare(_softsign, softsign_backward)
def softsign(x):
    """Softsign ``x / (1 + |x|)``, elementwise."""
    return (_inexact(x),), {}


__all__ += ["softsign", "softsign_backward"]
'''

NEW_LAYER = '''

Softsign = layer_from_op(activations.softsign)
__all__ += ["Softsign"]
'''


@pytest.mark.slow
def test_a_new_op_and_its_layer_need_edits_in_two_package_files(tmp_path):
    """Declaring an op in its module and deriving its layer reaches every face with no other edit.

    A copy of the package gets ``softsign`` appended to ``ops/activations.py`` (with its
    ``__all__`` entry) and ``Softsign = layer_from_op(softsign)`` to ``nn/layers.py``; nothing
    else changes, and ``jaxcnn.ops``, ``jaxcnn.nn`` and the top level export both, the layer
    running its hand rule under ``grad="manual"``.
    """
    import shutil  # pylint: disable=import-outside-toplevel

    package = Path(jaxcnn.__file__).parent
    copy = tmp_path / "jaxcnn"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "mnist_sample"))
    with open(copy / "ops" / "activations.py", "a", encoding="utf-8") as file:
        file.write(NEW_OP)
    with open(copy / "nn" / "layers.py", "a", encoding="utf-8") as file:
        file.write("\nfrom jaxcnn.ops import activations  # noqa: E402\n" + NEW_LAYER)
    changed = sorted(str(path.relative_to(tmp_path)) for path in copy.rglob("*.py")
                     if path.read_bytes() != (package / path.relative_to(copy)).read_bytes())
    assert changed == ["jaxcnn/nn/layers.py", "jaxcnn/ops/activations.py"]
    result = _run(f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
import jax, jax.numpy as jnp
import jaxcnn, jaxcnn.ops, jaxcnn.nn
assert jaxcnn.__file__.startswith({str(tmp_path)!r}), jaxcnn.__file__
model = jaxcnn.serial(jaxcnn.Dense(3), jaxcnn.Softsign())
_, params = model.init(jax.random.key(0), (-1, 4))
x = jnp.linspace(-2.0, 2.0, 8).reshape(2, 4)
grads = {{grad: jax.grad(lambda p: jnp.sum(model.apply(p, x, grad=grad)))(params) for grad in ("autodiff", "manual")}}
difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*map(jax.tree.leaves, grads.values())))
print(json.dumps(dict(
    ops="softsign" in jaxcnn.ops.__all__ and "softsign_backward" in jaxcnn.ops.__all__,
    nn="Softsign" in jaxcnn.nn.__all__, top=all(n in jaxcnn.__all__ for n in ("softsign", "Softsign")),
    same=jaxcnn.softsign is jaxcnn.ops.softsign and jaxcnn.Softsign is jaxcnn.nn.Softsign,
    difference=difference)))
""")
    assert result["ops"] and result["nn"] and result["top"] and result["same"], result
    assert result["difference"] < 1e-6, result
