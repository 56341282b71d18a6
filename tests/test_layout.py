"""The package's floors: imports only run downward (ops < nn < proof < training; lecture beside).

Reads every module's imports with ``ast`` (top-level and function-local alike) and fails on any
import of a jaxcnn floor that the importing floor may not use.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxcnn"

# What each floor may import, besides itself.
ALLOWED = {
    "ops": set(),
    "nn": {"ops"},
    "proof": {"ops", "nn"},
    "lecture": {"ops", "nn"},
    "training": {"ops", "nn", "proof"},
}
FLOORS = sorted(ALLOWED)


def _jaxcnn_imports(path: pathlib.Path):
    """``(line, dotted name)`` for every import of jaxcnn in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jaxcnn":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "jaxcnn":
                if node.module == "jaxcnn":
                    for alias in node.names:
                        yield node.lineno, f"jaxcnn.{alias.name}"
                else:
                    yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield node.lineno, "." * node.level + (node.module or "")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("jaxcnn"):
                yield node.lineno, node.args[0].value


def _modules(floor):
    return sorted((PACKAGE / floor).glob("*.py"))


def test_every_floor_exists_and_says_what_it_may_import():
    for floor in FLOORS:
        init = PACKAGE / floor / "__init__.py"
        assert init.exists(), f"jaxcnn/{floor}/ has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "May import" in doc, f"jaxcnn/{floor}/__init__.py must say what it may import"
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py", "testing.py"], loose  # testing: a re-export


@pytest.mark.parametrize("floor", FLOORS)
def test_imports_only_run_downward(floor):
    bad = []
    for path in _modules(floor):
        for line, name in _jaxcnn_imports(path):
            if name.startswith("."):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: relative import {name!r}")
                continue
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if target == floor:
                continue
            if target not in ALLOWED[floor]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {floor} imports {name}")
    assert not bad, "imports that run up or sideways:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The reader is not blind: upward imports written to a file, inside a function too, are found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from jaxcnn.training import data\n    import jaxcnn.proof.gradients\n")
    assert [name for _, name in _jaxcnn_imports(module)] == ["jaxcnn.training", "jaxcnn.proof.gradients"]


OLD_FLAT_PATHS = ("activations", "conv", "dense", "fft", "losses", "manual", "padding", "patches", "pool", "layers",
                  "models", "summary", "gradients", "gradcheck", "augment", "bench", "checkpoint", "data", "optim",
                  "parallel", "plots", "steps", "train", "kernels", "toeplitz", "views")


@pytest.mark.parametrize("old", OLD_FLAT_PATHS)
def test_the_flat_layouts_module_paths_are_gone(old):
    """``jaxcnn.layers``, ``jaxcnn.train``, ... were aliases of the floors' modules; each is now
    only reachable under its floor (CHANGELOG.md lists the moves)."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"jaxcnn.{old}")


def test_the_package_imports_no_script_folder():
    """``benchmarks/`` and ``experiments/`` sit beside the package and use it; it never imports them."""
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
           for path in sorted(PACKAGE.rglob("*.py"))
           for line, name in _imports(path) if name.split(".")[0] in ("benchmarks", "experiments", "_timing")]
    assert not bad, bad


def _imports(path: pathlib.Path):
    """``(line, dotted name)`` for every absolute import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_experiments_holds_the_research_examples_and_benchmarks_the_performance_scripts():
    root = PACKAGE.parent
    assert sorted(p.name for p in (root / "experiments").glob("*.py")) == [
        "autoencoder.py", "compare_gradients.py", "conv_views.py", "edge_detection.py"]
    assert (root / "benchmarks" / "_timing.py").is_file() and not (PACKAGE / "training" / "bench.py").exists()
