"""The shape of the package: no import cycles at module level, layers that point one
way (storage <- engine <- service), and modules of a readable size.

The imports are read from the source with ``ast`` (nothing is imported), for every
module of the ``ownrank`` packages that ``pyproject.toml`` maps from the source
folders (``sdk/`` is ``ownrank``, ``engine/`` is ``ownrank.engine``, ...).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ownrank"
LINE_LIMIT = 600
# folders whose modules must stay under LINE_LIMIT lines
SIZED_FOLDERS = ("engine", "storage", "service")
# a module in the first may not import (anywhere, even inside a function or only for
# type checking) from the others; the package root re-exports the engine, so only
# the service may lean on it. ``ownrank.errors`` is shared by every layer.
FORBIDDEN = {
    f"{PACKAGE}.storage": (f"{PACKAGE}.engine", f"{PACKAGE}.service", PACKAGE),
    f"{PACKAGE}.engine": (f"{PACKAGE}.service", PACKAGE),
}

# how an import runs: at import time, only when a function is called, or never
# (``if TYPE_CHECKING:``)
MODULE_LEVEL, DEFERRED, TYPE_ONLY = "module-level", "deferred", "type-only"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (an ``ownrank`` module)
    line: int
    when: str  # MODULE_LEVEL, DEFERRED or TYPE_ONLY


# -- reading the package --------------------------------------------------------------


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Package name -> source folder, from ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def discover_modules(packages: Mapping[str, Path]) -> dict[str, Path]:
    """Module name -> file, for the ``.py`` files directly in each package folder
    (subfolders are packages of their own in the mapping)."""
    modules: dict[str, Path] = {}
    for package, folder in packages.items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    node: ast.AST, when: str = MODULE_LEVEL
) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under ``node``, with when it runs. Class bodies run at
    import time like the module's; function bodies (and lambdas) only when called."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, when
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _import_nodes(child, TYPE_ONLY if when == TYPE_ONLY else DEFERRED)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _import_nodes(ast.Module(body=[stmt], type_ignores=[]), TYPE_ONLY)
            for stmt in child.orelse:
                yield from _import_nodes(ast.Module(body=[stmt], type_ignores=[]), when)
        else:
            yield from _import_nodes(child, when)


def _internal(name: str, known: set[str]) -> str | None:
    """The known module ``name`` names (its longest known prefix), if an ``ownrank``
    module; None for third-party and standard-library imports."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def module_imports(
    module: str, source: str, known: set[str], *, is_package: bool = False
) -> list[Import]:
    """The ``ownrank`` modules that ``module`` (whose code is ``source``) imports.

    ``from pkg import name`` imports the module ``pkg.name`` when there is one, else
    takes ``name`` from ``pkg`` itself; relative imports are resolved against
    ``module``'s package (``module`` itself when ``is_package``).
    """
    found: list[Import] = []
    for node, when in _import_nodes(ast.parse(source)):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_internal(alias.name, known) for alias in node.names]
        elif node.module != "__future__":
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else _internal(base, known))
        found.extend(
            Import(module, target, node.lineno, when)
            for target in dict.fromkeys(targets)
            if target is not None and target != module
        )
    return found


def package_imports(modules: Mapping[str, Path]) -> list[Import]:
    known = set(modules)
    return [
        imp
        for name, path in modules.items()
        for imp in module_imports(name, path.read_text(), known, is_package=path.stem == "__init__")
    ]


def import_graph(imports: list[Import], when: tuple[str, ...] = (MODULE_LEVEL,)) -> Graph:
    """Module -> {imported module: line of the (first) import}."""
    graph: Graph = {}
    for imp in imports:
        if imp.when in when:
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp.line)
    return graph


# -- cycles ---------------------------------------------------------------------------

Graph = dict[str, dict[str, int]]


def strongly_connected(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iteratively: no recursion limit)."""
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph.get(start, {})))))
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, {})))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _cycle_through(graph: Mapping[str, Mapping[str, int]], members: list[str]) -> list[str]:
    """One cycle inside a strongly connected component: ``[a, b, ..., a]``, shortest
    from its first member (breadth first)."""
    inside = set(members)
    start = members[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt in inside and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {members}")  # pragma: no cover


def find_cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per group of modules that import each other (a
    strongly connected component of more than one module, or a module importing
    itself)."""
    return [
        _cycle_through(graph, members)
        for members in strongly_connected(graph)
        if len(members) > 1 or members[0] in graph.get(members[0], {})
    ]


