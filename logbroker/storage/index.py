"""Sparse offset and time indexes of a segment: fixed-width numpy arrays over
shared maps of the files (:mod:`logbroker.storage.mapping`: no descriptor
stays open), made on first use and dropped when the process's budget of maps
needs room (:mod:`logbroker.storage.mapbudget`).

Byte layouts (big-endian, like Kafka; no header, no checksum)::

    .index       8-byte entries:  relative offset u32 | file position u32
    .timeindex  12-byte entries:  timestamp i64       | relative offset u32

``relative offset = offset - segment base offset``. An offset-index entry maps
the *last* offset of a batch to the *start* position of that batch in the
.log; entries are strictly increasing in both fields. A time-index entry says
"the largest timestamp up to this offset is this timestamp"; entries are
strictly increasing in timestamp and non-decreasing in offset.

The active segment's index files are reserved with posix_fallocate (see
:func:`logbroker.storage.files.allocate`) ahead of the entries, so a write
through the memmap never needs a new disk block and cannot die of SIGBUS on a
full disk. The reservation starts at 1024 entries and doubles (remapping) up
to the capacity the config allows. When the segment rolls, the file is
trimmed to its entries. The number of entries is
not stored: a trimmed file holds exactly its entries; a reserved file
found after a crash belongs to a segment that recovery rebuilds.

Lookups are binary searches with ``struct.unpack_from`` over the mapping
(about 2 µs for 260 000 entries; numpy's ``searchsorted`` would first copy a
big-endian array to native order).

Thread-safety: none; the owning segment serialises access. Flushing is done
by fsync on the file path, which also writes back pages dirtied via the map.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np

from logbroker.errors import StorageError
from logbroker.records import BASE_OFFSET_AT, HEADER_SIZE, LAST_OFFSET_DELTA_AT, MAGIC, MAGIC_AT
from logbroker.storage.config import DEFAULT_FILE_MODE
from logbroker.storage.files import allocate
from logbroker.storage.mapbudget import MAPS
from logbroker.storage.mapping import map_path

__all__ = ["CorruptIndexError", "OffsetIndex", "TimeIndex"]

logger = logging.getLogger("logbroker.storage")

#: Entries reserved when a segment becomes active; the reservation then doubles.
INITIAL_ENTRIES = 1024


class CorruptIndexError(Exception):
    """An index file fails its sanity check; the caller rebuilds it from the log."""


class _MappedIndex:
    """Common file, memmap and binary-search machinery; see the module docstring."""

    ENTRY_SIZE: int
    DTYPE: np.dtype
    ENTRY_STRUCT: struct.Struct

    def __init__(self, path: Path, base_offset: int, mode: int = DEFAULT_FILE_MODE) -> None:
        self.path = path
        self.base_offset = base_offset
        self.existed = path.exists()
        if not self.existed:
            path.touch(mode=mode)  # permission bits of a new file (less the umask)
        size = path.stat().st_size
        self.misaligned = size % self.ENTRY_SIZE != 0
        self._entries = size // self.ENTRY_SIZE
        self._capacity = self._entries  # most entries this index may hold
        self._allocated = self._entries  # entries the file (and map) has room for now
        self._writable = False
        self._mm: np.ndarray | None = None
        self._u8: np.ndarray | None = None
        self._buf: memoryview | None = None  # the same bytes, for struct
        self._map_entries = self._entries  # entries the map covers once made

    # -- mapping -----------------------------------------------------------------
    def _map(self, n: int) -> None:
        """Map the first ``n`` entries from the next access on (0: unmap now).
        Maps are made lazily and live within the process's map budget
        (:data:`~logbroker.storage.mapbudget.MAPS`): an idle index holds none."""
        self._drop()
        self._map_entries = n

    def _drop(self) -> None:
        MAPS.forget(self)
        self.release_map()

    def release_map(self) -> None:
        """Drop the map (the map budget calls this; the next access maps again)."""
        self._mm = self._u8 = None
        self._buf = None

    def _ensure(self) -> np.ndarray:
        """The mapped entries, mapping them if the map was dropped or not made yet."""
        mm = self._mm
        if mm is not None:
            MAPS.touch(self)
            return mm
        n = self._map_entries
        if n <= 0:
            return np.zeros(0, dtype=self.DTYPE)
        try:
            view = map_path(self.path, n * self.ENTRY_SIZE, writable=True)  # holds no descriptor
        except OSError as exc:
            raise StorageError(f"cannot map {self.path}: {exc.strerror or exc}") from exc
        if view is None:
            mm = np.memmap(self.path, dtype=self.DTYPE, mode="r+", shape=(n,))
        else:
            mm = np.frombuffer(view, dtype=self.DTYPE, count=n)
        u8 = mm.view(np.uint8)
        self._mm, self._u8 = mm, u8
        self._buf = memoryview(u8)  # type: ignore[arg-type]  # a 1-D uint8 array exports the buffer protocol
        MAPS.add(self)
        return mm

    def pin(self) -> None:
        """Map now and keep the map outside the budget, for good: the file is
        about to be unlinked, so it could not be mapped again."""
        if self._map_entries:
            self._ensure()
        MAPS.forget(self)

    def make_writable(self, capacity_bytes: int) -> None:
        """Allow up to ``capacity_bytes // ENTRY_SIZE`` entries (at least the current
        ones) and map the file writable. Disk is reserved ahead of the entries
        in doubling steps (first :data:`INITIAL_ENTRIES` beyond the current
        ones). Raises StorageError if the disk refuses the first step."""
        self._capacity = max(capacity_bytes // self.ENTRY_SIZE, self._entries)
        self._reserve(min(self._capacity, self._entries + INITIAL_ENTRIES))
        self._writable = True

    def _reserve(self, n: int) -> None:
        """posix_fallocate the file to ``n`` entries and map them."""
        size = n * self.ENTRY_SIZE
        if size > self.path.stat().st_size:
            fd = os.open(self.path, os.O_RDWR)
            try:
                allocate(fd, size, self.path)
            finally:
                os.close(fd)
        self._map(n)
        self._allocated = n

    def _room(self, limit: int) -> bool:
        """True if one more entry fits under ``limit``, growing the reservation so
        that a spare entry stays reserved; a refused growth only makes the
        index sparser (lookups then scan further), never an error."""
        if self._entries >= limit:
            return False
        if self._entries + 1 >= self._allocated and self._allocated < self._capacity:
            try:
                self._reserve(min(self._capacity, max(2 * self._allocated, self._entries + INITIAL_ENTRIES)))
            except StorageError as exc:
                logger.warning("%s; the index stays sparser", exc)
        return self._entries < self._allocated

    def trim(self) -> None:
        """Cut the file to its entries and map it read-only-in-practice (segment rolled)."""
        self._map(0)
        os.truncate(self.path, self._entries * self.ENTRY_SIZE)
        self.misaligned = False
        self._map(self._entries)
        self._capacity = self._allocated = self._entries
        self._writable = False

    def close(self) -> None:
        """Unmap. A writable index is trimmed first, so a clean reopen finds its entries."""
        if self._writable:
            self.trim()
        self._map(0)

    def delete(self) -> None:
        self._map(0)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # -- state ---------------------------------------------------------------------
    @property
    def entries(self) -> int:
        return self._entries

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def is_full(self) -> bool:
        return self._entries >= self._capacity

    @property
    def size_bytes(self) -> int:
        return self._entries * self.ENTRY_SIZE

    def entry(self, n: int) -> tuple[int, int]:
        """The raw ``n``-th entry as stored (relative fields)."""
        return self.ENTRY_STRUCT.unpack_from(self._bytes(), n * self.ENTRY_SIZE)

    def _bytes(self) -> memoryview:
        """The mapped entries as bytes; only called with entries present (so mapped)."""
        buf = self._buf
        if buf is None:
            # A view of the array just mapped: another thread may release the map meanwhile.
            buf = memoryview(self._ensure().view(np.uint8))  # type: ignore[arg-type]  # as in _ensure
        else:
            MAPS.touch(self)
        return buf

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        if self._entries:
            self._ensure()[: self._entries] = 0
        self._entries = 0

    def _truncate_entries(self, n: int) -> None:
        if n < self._entries:
            if self._writable:
                self._ensure()[n : self._entries] = 0
            self._entries = n

    def _bisect(self, field_offset: int, fmt: struct.Struct, target: int) -> int:
        """Index of the last entry whose field is <= target, or -1."""
        if not self._entries:
            return -1
        buf, size, unpack = self._bytes(), self.ENTRY_SIZE, fmt.unpack_from
        lo, hi = 0, self._entries
        while lo < hi:
            mid = (lo + hi) >> 1
            if unpack(buf, mid * size + field_offset)[0] <= target:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1

    def _arrays(self) -> np.ndarray:
        return self._ensure()[: self._entries]

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.path.name} entries={self._entries}/"
            f"{self._capacity} {'writable' if self._writable else 'sealed'}>"
        )


_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


class OffsetIndex(_MappedIndex):
    """``.index``: (relative offset u32, position u32) per entry, big-endian."""

    ENTRY_SIZE = 8
    DTYPE = np.dtype([("rel", ">u4"), ("pos", ">u4")])
    ENTRY_STRUCT = struct.Struct(">II")

    def append(self, offset: int, position: int) -> None:
        """Add (offset, position); ignored when the index is full (lookups then scan further)."""
        if self._room(self._capacity):
            self.ENTRY_STRUCT.pack_into(self._bytes(), self._entries * 8, offset - self.base_offset, position)
            self._entries += 1

    def lookup(self, offset: int) -> tuple[int, int]:
        """``(offset, position)`` of the last entry with offset <= ``offset``;
        ``(base_offset, 0)`` when there is none."""
        i = self._bisect(0, _U32, offset - self.base_offset)
        if i < 0:
            return self.base_offset, 0
        rel, pos = self.ENTRY_STRUCT.unpack_from(self._bytes(), i * 8)
        return self.base_offset + rel, pos

    def lookup_position(self, position: int) -> int:
        """Largest indexed batch start <= ``position`` (0 when there is none)."""
        i = self._bisect(4, _U32, position)
        return 0 if i < 0 else _U32.unpack_from(self._bytes(), i * 8 + 4)[0]

    def last_entry(self) -> tuple[int, int]:
        """``(offset, position)`` of the last entry, or ``(base_offset, 0)``."""
        if not self._entries:
            return self.base_offset, 0
        rel, pos = self.entry(self._entries - 1)
        return self.base_offset + rel, pos

    def truncate_to(self, offset: int) -> None:
        """Remove entries whose offset is >= ``offset``."""
        self._truncate_entries(self._bisect(0, _U32, offset - self.base_offset - 1) + 1)

    def truncate_to_position(self, position: int) -> None:
        """Remove entries whose position is >= ``position``."""
        self._truncate_entries(self._bisect(4, _U32, position - 1) + 1)

    def sanity_check(self, log_size: int) -> None:
        """Raise CorruptIndexError unless entries are strictly increasing and
        positions lie inside a log of ``log_size`` bytes (and are never 0)."""
        if self.misaligned:
            raise CorruptIndexError(f"{self.path.name}: size is not a multiple of 8")
        if not self._entries:
            return
        arr = self._arrays()
        rel = arr["rel"].astype(np.int64)
        pos = arr["pos"].astype(np.int64)
        if pos[0] <= 0 or pos[-1] >= log_size:
            raise CorruptIndexError(f"{self.path.name}: position outside the log ({log_size} bytes)")
        if (np.diff(rel) <= 0).any() or (np.diff(pos) <= 0).any():
            raise CorruptIndexError(f"{self.path.name}: entries are not strictly increasing")

    def verify_against(self, log_view: memoryview, log_size: int) -> None:
        """Raise CorruptIndexError unless every entry points at a batch header
        (magic 2) whose last offset is the entry's offset. Vectorised: a few ms
        for a full 1 GiB segment's index."""
        if not self._entries:
            return
        arr = self._arrays()
        pos = arr["pos"].astype(np.int64)
        if pos[-1] + HEADER_SIZE > log_size:
            raise CorruptIndexError(f"{self.path.name}: entry points past the log's last header")
        data = np.frombuffer(log_view, dtype=np.uint8, count=log_size)
        if (data[pos + MAGIC_AT] != MAGIC).any():
            raise CorruptIndexError(f"{self.path.name}: an entry does not point at a batch header")
        base = data[pos[:, None] + np.arange(BASE_OFFSET_AT, BASE_OFFSET_AT + 8)].copy().view(">i8").ravel()
        delta = data[pos[:, None] + np.arange(LAST_OFFSET_DELTA_AT, LAST_OFFSET_DELTA_AT + 4)].copy().view(">i4").ravel()
        if ((base + delta) != (arr["rel"].astype(np.int64) + self.base_offset)).any():
            raise CorruptIndexError(f"{self.path.name}: an entry's offset does not match its batch")


