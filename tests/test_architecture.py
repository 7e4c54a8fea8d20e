"""The layout's rules, checked on the source: module, class and function sizes, no import cycle,
and imports that only go down the layers (``lrgym`` never imports the learners, ``lrgym_agents``).

The layers of ``lrgym``, low to high (a module may import its own layer and those below)::

    errors, jsonfile, native_caches  ->  data  ->  tasks  ->  optimizers  ->  features
    ->  controllers  ->  control  ->  training  ->  rendering  ->  envs, spec  ->  registration
    ->  bench  ->  cli

Imports under ``if TYPE_CHECKING:`` count too: a type-only cycle is still a cycle of the design.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lrgym", "agents")  # folders; agents/ installs as lrgym_agents
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 100

LAYERS = (
    ("errors", "jsonfile", "native_caches"),
    ("data",),
    ("tasks",),
    ("optimizers",),
    ("features",),
    ("controllers", "pretrained"),
    ("control",),
    ("training", "reward"),
    ("rendering",),
    ("envs", "spec"),
    ("registration",),
    ("bench",),
    ("cli",),
)
"""``lrgym``'s top-level modules and subpackages by layer (``lrgym/__init__.py`` sits on top)."""


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module
                yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "lrgym" or len(parts) < 2:
        return None
    for level, names in enumerate(LAYERS):
        if parts[1] in names:
            return level
    raise AssertionError(f"{module} is in no layer of LAYERS; add it where it belongs")


def _lines(node: ast.AST) -> int:
    return int(node.end_lineno or 0) - int(node.lineno) + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_class_and_function_sizes_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines; split it by concept"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            assert _lines(node) <= MAX_CLASS_LINES, f"class {node.name}: {_lines(node)} lines"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert _lines(node) <= MAX_FUNCTION_LINES, f"{node.name}(): {_lines(node)} lines"


def _is_learners(module: str) -> bool:
    return module.split(".")[0] in ("agents", "lrgym_agents")


def test_lrgym_never_imports_the_learners() -> None:
    for path in (ROOT / "lrgym").rglob("*.py"):
        upward = [m for m in _imports(path) if _is_learners(m)]
        assert not upward, f"{path.relative_to(ROOT)} imports {upward}"


def _absolute_imports(source: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _code_sources() -> Iterator[tuple[str, str]]:
    """Every Python file of the repository's code folders, and every notebook's code cells."""
    for folder in ("lrgym", "agents", "tests", "studies", "perf", "notebooks", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for k, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
            lines = "".join(cell["source"]).splitlines()
            code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
            yield f"{path.relative_to(ROOT)} cell {k}", code


def test_no_code_imports_the_learners_by_their_folder_name() -> None:
    """``agents`` is the folder; the package is ``lrgym_agents``. An ``import agents`` works in the
    repository (its root is on the path) and fails where the wheel is installed; beside
    ``lrgym_agents`` it would also load every module twice. Inside ``agents/`` the imports are
    relative."""
    old = [
        f"{name}: {m}"
        for name, source in _code_sources()
        for m in _absolute_imports(source)
        if m == "agents" or m.startswith("agents.")
    ]
    assert not old, f"import lrgym_agents instead: {old}"


def test_lrgym_imports_only_go_down_the_layers() -> None:
    problems = []
    for path in (ROOT / "lrgym").rglob("*.py"):
        here = _module_name(path)
        level = _layer(here)
        if level is None:  # lrgym/__init__.py: the public surface, on top
            continue
        for imported in _imports(path):
            there = _layer(imported)
            if there is not None and there > level:
                problems.append(f"{here} (layer {level}) imports {imported} (layer {there})")
    assert not problems, "\n".join(sorted(set(problems)))


def test_there_is_no_import_cycle() -> None:
    modules = {_module_name(p): p for p in _sources()}
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its submodules is not a cycle of the design: drop the
    # edges from a package to its own submodules.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