def describe_cycle(graph: Mapping[str, Mapping[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} imports {b} (line {graph[a][b]})" for a, b in pairwise(cycle)]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


# -- the package's checks -------------------------------------------------------------

MODULES = discover_modules(package_dirs())


def test_the_package_is_read_whole() -> None:
    """Guards the checks below against passing on nothing."""
    folders = {path.parent.name for path in MODULES.values()}
    assert {"engine", "storage", "service", "sdk"} <= folders
    assert len(MODULES) > 40
    imports = package_imports(MODULES)
    graph = import_graph(imports)
    assert "ownrank.storage.lmdb_env" in graph["ownrank.storage.catalog_store"]
    assert "ownrank.errors" in graph["ownrank.storage.catalog_store"]
    assert {i.when for i in imports} == {MODULE_LEVEL, DEFERRED, TYPE_ONLY}


def test_no_import_cycles_at_module_level() -> None:
    graph = import_graph(package_imports(MODULES))
    cycles = find_cycles(graph)
    assert not cycles, "modules that import each other at module level:\n" + "\n".join(
        describe_cycle(graph, cycle) for cycle in cycles
    )


def test_layers_point_one_way() -> None:
    """storage never imports engine or service; engine never imports service."""
    wrong = [
        f"{imp.source} imports {imp.target} (line {imp.line}, {imp.when})"
        for imp in package_imports(MODULES)
        for layer, forbidden in FORBIDDEN.items()
        if imp.source == layer or imp.source.startswith(layer + ".")
        for banned in forbidden
        if imp.target == banned or (banned != PACKAGE and imp.target.startswith(banned + "."))
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _oversized() -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in sorted(MODULES.values())
        if path.parent.name in SIZED_FOLDERS
        and (lines := len(path.read_text().splitlines())) > LINE_LIMIT
    ]


def test_modules_stay_readable() -> None:
    oversized = _oversized()
    assert not oversized, f"modules over {LINE_LIMIT} lines:\n" + "\n".join(oversized)


# -- the checks catch what they are meant to --------------------------------------------


def test_find_cycles_reports_each_cycle_once() -> None:
    graph: Graph = {
        "a": {"b": 1},
        "b": {"c": 2, "d": 3},
        "c": {"a": 4},  # a -> b -> c -> a
        "d": {"e": 5},
        "e": {},
        "x": {"x": 6},  # a module importing itself
        "p": {"q": 7},
        "q": {"p": 8},  # p <-> q
    }
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["p", "q", "p"], ["x", "x"]]
    text = describe_cycle(graph, ["a", "b", "c", "a"])
    assert text.startswith("a -> b -> c -> a")
    assert "c imports a (line 4)" in text


def test_find_cycles_finds_none_in_a_dag() -> None:
    graph: Graph = {"a": {"b": 1, "c": 1}, "b": {"c": 1, "d": 1}, "c": {"d": 1}, "d": {}}
    assert find_cycles(graph) == []
    assert sorted(map(tuple, strongly_connected(graph))) == [("a",), ("b",), ("c",), ("d",)]


def test_find_cycles_picks_a_real_cycle_in_a_tangle() -> None:
    # one component, several cycles: the one reported must follow real edges
    graph: Graph = {"a": {"b": 1}, "b": {"c": 1, "a": 1}, "c": {"d": 1}, "d": {"b": 1}}
    (cycle,) = find_cycles(graph)
    assert cycle == ["a", "b", "a"]
    assert all(b in graph[a] for a, b in pairwise(cycle))


def test_a_long_chain_needs_no_recursion() -> None:
    n = 5_000
    graph: Graph = {f"m{i}": {f"m{i + 1}": 1} for i in range(n)}
    assert find_cycles(graph) == []
    graph[f"m{n}"] = {"m0": 1}
    (cycle,) = find_cycles(graph)
    assert len(cycle) == n + 2 and cycle[0] == cycle[-1]


def test_only_imports_that_run_at_import_time_make_the_graph() -> None:
    source = """
from __future__ import annotations
import json
from typing import TYPE_CHECKING
from . import sibling
from .. import errors
from ..storage import backup, nothing_of_that_name
import ownrank.engine.items as items

if TYPE_CHECKING:
    from .typed_only import T
else:
    from .runtime_else import R

try:
    from .in_try import X
except ImportError:
    pass

class C:
    from .in_class import Y

def f():
    from .in_function import Z

async def g():
    import ownrank.service.cli
"""
    known = {
        "ownrank",
        "ownrank.errors",
        "ownrank.storage",
        "ownrank.storage.backup",
        "ownrank.engine.items",
        "ownrank.engine.sibling",
        "ownrank.engine.typed_only",
        "ownrank.engine.runtime_else",
        "ownrank.engine.in_try",
        "ownrank.engine.in_class",
        "ownrank.engine.in_function",
        "ownrank.service.cli",
    }
    found = {(i.target, i.when) for i in module_imports("ownrank.engine.mod", source, known)}
    assert found == {
        ("ownrank.engine.sibling", MODULE_LEVEL),
        ("ownrank.errors", MODULE_LEVEL),
        ("ownrank.storage.backup", MODULE_LEVEL),
        ("ownrank.storage", MODULE_LEVEL),  # nothing_of_that_name: from the package
        ("ownrank.engine.items", MODULE_LEVEL),
        ("ownrank.engine.typed_only", TYPE_ONLY),
        ("ownrank.engine.runtime_else", MODULE_LEVEL),
        ("ownrank.engine.in_try", MODULE_LEVEL),
        ("ownrank.engine.in_class", MODULE_LEVEL),
        ("ownrank.engine.in_function", DEFERRED),
        ("ownrank.service.cli", DEFERRED),
    }
    # in a package's __init__, "." is the package itself
    (imp,) = module_imports("ownrank.engine", "from .sibling import x", known, is_package=True)
    assert imp.target == "ownrank.engine.sibling"


def test_a_cycle_written_as_files_is_caught(tmp_path: Path) -> None:
    """The whole pipeline, on a package of files: a cycle through ``from . import``,
    one through ``from .x import name``; a deferred import and a type-only one
    close no cycle."""
    (tmp_path / "pkg").mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "from .c import thing\n",
        "c.py": "import pkg.a\nthing = 1\n",
        "d.py": "from .e import y\n",
        "e.py": "def f():\n    from .d import z\n",
        "f.py": "from typing import TYPE_CHECKING\nfrom .g import y\n",
        "g.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .f import t\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).write_text(text)
    modules = discover_modules({"pkg": tmp_path / "pkg"})
    graph = import_graph(package_imports(modules))
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    everything = import_graph(package_imports(modules), (MODULE_LEVEL, DEFERRED, TYPE_ONLY))
    assert len(find_cycles(everything)) == 3


def test_the_layer_check_catches_an_upward_import() -> None:
    known = {"ownrank.storage.x", "ownrank.engine.items", "ownrank.errors", "ownrank"}
    for source in (
        "def f():\n    from ..engine.items import Item\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..engine import items\n",
        "from .. import Engine\n",
    ):
        imports = module_imports("ownrank.storage.x", source, known)
        assert [i.target for i in imports] in (["ownrank.engine.items"], ["ownrank"]), source
    assert [
        i.target for i in module_imports("ownrank.storage.x", "from ..errors import E", known)
    ] == ["ownrank.errors"]


# -- storage keeps to plain data ----------------------------------------------------------


def test_storage_decodes_plain_records_until_the_catalog_binds_its_reader(
    tmp_path: Path,
) -> None:
    """The store knows no ``Item``: unbound, it returns its own plain records (all
    properties as stored); the engine's catalog binds the reader that builds ``Item``s
    by today's rules (the same objects as before the store lost its engine import)."""
    from ownrank.engine.catalog import read_item
    from ownrank.engine.items import MAX_PROPERTY_DEPTH, Item
    from ownrank.storage.catalog_store import CatalogStore, ItemRecord, StoredItem
    from ownrank.storage.lmdb_env import LmdbEnvironment

    env = LmdbEnvironment(tmp_path / "lmdb", map_size=2**24, max_readers=8, sync=False)
    try:
        store = CatalogStore(env)
        item = Item(id="a-1", title="t", tags=("x",), properties={"k": 1})
        deep: object = 1
        for _ in range(MAX_PROPERTY_DEPTH + 1):
            deep = [deep]
        legacy = Item.model_construct(**{**item.__dict__, "properties": {"k": 1, "deep": deep}})
        with env.write() as txn:
            store.put_item(txn, StoredItem(legacy, item.content_hash(), 7, 1.0, 2.0))
        with env.read() as txn:
            plain = store.get_item(txn, "a-1")
            assert plain is not None and type(plain.item) is ItemRecord
            assert plain.item.properties == {"k": 1, "deep": deep}
            assert plain.dropped_properties == ()
            store.bind_item_reader(read_item)
            (bound,) = store.iter_items(txn)
            assert list(store.nonconforming_items(txn)) == ["a-1"]
        assert type(bound.item) is Item and bound.item == item
        assert (bound.row, bound.created_at, bound.updated_at) == (7, 1.0, 2.0)
        assert bound.dropped_properties == ("deep",)
    finally:
        env.close()
