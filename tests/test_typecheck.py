"""The type checker runs with the suite: mypy over ``logbroker/`` with the settings of
pyproject.toml (untyped definitions disallowed), and every ``type: ignore`` that
remains names its error code and says why."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<code>\[[a-z0-9\-, ]+\])?(?P<rest>.*)$")


def test_mypy_finds_no_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def _unexplained_ignores(source: str) -> list[int]:
    lines = []
    for number, line in enumerate(source.splitlines(), 1):
        match = _IGNORE.search(line)
        if match and (not match["code"] or not match["rest"].strip().lstrip("#").strip()):
            lines.append(number)
    return lines


def test_ignore_detector():
    assert _unexplained_ignores("x = f()  # type: ignore[arg-type]\n") == [1]
    assert _unexplained_ignores("x = f()  # type: ignore\n") == [1]
    assert _unexplained_ignores("x = f()  # type: ignore[arg-type]  # kio's stubs say int\n") == []


def test_every_type_ignore_says_why():
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "logbroker").rglob("*.py"))
        if (lines := _unexplained_ignores(path.read_text()))
    }
    assert found == {}
