"""A griffe extension for the API reference: the docstrings' reStructuredText idioms, rendered as Markdown.

jaxcnn's docstrings follow optax's style: Google sections, ``.. math::`` blocks, ``:math:`` and ``:func:`` roles.
mkdocstrings renders docstrings as Markdown, so before they are parsed this extension rewrites

- a ``.. math::`` block into ``$$ … $$`` blocks (one per paragraph of the block), typeset by MathJax;
- ``:math:`x``` into ``\\(x\\)``;
- ``:func:`~a.b``` and the other cross-reference roles into inline code (``b`` for ``~a.b``, else ``a.b``);
- the continuation lines of an ``Args:`` or ``Raises:`` entry written at the entries' own indent, one step
  deeper, so the Google parser reads them as that entry's description.

It changes what the site shows, never the package.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):`(~?)([^`]+)`")
MATH_ROLE = re.compile(r":math:`([^`]+)`")
ITEM = {  # what starts an entry of a Google section; any other line at the entries' indent continues one
    "Raises": re.compile(r"^[A-Z]\w*(?:Error|Exception|Warning|Interrupt)\b"),
    "Args": re.compile(r"^\*{0,2}[A-Za-z_]\w*(?:,\s*\*{0,2}[A-Za-z_]\w*)*\s*(?:\([^)]*\))?:(?:\s|$)"),
}


def _role(match):
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _math_blocks(lines):
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        head = re.match(r"^(\s*)\.\. math::\s*(.*)$", line)
        if not head:
            out.append(line)
            i += 1
            continue
        indent, first = head.groups()
        body = [first] if first.strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        paragraphs = [[]]
        for row in body:
            if row:
                paragraphs[-1].append(row)
            elif paragraphs[-1]:
                paragraphs.append([])
        for paragraph in paragraphs:
            if paragraph:
                out += [f"{indent}$$", *(indent + row for row in paragraph), f"{indent}$$", ""]
    return out


def _continuations(lines):
    out, section, section_indent, item_indent = [], None, None, None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        head = re.match(r"^\s*(Raises|Args):\s*$", line)
        if head:
            section, section_indent, item_indent = head.group(1), indent, None
        elif section is not None and line.strip():
            if indent <= section_indent:
                section = None
            elif item_indent is None:
                item_indent = indent
            elif indent == item_indent and not ITEM[section].match(line.strip()):
                line = " " * 4 + line
        out.append(line)
    return out


def rewrite(text: str) -> str:
    """The docstring ``text`` with its reStructuredText idioms in Markdown."""
    lines = _continuations(_math_blocks(text.splitlines()))
    text = "\n".join(lines)
    text = MATH_ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)
    return ROLE.sub(_role, text)


class RstDocstrings(griffe.Extension):
    """Rewrites every docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
