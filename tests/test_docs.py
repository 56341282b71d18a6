"""The documentation: the site builds with `mkdocs build --strict`, the API reference lists exactly each
package's ``__all__``, the pages speak of the software (no process words), and every module path they name imports."""

import importlib
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

import jaxcnn

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]

# API page (under site/) -> the packages it documents with `::: package`.
API_PAGES = {
    "api/jaxcnn": ["jaxcnn"],
    "api/ops": ["jaxcnn.ops"],
    "api/nn": ["jaxcnn.nn"],
    "api/proof": ["jaxcnn.proof", "jaxcnn.testing"],
    "api/training": ["jaxcnn.training"],
    "api/lecture": ["jaxcnn.lecture"],
}
BUILD_TIMEOUT_S = 120


def _page_param(path):
    name = path.relative_to(ROOT).as_posix()
    return pytest.param(path, id=name)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """One strict build of the site into a temporary folder, shared by the tests of this module."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return done, site


def _ids(html_path):
    return set(re.findall(r'\bid="([^"]+)"', html_path.read_text()))


def test_mkdocs_build_strict(built_site):
    done, site = built_site
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (site / "index.html").is_file()


def test_api_pages_name_the_documented_packages():
    """Each docs/api page's `::: package` roots are the packages the __all__ test below checks on it."""
    for page, packages in API_PAGES.items():
        text = (ROOT / "docs" / f"{page}.md").read_text()
        roots = re.findall(r"^::: (jaxcnn(?:\.\w+)*)$", text, flags=re.M)
        assert [root for root in roots if root in packages] == packages, (page, roots)


@pytest.mark.parametrize("page,package", [(p, m) for p, ms in API_PAGES.items() for m in ms],
                         ids=[m for ms in API_PAGES.values() for m in ms])
def test_api_reference_lists_exactly_all(built_site, page, package):
    """Every name of ``package.__all__`` has its heading on the package's API page, and no other public name does."""
    done, site = built_site
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}"
    module = importlib.import_module(package)
    if not hasattr(module, "__all__"):
        pytest.skip(f"{package} has no __all__ yet: the API page documents its __all__ once it has one")
    ids = _ids(site / page / "index.html")
    every_id = set().union(*(_ids(path) for path in (site / "api").rglob("index.html")))
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj):  # a public submodule: documented on its own API page
            found = obj.__name__ in every_id
        else:  # a name that is also a submodule's name is rendered under the module defining it
            defined_at = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}"
            found = f"{package}.{name}" in ids or defined_at in ids
            if package == "jaxcnn":  # the top level re-exports the floors' names: each is documented on its floor's page
                floors = (*jaxcnn._FLOORS, *jaxcnn._EXPORTS)  # pylint: disable=protected-access
                found = found or defined_at in every_id or any(f"{floor}.{name}" in every_id for floor in floors)
        if not found:
            missing.append(name)
    assert not missing, f"{package}: names of __all__ without a heading on {page}: {missing}"
    member = re.compile(rf"^{re.escape(package)}\.([A-Za-z]\w*)$")
    extra = sorted({m.group(1) for m in map(member.match, ids) if m} - set(module.__all__))
    assert not extra, f"{package}: {page} documents names that are not in __all__: {extra}"


# ---------------------------------------------------------------------------- the pages speak of the software

PROCESS_WORDS = [
    (r"\bissues?\s+#?\d+", "an issue number"),
    (r"(?<![\w&/#])#\d+\b", "an issue number"),
    (r"\bsessions?\b", "'session'"),
    (r"\bhelpers?\b", "'helper'"),
    (r"\blent\b", "'lent'"),
    (r"\bthrowaway\b", "'throwaway'"),
    (r"\bother engineers\b", "'other engineers'"),
]
CLOCK_TIME = re.compile(r"(?<![\w.:/\[-])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?![\w:])")


