"""The package's modules import each other without a circle: the graph of every import that runs (at module level or
inside a function; not those under ``if TYPE_CHECKING:``), read from the source with ``ast``, is acyclic. An import
of ``a.b`` is an edge to ``a.b`` alone (that Python runs package ``a``'s ``__init__`` first is not an edge of its
own, as in import-graph tools)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vqvae_prior"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package: ``__init__.py`` is the package itself)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) blocks."""
    for node in ast.iter_child_nodes(tree):
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time. ``from a import b`` imports ``a.b`` when that is a
    module, else ``a``; a relative import is resolved against the importing module's package."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it was searched
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_imports_without_a_circle():
    graph = import_graph(PACKAGE)
    assert "vqvae_prior.prior" in graph and graph["vqvae_prior.prior"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_check_sees_circles_through_function_imports_and_not_type_checking_ones(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import c\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (package / "sub" / "c.py").write_text("import pkg.b\n")
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.c"}, "pkg.a": set(), "pkg.b": {"pkg.a"},
                     "pkg.sub.c": {"pkg.b"}}
    assert find_cycle(graph) is None
    (package / "a.py").write_text("from .sub.c import y\n")  # a -> sub.c -> b -> a, b's import inside a function
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]
