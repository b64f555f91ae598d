"""The package's modules form layers: no module imports, directly or through others, one that
imports it back.

The graph is read from the source (the AST), not from ``sys.modules``, so a function-level import
counts as much as a module-level one: it runs the first time the function is called, and a cycle
through it is a cycle all the same. Modules are found by globbing ``dsco/*.py`` (modules added later
are checked without editing this file). An edge ``a -> b`` is any ``import dsco.b``, ``from dsco
import b`` / ``from . import b`` (when ``dsco/b.py`` exists), or ``from dsco.b import ...`` /
``from .b import ...`` anywhere in ``a``.

Reading a *name* from the package itself (``from . import ROOT``: no ``dsco/ROOT.py``) is not an
edge: Python initialises the package before any of its modules, so the name is there as long as
``__init__.py`` defines its names before it imports a submodule -- which the second test checks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dsco"
INIT = "__init__"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """``{module name: file}`` for every ``*.py`` directly in the package (``__init__`` too)."""
    return {p.stem: p for p in sorted(package.glob("*.py"))}


def imported(path: Path, names: set[str], package: str = "dsco") -> set[str]:
    """The package modules (of ``names``) that the file at ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 or (
                node.level == 0 and node.module and node.module.split(".")[0] == package
            ):
                inner = (node.module or "").split(".")
                inner = inner[1:] if node.level == 0 else inner
                if inner and inner[0]:
                    found.add(inner[0])  # from .x import y
                else:  # from . import x
                    found |= {a.name for a in node.names if a.name in names}
    return (found & names) - {path.stem}


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: the package modules it imports}`` for the whole package."""
    mods = modules(package)
    names = set(mods) - {INIT}
    return {name: imported(path, names) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module
    (Tarjan's algorithm; a module never counts as importing itself)."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_cycle_in(edges, comp) for comp in comps]


def _cycle_in(edges: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the alphabetically first module of a strongly connected ``comp``."""
    start = min(comp)
    paths, seen = [[start]], {start}
    while paths:
        nxt = []
        for path in paths:
            for w in sorted(edges[path[-1]] & comp):
                if w == start:
                    return path + [start]
                if w not in seen:
                    seen.add(w)
                    nxt.append(path + [w])
        paths = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(comp)}")


def test_the_package_has_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycle(s): " + "; ".join(" -> ".join(c) for c in found)


def test_init_defines_its_names_before_it_imports_a_submodule():
    """A module's ``from . import NAME`` must find NAME even while ``__init__`` is still running."""
    body = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf8")).body
    first = next(
        (i for i, node in enumerate(body) if isinstance(node, ast.ImportFrom) and node.level == 1),
        len(body),
    )
    late = [
        getattr(node, "name", None) or ast.unparse(node).splitlines()[0]
        for node in body[first:]
        if not isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert not late, f"dsco/__init__.py defines {late} after importing a submodule: move them up"


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "dsco"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("ROOT = 1\nfrom .a import x\n")
    (pkg / "a.py").write_text("from . import ROOT, b\nx = 1\n")
    (pkg / "b.py").write_text("def f():\n    from .c import y\n    return y\n")
    (pkg / "c.py").write_text("import dsco.d\ny = 1\n")
    (pkg / "d.py").write_text("from dsco import a\nimport os\nfrom .. import elsewhere\n")
    (pkg / "e.py").write_text("from dsco.c import y\n")
    edges = graph(pkg)
    assert edges == {INIT: {"a"}, "a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"a"}, "e": {"c"}}
    assert cycles(edges) == [["a", "b", "c", "d", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


#: "About 500 lines at most" per module (the developers' guide); a module past this is two concepts.
MAX_LINES = 510


def test_every_module_is_one_concept_of_about_500_lines_at_most():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_readme_maps_every_module_in_its_diagram_and_its_table():
    readme = (PACKAGE.parent / "README.md").read_text()
    layers = readme.split("### The package's layers", 1)[1].split("\n## ", 1)[0]
    diagram, table = layers.split("| module | what it is |", 1)
    missing = {
        name: [
            where
            for where, text, pattern in (
                ("diagram", diagram, rf"(?<![\w]){name}(?![\w])"),
                ("table", table, rf"`{name}`"),
            )
            if not re.search(pattern, text)
        ]
        for name in set(modules()) - {INIT, "__main__"}
    }
    assert {name: where for name, where in missing.items() if where} == {}