def _prose(text):
    """The text outside fenced code blocks and inline code (where slices like ``x[10:20]`` live)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _process_words(text):
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern, what in PROCESS_WORDS:
            found += [f"line {lineno}: {what}: {m.group(0)!r}" for m in re.finditer(pattern, line, re.I)]
    for lineno, line in enumerate(_prose(text).splitlines(), 1):
        found += [f"prose line {lineno}: a clock time: {m.group(0)!r}" for m in CLOCK_TIME.finditer(line)]
    return found


def test_process_words_are_detected():
    """The detector itself: each kind of process word is caught, and ordinary prose and code are not."""
    caught = "Fixed in issue 12 (see #12), measured at 23:17 in a session, a helper's throwaway probe, lent GPU"
    assert len(_process_words(caught)) == 7
    clean = "Stride 2: ⌊(8 − 3)/2⌋ + 1 = 3; `x[10:20]`; ratio 0.67×; 13 min 20 s; ![plot](a.png#12x)"
    assert _process_words(clean) == []
    assert _process_words("```python\ny = x[10:20]\n```\n") == []


@pytest.mark.parametrize("path", [_page_param(p) for p in PAGES])
def test_pages_speak_of_the_software(path):
    found = _process_words(path.read_text())
    assert not found, f"{path.name} speaks of the process, not the software:\n" + "\n".join(found)


# ---------------------------------------------------------------------------- module paths in the docs import

MODULE_PATH = re.compile(r"(?<![\w/.-])jaxcnn(?:\.[A-Za-z_]\w*)+(?![\w-])")
FILE_SUFFIXES = {"md", "py", "json", "png", "txt", "yml", "toml"}


def _resolves(dotted):
    """``jaxcnn.a.b.c`` imports: its longest importable prefix is a module, the rest are its attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_module_path_check_rejects_a_wrong_path():
    assert _resolves("jaxcnn.ops.convolution.resolve_impl")
    assert not _resolves("jaxcnn.ops.no_such_module")
    assert not _resolves("jaxcnn.ops.convolution.no_such_name")


@pytest.mark.parametrize("path", [_page_param(p) for p in PAGES])
def test_module_paths_in_docs_import(path):
    paths = {m.group(0).rstrip(".") for m in MODULE_PATH.finditer(path.read_text())}
    paths = {p for p in paths if p.rsplit(".", 1)[-1] not in FILE_SUFFIXES}
    broken = sorted(p for p in paths if not _resolves(p))
    assert not broken, f"{path.name} names module paths that do not import: {broken}"


def test_benchmarks_page_is_one_current_page():
    """BENCHMARKS.md stays a page of current figures: at most 200 lines, and every section has its command."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert len(text.splitlines()) <= 200
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    measured = [s for s in sections if "|" in s]
    assert measured and all(re.search(r"python |jaxcnn train", s) for s in measured), [s[:40] for s in measured]


# ---------------------------------------------------------------------------- docstrings cite the derivations page

def _slug(heading):
    """The anchor mkdocs' toc extension gives a heading without an explicit ``{#id}``."""
    text = re.sub(r"[^\w\s-]", "", heading.lower())
    return re.sub(r"[\s]+", "-", text.strip())


def _derivation_anchors():
    anchors = set()
    for line in (ROOT / "docs" / "derivations.md").read_text().splitlines():
        heading = re.match(r"^#+\s+(.*?)\s*(?:\{#([\w-]+)\})?\s*$", line)
        if heading:
            anchors.add(heading.group(2) or _slug(heading.group(1)))
    return anchors


def test_docstrings_cite_existing_derivations():
    """Every ``docs/derivations.md#anchor`` in the package names a section of that page; no docstring cites files a
    reader of the repository does not have."""
    anchors = _derivation_anchors()
    assert {"conv-input-gradient", "conv-weight-gradient", "max-pooling", "softmax-cross-entropy", "batch-norm",
            "toeplitz", "convolution-theorem"} <= anchors
    cited, unreadable = set(), []
    for path in sorted((ROOT / "jaxcnn").rglob("*.py")):
        text = path.read_text()
        cited |= {(path.name, a) for a in re.findall(r"docs/derivations\.md#([\w-]+)", text)}
        unreadable += [f"{path.name}: {m}" for m in re.findall(r"shared/seeds|\b[Ss]eeds? 0\d\d\b", text)]
    assert cited and not [c for c in cited if c[1] not in anchors], sorted(c for c in cited if c[1] not in anchors)
    assert not unreadable, unreadable
