"""The structure docs/architecture.md promises, checked from the source.

* One-way arrows between layers (records -> storage -> broker -> server/client -> cli).
* No import cycle between modules: every import counts, relative, function-level and
  ``if TYPE_CHECKING:`` ones included, since a cycle hidden behind them is still two
  modules that cannot be understood (or tested) apart.
* No module reaches into another object's ``_private`` attributes: state has one owner
  and others use its public methods.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "logbroker"

ALLOWED = {
    "errors": set(),
    "records": {"errors"},
    "protocol": {"errors"},
    "storage": {"records", "errors"},
    "registry": {"errors"},  # the schema registry's pure core
    "broker": {"storage", "records", "errors", "protocol", "registry"},
    "server": {"broker", "protocol", "records", "errors", "storage", "registry"},
    "client": {"protocol", "records", "errors", "registry"},  # serde builds Protobuf descriptors with it
    "cli": None,  # the top: anything
    "_embedded": None,
    "pytest_plugin": None,
}
TRIO_ALLOWED = {"server", "client", "cli", "_embedded", "pytest_plugin"}

# Named-tuple API methods are public despite the underscore.
_NAMEDTUPLE_API = {"_replace", "_make", "_asdict", "_fields", "_field_defaults"}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _layer(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def _imports(module: str) -> list[str]:
    """Every module ``module`` imports, absolute names, at any depth of the file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append(sub if sub in MODULES else target)
    return found


def _internal_edges(module: str) -> set[str]:
    edges = {name for name in _imports(module) if name in MODULES}
    edges.discard(module)
    return edges


FILES = [name for name, path in MODULES.items() if _layer(path) in ALLOWED]


@pytest.mark.parametrize("module", FILES)
def test_imports_follow_the_layers(module):
    path = MODULES[module]
    layer = _layer(path)
    allowed = ALLOWED[layer]
    for imported in _imports(module):
        if imported == "trio" or imported.startswith("trio."):
            assert layer in TRIO_ALLOWED, f"{path}: only server, client and cli may import trio"
        if not imported.startswith("logbroker."):
            continue
        target = imported.split(".")[1]
        if allowed is None or target == layer:
            continue
        assert target in allowed, f"{path} ({layer}) imports {imported}"
        if layer == "broker" and target == "protocol":
            assert "handlers" in path.parts, f"{path}: only broker/handlers may import the protocol"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = {module: _internal_edges(module) for module in MODULES}
    assert _cycles(graph) == []


def _private_reach_ins(source: str, label: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in _NAMEDTUPLE_API:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"{label}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_reach_in_detector():
    source = "class A:\n    def f(self, other, row):\n        return self._x + other._y + row._replace(a=1)\n"
    assert _private_reach_ins(source, "sample") == ["sample:3: other._y"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_reach_ins(module):
    path = MODULES[module]
    assert _private_reach_ins(path.read_text(), str(path.relative_to(ROOT))) == []
