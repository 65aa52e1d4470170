"""The package's import graph has no cycle: every ``import`` between ``mtl_attack`` modules,
module-level or inside a function, read with ``ast`` (nothing is imported to build it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(package_dir: Path) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file under ``package_dir``."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported(node: ast.Import | ast.ImportFrom, module: str, names: dict[str, Path]) -> set[str]:
    """The internal modules one import statement names: ``from a import b`` is ``a.b`` when
    that is a module, else ``a``; relative imports are resolved against ``module``. Parent
    packages that Python also initialises are not edges (as in import-linter)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & names.keys()
    base = node.module or ""
    if node.level:
        is_package = names[module].name == "__init__.py"
        anchor = module.split(".")
        anchor = anchor[: len(anchor) - node.level + is_package]
        base = ".".join([*anchor, base] if base else anchor)
    targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names}
    return targets & names.keys()


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """``{module: {internal modules it imports}}``; self-imports are not edges."""
    names = module_names(package_dir)
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= imported(node, module, names)
        graph[module] = edges - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_mtl_attack_has_no_import_cycle():
    graph = import_graph(ROOT / "mtl_attack")
    assert len(graph) > 50 and "mtl_attack.loggers" in graph  # the whole package was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_logging_does_not_import_dashboards_reports_or_the_runner():
    above = ("mtl_attack.dashboard", "mtl_attack.report", "mtl_attack.runner")
    edges = import_graph(ROOT / "mtl_attack")["mtl_attack.loggers"]
    assert not {e for e in edges if e.startswith(above)}


@pytest.mark.parametrize(
    "back_edge",
    [
        "from pkg.top import X\n",  # absolute
        "def late():\n    from ..top import X\n",  # relative, inside a function
        "import pkg.top\n",  # plain import
    ],
)
def test_a_cycle_in_a_tiny_package_is_found(tmp_path, back_edge):
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/top.py": "from pkg.low.leaf import helper\nX = 1\n",
            "pkg/low/__init__.py": "",
            "pkg/low/leaf.py": back_edge + "def helper(): ...\n",
        },
    )
    assert find_cycle(import_graph(package)) == ["pkg.low.leaf", "pkg.top", "pkg.low.leaf"]


def test_a_tiny_package_without_a_cycle_passes(tmp_path):
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.top import X\n",
            "pkg/top.py": "from . import low\nfrom pkg.low.leaf import helper\nX = 1\n",
            "pkg/low/__init__.py": "",
            "pkg/low/leaf.py": "import os\ndef helper(): ...\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.top"] == {"pkg.low", "pkg.low.leaf"}
    assert find_cycle(graph) is None
