"""What the project's modules import, read from their source with ``ast`` (a test helper).

Every ``import`` statement counts, at module level or inside a function (a function-level
import is how a cycle gets dodged); imports under ``if TYPE_CHECKING:`` do not (they never
run). Used by the layering tests (tests/test_layers.py) and device_bench's own import test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Source folder -> the package name it is installed as (setup.py's package_dir).
PACKAGES = {"edgekit": "edgekit", "converters": "edgekit.converters",
            "models": "edgekit.models", "device_bench": "device_bench"}


@dataclass(frozen=True)
class Edge:
    """One ``import`` statement: who imports what, where, and whether inside a function."""

    module: str
    target: str
    line: int
    in_function: bool


def module_files(folders: Iterable[str] = tuple(PACKAGES)) -> dict[str, Path]:
    """Installed module name -> source file, for every ``.py`` under the given folders.

    Args:
        folders: Source folders of the repository (keys of :data:`PACKAGES`).

    Returns:
        The modules, sorted by name (a package is named by its ``__init__.py``).
    """
    out: dict[str, Path] = {}
    for folder in folders:
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([PACKAGES[folder], *parts])] = path
    return dict(sorted(out.items()))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(name: str, path: Path, known: Iterable[str]) -> list[Edge]:
    """The imports of one module.

    Args:
        name: Its installed name.
        path: Its source file.
        known: Every module name of the project (``from pkg import mod`` resolves to ``mod``
            when it is one).

    Returns:
        One edge per imported name, in source order.
    """
    known = set(known)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges: list[Edge] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                edges.extend(Edge(name, a.name, child.lineno, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from . import x
                    package = name.split(".")
                    package = package[: len(package) - child.level + (1 if is_package else 0)]
                    base = ".".join([*package, *([base] if base else [])])
                for a in child.names:
                    full = f"{base}.{a.name}"
                    edges.append(Edge(name, full if full in known else base, child.lineno,
                                      inside))
            visit(child, inside)

    visit(tree, False)
    return edges


def all_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import of every module in ``modules``."""
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def internal_graph(modules: dict[str, Path], edges: Iterable[Edge]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for e in edges:
        if e.target in modules and e.target != e.module:
            graph[e.module].add(e.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first walk meets (each as ``[a, b, ..., a]``); empty when none."""
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [])
    return found


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether ``start`` imports ``goal``, directly or through other modules."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False
