"""storage.files.write_atomically: the one way small files are replaced."""

from __future__ import annotations

import os

import pytest

from logbroker.errors import StorageError
from logbroker.storage import write_atomically
from logbroker.storage.files import TEMP_SUFFIX


def test_replaces_content_from_one_buffer_or_many(tmp_path):
    path = tmp_path / "f"
    write_atomically(path, b"old")
    write_atomically(path, [b"ne", memoryview(b"w-"), bytearray(b"content")])
    assert path.read_bytes() == b"new-content"
    assert not (tmp_path / ("f" + TEMP_SUFFIX)).exists()


def test_mode_and_temp_suffix(tmp_path):
    path = tmp_path / "g"
    write_atomically(path, b"x", 0o640, temp_suffix=".other")
    assert path.read_bytes() == b"x"
    assert (os.stat(path).st_mode & 0o777) == 0o640 & ~_umask()


def test_not_durable_still_replaces(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    write_atomically(tmp_path / "h", b"data", durable=False)
    assert (tmp_path / "h").read_bytes() == b"data"
    assert calls == []


def test_disk_refusal_is_a_storage_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "k"
    write_atomically(path, b"old")

    def refuse(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(StorageError, match="No space left"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert not (tmp_path / ("k" + TEMP_SUFFIX)).exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
