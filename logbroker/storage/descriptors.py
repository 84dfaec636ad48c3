"""The write descriptors of active segments, within a budget of open files.

Sealed segments and indexes are read through maps that keep no descriptor
(:mod:`logbroker.storage.mapping`); only an active segment writes through
one. Those descriptors live here, opened on first use and closed least
recently used first once more than ``limit`` are open, so an idle partition
holds no open file and the broker's descriptors stay within a budget
whatever the number of partitions. Reopening costs one ``open`` (a few
microseconds) on the next append to an idle partition.

A descriptor is lent only inside :meth:`WriteDescriptors.use`, under a lock,
so no thread can close it (and the kernel hand its number to another file)
while another thread writes through it.

One instance serves the process (:data:`WRITE_DESCRIPTORS`): descriptors
are a process-wide resource (``RLIMIT_NOFILE``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from logbroker.errors import StorageError

__all__ = ["DEFAULT_MAX_OPEN_FILES", "WRITE_DESCRIPTORS", "WriteDescriptors"]

DEFAULT_MAX_OPEN_FILES = 1024


class WriteDescriptors:
    """At most ``limit`` open ``O_RDWR`` descriptors, keyed by their owner (a segment)."""

    def __init__(self, limit: int = DEFAULT_MAX_OPEN_FILES) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._open: OrderedDict[object, int] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # descriptors opened since start (a reopen after eviction counts)

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """Change the budget; descriptors over it are closed now."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            self._limit = limit
            self._evict()

    def open_count(self) -> int:
        return len(self._open)

    @contextmanager
    def use(self, owner: object, path: Path) -> Iterator[int]:
        """The write descriptor of ``path`` for ``owner``, opening it if needed;
        valid only inside the ``with``. Raises StorageError if it cannot be opened."""
        with self._lock:
            fd = self._open.get(owner)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDWR)
                except OSError as exc:
                    raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
                self._open[owner] = fd
                self.opened += 1
                self._evict(keep=owner)
            else:
                self._open.move_to_end(owner)
            yield fd

    def release(self, owner: object) -> None:
        """Close ``owner``'s descriptor if open (segment sealed, closed or deleted)."""
        with self._lock:
            fd = self._open.pop(owner, None)
            if fd is not None:
                os.close(fd)

    def _evict(self, keep: object = None) -> None:
        while len(self._open) > self._limit:
            owner, fd = next(iter(self._open.items()))
            if owner is keep:
                break
            del self._open[owner]
            os.close(fd)


WRITE_DESCRIPTORS = WriteDescriptors()