class TimeIndex(_MappedIndex):
    """``.timeindex``: (timestamp i64, relative offset u32) per entry, big-endian."""

    ENTRY_SIZE = 12
    DTYPE = np.dtype([("ts", ">i8"), ("rel", ">u4")])
    ENTRY_STRUCT = struct.Struct(">qI")

    def last_entry(self) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the last entry, or None."""
        if not self._entries:
            return None
        ts, rel = self.entry(self._entries - 1)
        return ts, self.base_offset + rel

    def maybe_append(self, timestamp: int, offset: int, *, force: bool = False) -> None:
        """Add (timestamp, offset) if the timestamp grows past the last entry's.

        ``force`` may use the one spare entry kept for when a segment seals
        (:attr:`is_full` counts without it). Batches without timestamps (-1,
        or any negative value a producer sent) get no entry.
        """
        if timestamp < 0 or offset < self.base_offset:
            return
        if self._entries:
            last_ts, last_rel = self.entry(self._entries - 1)
            if timestamp <= last_ts or offset - self.base_offset < last_rel:
                return
        if self._room(self._capacity - (0 if force else 1)):
            self.ENTRY_STRUCT.pack_into(self._bytes(), self._entries * 12, timestamp, offset - self.base_offset)
            self._entries += 1

    @property
    def is_full(self) -> bool:
        return self._entries >= self._capacity - 1

    def lookup(self, timestamp: int) -> int:
        """Offset of the last entry with timestamp <= ``timestamp``; the base offset if none."""
        i = self._bisect(0, _I64, timestamp)
        if i < 0:
            return self.base_offset
        return self.base_offset + self.entry(i)[1]

    def truncate_to(self, offset: int) -> None:
        """Remove entries whose offset is >= ``offset``."""
        n = self._entries
        while n and self.base_offset + self.entry(n - 1)[1] >= offset:
            n -= 1
        self._truncate_entries(n)

    def sanity_check(self, max_offset: int) -> None:
        """Raise CorruptIndexError unless timestamps strictly increase, offsets do
        not decrease, and no offset exceeds ``max_offset``."""
        if self.misaligned:
            raise CorruptIndexError(f"{self.path.name}: size is not a multiple of 12")
        if not self._entries:
            return
        arr = self._arrays()
        ts = arr["ts"].astype(np.int64)
        rel = arr["rel"].astype(np.int64)
        if (np.diff(ts) <= 0).any() or (np.diff(rel) < 0).any():
            raise CorruptIndexError(f"{self.path.name}: entries are not increasing")
        if self.base_offset + rel[-1] > max_offset:
            raise CorruptIndexError(f"{self.path.name}: offset beyond the segment")
