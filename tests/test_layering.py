"""The one-way dependency arrows of docs/architecture.md, checked from imports."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "logbroker"

ALLOWED = {
    "errors": set(),
    "records": {"errors"},
    "protocol": {"errors"},
    "storage": {"records", "errors"},
    "broker": {"storage", "records", "errors", "protocol"},
    "server": {"broker", "protocol", "records", "errors", "storage"},
    "client": {"protocol", "records", "errors"},
    "cli": None,  # the top: anything
    "_embedded": None,
    "pytest_plugin": None,
}
TRIO_ALLOWED = {"server", "client", "cli", "_embedded", "pytest_plugin"}


def _layer(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


FILES = sorted(p for p in ROOT.rglob("*.py") if _layer(p) in ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    layer = _layer(path)
    allowed = ALLOWED[layer]
    for module in _imports(path):
        if module == "trio" or module.startswith("trio."):
            assert layer in TRIO_ALLOWED, f"{path}: only server, client and cli may import trio"
        if not module.startswith("logbroker."):
            continue
        target = module.split(".")[1]
        if allowed is None or target == layer:
            continue
        assert target in allowed, f"{path} ({layer}) imports {module}"
        if layer == "broker" and target == "protocol":
            assert "handlers" in path.parts, f"{path}: only broker/handlers may import the protocol"
