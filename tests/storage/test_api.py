import ast
from pathlib import Path

import logbroker.storage as storage


def test_every_public_name_is_exported_once():
    init = Path(storage.__file__)
    tree = ast.parse(init.read_text())
    imported = [a.asname for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names]
    assert len(imported) == len(set(imported))
    assert sorted(imported) == sorted(storage.__all__)
    for name in storage.__all__:
        assert getattr(storage, name) is not None


def test_storage_imports_only_records_and_errors():
    root = Path(storage.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("logbroker."):
                assert node.module.split(".")[1] in {"records", "errors", "storage"}, (path, node.module)
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("trio") for a in node.names)
