"""A Griffe extension for the API reference: lrgym's docstrings in Markdown.

lrgym's docstrings are Google style with a little reStructuredText in the text, which
mkdocstrings (Markdown) would show as written. Before rendering, this rewrites:

* Sphinx roles (``:class:`~lrgym.x.Y```, ``:func:`train```, ...) into cross-references to the
  object's entry in the reference, resolved from the docstring's scope. A public name of
  ``lrgym`` or ``lrgym_agents`` must be in the reference (else the strict build fails); any other name
  (``torch.optim.SGD``) links when the reference documents it and stays plain code when not.
* reST simple tables (``=====  =====`` borders) into Markdown tables.
* ``text::`` before a literal block into ``text:`` (the indented block is a code block already).

Only the rendered site changes; the source files are not touched. Loaded by ``mkdocs.yml``
(``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`([^`]+)`")
BORDER = re.compile(r"^( *)(=+)( +=+)+ *$")
LITERAL = re.compile(r"(\S)::\n(\n[ \t]+\S)")
PACKAGES = ("lrgym", "lrgym_agents")


def canonical(modules: griffe.ModulesCollection, path: str) -> str:
    """``path`` with every re-export followed (``lrgym.Task`` -> ``lrgym.tasks.family.Task``)."""
    parts = path.split(".")
    current: griffe.Object | griffe.Alias | None = modules.members.get(parts[0])
    if current is None:
        return path
    for k, part in enumerate(parts[1:], start=1):
        members = getattr(current, "all_members", current.members)
        member = members.get(part)
        if member is None:
            return ".".join([current.path, *parts[k:]])
        if member.is_alias:
            try:
                member = member.final_target
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return ".".join([member.target_path, *parts[k + 1 :]])
        current = member
    return current.path


def resolve(modules: griffe.ModulesCollection, obj: griffe.Object, name: str) -> str:
    """The full path ``name`` means in ``obj``'s docstring (``name`` itself when not found)."""
    first, _, rest = name.partition(".")
    if first in PACKAGES:
        return canonical(modules, name)
    scope: griffe.Object | None = obj
    while scope is not None:
        member = getattr(scope, "all_members", scope.members).get(first)
        if member is not None:
            base = member.target_path if member.is_alias else member.path
            return canonical(modules, f"{base}.{rest}" if rest else base)
        scope = scope.parent
    return name


def role_to_ref(modules: griffe.ModulesCollection, obj: griffe.Object, match: re.Match[str]) -> str:
    written = re.sub(r"\s+", "", match.group(1))
    target = written.lstrip("~")
    title = target.rsplit(".", 1)[-1] if written.startswith("~") else target
    identifier = resolve(modules, obj, target)
    code = f"<code>{html.escape(title)}</code>"
    # a name of lrgym's own must exist (a broken reference fails the strict build); others
    # (torch, numpy, ...) link when documented here and stay plain code when not
    parts = identifier.split(".")
    private = any(p.startswith("_") and not p.endswith("__") for p in parts)  # not rendered
    optional = "" if parts[0] in PACKAGES and not private else " optional"
    return f'<autoref identifier="{html.escape(identifier)}"{optional}>{code}</autoref>'


def rst_tables(text: str) -> str:
    """Each reST simple table of ``text`` as a Markdown table (moved to the left margin)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        border = BORDER.match(lines[i])
        if not border:
            out.append(lines[i])
            i += 1
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[i])]
        j = i + 1
        rows: list[list[str]] = []
        header: list[str] | None = None
        closed = False
        while j < len(lines):
            line = lines[j]
            if BORDER.match(line):
                # a border after the first row ends the header, if another border ends the table
                later = any(BORDER.match(rest) for rest in lines[j + 1 :])
                if header is None and len(rows) == 1 and later:
                    header = rows.pop()
                    j += 1
                    continue
                closed = True
                j += 1
                break
            cells = []
            for k, (start, _) in enumerate(spans):
                stop = spans[k + 1][0] if k + 1 < len(spans) else len(line)
                cells.append(line[start:stop].strip())
            if cells[0] or not rows:
                rows.append(cells)
            else:  # continuation line: extends the row above
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            j += 1
        if not closed:  # not a table after all
            out.append(lines[i])
            i += 1
            continue
        header = header or [""] * len(spans)
        out.append("")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(spans))
        for row in rows:
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
        i = j
    return "\n".join(out)


def to_markdown(modules: griffe.ModulesCollection, obj: griffe.Object, text: str) -> str:
    text = rst_tables(text)
    text = LITERAL.sub(r"\1:\n\2", text)
    return ROLE.sub(lambda match: role_to_ref(modules, obj, match), text)


class SphinxMarkup(griffe.Extension):
    """Rewrites the docstrings of every object of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        modules = loader.modules_collection
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(modules, obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if isinstance(m, griffe.Object))
