"""File naming and crash-safe file primitives (Kafka's LogFileUtils).

Segment files are named by their base offset zero-padded to 20 digits:
``00000000000000000000.log`` / ``.index`` / ``.timeindex``. Partition
directories are ``<topic>-<partition>``; a directory being deleted is renamed
to ``<topic>-<partition>.<32 hex digits>-delete`` first (Kafka's
``logDeleteDirName``), with the topic shortened so that the name fits the
file system's 255-byte limit. :func:`write_atomically` replaces a small file
so that a crash leaves either the old or the new content.
"""

from __future__ import annotations

import errno
import fcntl
import contextlib
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from logbroker.errors import LogDirLockedError, StorageError
from logbroker.storage.config import DEFAULT_FILE_MODE

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)
TEMP_SUFFIX = ".tmp"
DELETE_DIR_SUFFIX = "-delete"
MAX_NAME_BYTES = 255  # NAME_MAX of the usual file systems (ext4, xfs, btrfs, tmpfs)
_DELETE_DIR = re.compile(r"(?P<prefix>.*)-(?P<partition>\d+)\.(?P<unique>[0-9a-f]{32})-delete")


def segment_name(base_offset: int) -> str:
    """``base_offset`` zero-padded to 20 digits (the stem of every segment file)."""
    return f"{base_offset:020d}"


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    return directory / (segment_name(base_offset) + suffix)


def parse_segment_name(name: str) -> tuple[int, str] | None:
    """``(base_offset, suffix)`` of a segment file name, or None if it is not one."""
    stem, dot, ext = name.partition(".")
    if not dot or len(stem) != 20 or not stem.isdigit():
        return None
    suffix = "." + ext
    if suffix not in SEGMENT_SUFFIXES:
        return None
    return int(stem), suffix


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def delete_dir_name(topic: str, partition: int, unique: uuid.UUID | None = None) -> str:
    """``<topic>-<partition>.<unique hex>-delete``, the topic cut short so the name
    fits :data:`MAX_NAME_BYTES` (topic names are ASCII, so characters are bytes).
    ``unique`` defaults to a random UUID; the log manager passes the topic id so
    that a restart can tell which topic's deletion was interrupted."""
    suffix = f"-{partition}.{(unique or uuid.uuid4()).hex}{DELETE_DIR_SUFFIX}"
    return topic[: MAX_NAME_BYTES - len(suffix)] + suffix


def parse_delete_dir_name(name: str) -> tuple[int, uuid.UUID] | None:
    """``(partition, unique)`` of a name made by :func:`delete_dir_name`, or None.
    The topic is not returned: it may have been cut short."""
    m = _DELETE_DIR.fullmatch(name)
    if m is None:
        return None
    return int(m["partition"]), uuid.UUID(hex=m["unique"])


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` of a partition directory name, or None."""
    topic, dash, number = name.rpartition("-")
    if not dash or not topic or not number.isdigit():
        return None
    return topic, int(number)


def lock_data_dir(path: Path, mode: int, advice: str) -> int:
    """Take the exclusive lock file ``path`` of a data directory and write our pid
    in it; the open descriptor holds the lock. LogDirLockedError (naming the
    holder's pid, then ``advice``) if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise LogDirLockedError(
            f"data directory {path.parent} is in use by another process (pid {holder}); {advice}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that entries created, renamed or removed in it persist."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> bool:
    """fsync a file by path; False if it no longer exists (deleted meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def write_atomically(
    path: Path,
    data: bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview],
    mode: int = DEFAULT_FILE_MODE,
    *,
    durable: bool = True,
    temp_suffix: str = TEMP_SUFFIX,
) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or
    the new content: write a temp file beside it (``path`` + ``temp_suffix``),
    fsync it, rename it over ``path``, fsync the directory. The one way every
    small file of storage and the broker is replaced.

    ``data`` is one bytes-like object or an iterable of them (written in
    order, e.g. the kept ranges of a segment). A new file gets the permission
    bits ``mode`` (less the umask). ``durable=False`` skips both fsyncs (a
    file whose loss costs only a rebuild); the rename is still atomic.

    Raises StorageError if the disk refuses; the old file is then untouched
    and the temp file removed.
    """
    tmp = path.with_name(path.name + temp_suffix)
    chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover temp file would keep its own permission bits
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def allocate(fd: int, size: int, path: Path) -> None:
    """Reserve ``size`` bytes of disk for ``fd`` so page writes cannot fail later.

    Uses posix_fallocate, or writes zeros where the filesystem lacks it.
    Raises StorageError (ENOSPC, EFBIG...) with nothing reserved beyond the old size.
    """
    try:
        old = os.fstat(fd).st_size
        if size <= old:
            return
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _zero_fill(fd, old, size)
    except OSError as exc:
        try:
            os.ftruncate(fd, old)
        except OSError:
            pass
        raise StorageError(f"cannot allocate {size} bytes for {path}: {exc.strerror or exc}") from exc


def _zero_fill(fd: int, start: int, end: int) -> None:
    chunk = bytes(min(1 << 20, end - start))
    pos = start
    while pos < end:
        pos += os.pwrite(fd, chunk[: end - pos], pos)
