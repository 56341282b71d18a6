"""The Python examples in README.md and docs/**/*.md run as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (path.relative_to(ROOT).as_posix(), index, block)
    for path in DOCS
    for index, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S))
]


def test_readme_has_examples():
    assert any(name == "README.md" for name, _, _ in BLOCKS)


@pytest.mark.parametrize("name,index,block", BLOCKS, ids=[f"{n}[{i}]" for n, i, _ in BLOCKS])
@pytest.mark.slow
def test_documented_example_runs(name, index, block):
    exec(compile(block, f"{name}[python block {index}]", "exec"), {})
