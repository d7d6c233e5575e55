"""The layering, read from the code's own imports (every import, inside functions too; those
under `if TYPE_CHECKING:` only name types and are left out): no cycle between files or between
packages, the store independent of the method, the method independent of the orchestration."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP = ("ireasoner", "storage", "flows")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports (a `from a import b` of a submodule b names a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for node in ast.walk(block)}
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found - {_module(path)}


def _graph() -> dict[str, set[str]]:
    files = [p for top in TOP for p in (REPO / top).rglob("*.py")]
    modules = {_module(p) for p in files}
    return {_module(p): _imports(p, modules) for p in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package(module: str, graph: dict[str, set[str]]) -> str:
    """A package's modules, and a module's: the folder it lies in."""
    is_package = (REPO / Path(*module.split(".")) / "__init__.py").is_file()
    return module if is_package else module.rpartition(".")[0]


GRAPH = _graph()


def test_no_two_files_import_each_other_even_through_others():
    assert _cycles(GRAPH) == []


def test_no_two_packages_import_each_other_even_through_others():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, imported in GRAPH.items():
        source = _package(module, GRAPH)
        packages[source] |= {_package(m, GRAPH) for m in imported} - {source}
    assert _cycles(packages) == []


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("storage", ("ireasoner", "flows")),   # the store knows nothing of the method
    ("ireasoner", ("flows",)),              # the method never reaches the orchestration
])
def test_a_layer_never_imports_the_layers_above_it(layer, forbidden):
    offending = {module: sorted(m for m in imported if m.split(".")[0] in forbidden)
                 for module, imported in GRAPH.items() if module.split(".")[0] == layer}
    assert {m: bad for m, bad in offending.items() if bad} == {}


def test_the_method_does_not_import_prefect():
    users = sorted(str(p.relative_to(REPO)) for p in (REPO / "ireasoner").rglob("*.py")
                   if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "prefect" in
                          ((n.module or "") if isinstance(n, ast.ImportFrom)
                           else " ".join(a.name for a in n.names)).split(".")[0]
                          for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))))
    assert users == []


def test_the_walk_sees_the_imports_it_checks():
    """The checks above are only as good as the graph: it must hold known edges."""
    assert "ireasoner.pipeline.context" in GRAPH["ireasoner.trainers.ireasoner.update"]
    assert "storage.run" in GRAPH["storage.compaction"]
    assert "ireasoner.trainers.registry" in GRAPH["flows.train"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
