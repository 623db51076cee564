"""No import cycle among the project's own modules.

A cycle works only while its modules happen to be imported in one order
(cli.py and perf.py once imported each other, with the import at the bottom
of one file) and breaks when someone imports the other one first. The graph
is read statically and every `import` counts wherever it stands, inside
functions too: an import deferred into a function to dodge a cycle is still
the cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "workers", "shm", "loadtest")

Graph = dict[str, set[str]]


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Each module's dotted name and its source file."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports, anywhere in its source.

    An edge goes to the module named, not to the packages above it: that
    `import a.b` also runs `a/__init__` is how packages work, not a cycle
    anyone wrote. `from a import b` names the module a.b if there is one,
    else a name in a.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                package = module.split(".")
                if path.name != "__init__.py":
                    package.pop()
                package = package[:len(package) - (node.level - 1)]
                source = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return (found & known) - {module}


def import_graph(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> Graph:
    files = module_files(root, packages)
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module
    (Tarjan), each the shortest way from its first module back to it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [shortest_cycle(graph, component) for component in sorted(components)]


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """Breadth first from the component's first module until it comes back."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        reached = []
        for node in frontier:
            for target in sorted(graph.get(node, set()) & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    reached.append(target)
        frontier = reached
    raise AssertionError(f"{component} is not strongly connected")


def test_the_project_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_graph_has_the_project_modules_and_their_imports():
    """The walk sees what a cycle can hide behind, or the test above would
    pass on a project full of cycles."""
    graph = import_graph()
    assert {"appliance.cli", "appliance.client.admin", "workers.worker", "shm.errors",
            "loadtest.bench"} <= set(graph)
    assert "appliance.client.connection" in graph["appliance.client.admin"]


def test_imports_inside_functions_and_relative_ones_are_edges(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import name_in_a\n")
    (package / "a.py").write_text("def later():\n    from pkg import b\n")
    (package / "b.py").write_text("import pkg.a\nfrom . import c\n")
    (package / "c.py").write_text("import os\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a", "pkg.c"},
                     "pkg.c": set()}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_the_cycle_finder_names_a_cycle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
