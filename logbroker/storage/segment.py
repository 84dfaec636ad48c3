"""One log segment: a ``.log`` file of v2 record batches plus its two indexes.

Layout: ``<base offset, 20 digits>.log`` holds complete record batches back to
back (the 61-byte header table is in docs/on-disk-format.md), numbered with
increasing offsets >= the base offset. ``.index`` and ``.timeindex`` are the
sparse indexes of :mod:`logbroker.storage.index`: an entry is added when more
than ``index.interval.bytes`` were appended since the last one (Kafka's rule).

I/O choices:

* **Writes** go through the file descriptor (``os.pwritev`` at the segment's
  size), never through a mapping: a full disk then yields ENOSPC/EFBIG, and a
  partial write is cut back with ftruncate, so the file always ends on a batch
  boundary.
* **Reads** are zero-copy ``memoryview`` slices of a read-only shared map of
  the file, never longer than the data (``size``). The active segment's map
  reaches up to 16 MiB (:data:`_MAP_STEP`, at most ``segment.bytes``) past
  its data, and bytes appended later through the descriptor show up in it,
  so a consumer reading the tail after each append costs no remap. Maps are
  made with the C library's ``mmap`` (:mod:`logbroker.storage.mapping`),
  which can reach past the end of a file and keeps no descriptor; where that
  fails, the map is an ``mmap.mmap`` of the current size (which does keep
  one), re-created when a read needs bytes beyond it. The file itself is never extended: its size
  is always the data's size, so recovery and a full disk are unaffected. A
  view handed out keeps its (old) map alive. Views of bytes later removed by
  a truncation must not be touched (the kernel would raise SIGBUS), as with
  any mmap.
* Only an active segment writes through a file descriptor, lent by
  :data:`logbroker.storage.descriptors.WRITE_DESCRIPTORS` within a budget of
  open files (closed while the partition is idle); sealed segments are read
  through their map and flushed by path.
* Maps are made on first read and live within the process's budget of maps
  (:data:`logbroker.storage.mapbudget.MAPS`): the least recently read are
  dropped and made again on the next read, so an idle partition holds none.

Thread-safety: not thread-safe; the owning :class:`PartitionLog` calls it from
one thread, except that ``log_path``/``index paths`` may be fsynced by path
from any thread.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import stat
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from logbroker.errors import CorruptBatchError, CorruptSegmentError, StorageError
from logbroker.records import (
    BatchHeader,
    BytesLike,
    HEADER_SIZE,
    LOCATE_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_AT,
    check_batch,
    iter_batches,
    parse_header,
)
from logbroker.storage.config import LogConfig
from logbroker.storage.damage import BatchScan, DamagedBatch, LostRange, scan_batches
from logbroker.storage.files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    segment_path,
    write_atomically,
)
from logbroker.storage.index import CorruptIndexError, OffsetIndex, TimeIndex
from logbroker.storage.descriptors import WRITE_DESCRIPTORS
from logbroker.storage.mapbudget import MAPS
from logbroker.storage.mapping import map_fd

__all__ = ["REWRITE_SUFFIX", "LogSegment", "SegmentRecovery"]

_log = logging.getLogger("logbroker.storage")
REWRITE_SUFFIX = ".repairing"
"""``<segment>.log.repairing``: a segment being rewritten without its damaged
batches (renamed over the ``.log`` once complete; a leftover is removed at open)."""


class _Break(NamedTuple):
    """Where a walk along the batch chain met bytes that are not a batch header;
    ``after``: one past the last offset of the batch before it (None if unknown)."""

    position: int
    after: int | None


def _is_batch_start(view: memoryview, pos: int, size: int) -> bool:
    """Cheap plausibility of a batch header at ``pos`` (magic and length), no CRC."""
    if size - pos < HEADER_SIZE or view[pos + MAGIC_AT] != MAGIC:
        return False
    length = LOCATE_STRUCT.unpack_from(view, pos)[1]
    return HEADER_SIZE - LOG_OVERHEAD <= length and pos + length + LOG_OVERHEAD <= size


def _walk_to(view: memoryview, pos: int, size: int, offset: int) -> int | _Break | None:
    """Position of the first batch from ``pos`` whose last offset is >= ``offset``,
    None past the end, or a _Break where the chain from ``pos`` stops being batches."""
    unpack = LOCATE_STRUCT.unpack_from
    after = None
    while pos < size:
        if not _is_batch_start(view, pos, size):
            return _Break(pos, after)
        base, length, last_delta = unpack(view, pos)
        after = base + last_delta + 1
        if base + last_delta >= offset:
            return pos
        pos += length + LOG_OVERHEAD
    return None
_EMPTY = memoryview(b"")
_NO_ROLL_TS = 2**62
_MAP_STEP = 16 << 20
"""The active segment's map reaches up to this many bytes past its data (and at
most to ``segment.bytes``): it is remapped once per 16 MiB appended."""
_NO_HINT = (2**63, 0)  # a locate() hint that never applies


class SegmentRecovery:
    """What :meth:`LogSegment.recover` found: batches kept, bytes removed, and the
    ranges removed (damaged batches between valid ones, or the torn tail)."""

    __slots__ = ("batches", "valid_bytes", "truncated_bytes", "lost")

    def __init__(self, batches: int, valid_bytes: int, truncated_bytes: int,
                 lost: tuple[LostRange, ...] = ()) -> None:
        self.batches = batches
        self.valid_bytes = valid_bytes
        self.truncated_bytes = truncated_bytes
        self.lost = lost


def index_capacities(config: LogConfig) -> tuple[int, int]:
    """Most bytes (.index, .timeindex) of an active segment may grow to.

    An entry needs more than ``index.interval.bytes`` since the previous one,
    so a full segment needs at most ``segment.bytes / interval + 1`` entries;
    ``segment.index.bytes`` caps it. The time index keeps one spare entry for
    the entry written when the segment seals.
    """
    entries = config.segment_index_bytes // OffsetIndex.ENTRY_SIZE
    if config.index_interval_bytes > 0:
        entries = min(entries, config.segment_bytes // config.index_interval_bytes + 1)
    return entries * OffsetIndex.ENTRY_SIZE, (entries + 1) * TimeIndex.ENTRY_SIZE


class LogSegment:
    """A segment starting at ``base_offset`` in ``directory``; see module docstring.

    Attributes kept in memory: ``size`` (bytes), ``next_offset`` (one past the
    last offset, ``base_offset`` when empty), ``max_timestamp`` and
    ``offset_of_max_timestamp`` (-1 when none), ``rolling_timestamp`` (max
    timestamp of the first batch, for ``segment.ms``; None when empty).

    ``file_suffix`` is appended to the three file names: "" for a segment of
    the log, ``.cleaned`` / ``.swap`` while a replacement segment is written
    and swapped in (see :meth:`PartitionLog.replace_segments`).
    """

    def __init__(self, directory: Path, base_offset: int, config: LogConfig, *, file_suffix: str = "") -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.file_suffix = file_suffix
        self.log_path = segment_path(directory, base_offset, LOG_SUFFIX + file_suffix)
        self.config = config
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.rolling_timestamp: int | None = None
        self.roll_base_timestamp = _NO_ROLL_TS  # rolling_timestamp, or a value that never rolls
        self.indexes_full = False
        self.active = False
        self._bytes_since_index = 0
        self._map: mmap.mmap | None = None
        self._view: memoryview = _EMPTY
        self._mapped = 0
        self._pinned = False  # maps kept outside the map budget (files unlinked)
        # Scan hints for locate(), each (floor, position): every batch before
        # ``position`` ends below ``floor``, so an offset >= floor can be looked
        # for from ``position``. Consumers at the tail ask for the batches just
        # appended or just after their previous read.
        self._append_hint = self._read_hint = _NO_HINT
        # Bytes [0, verified) passed a CRC check in this process (appended or
        # recovered); reads check the CRC of anything beyond before serving it.
        self.verified = 0
        self._appended_from: int | None = None  # bytes from here were appended (validated) in this process
        # Batches that reads found damaged (never served), by position; each is logged once.
        self.damaged: dict[int, DamagedBatch] = {}
        mode = config.file_mode
        self.offset_index = OffsetIndex(segment_path(directory, base_offset, INDEX_SUFFIX + file_suffix), base_offset, mode)
        self.time_index = TimeIndex(segment_path(directory, base_offset, TIME_INDEX_SUFFIX + file_suffix), base_offset, mode)

    # -- lifecycle ---------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, base_offset: int, config: LogConfig, *, file_suffix: str = "") -> LogSegment:
        """A new, empty, active segment. Raises StorageError if the disk refuses."""
        path = segment_path(directory, base_offset, LOG_SUFFIX + file_suffix)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, config.file_mode)
            os.close(fd)
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                segment_path(directory, base_offset, suffix + file_suffix).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create segment {path}: {exc.strerror or exc}") from exc
        segment = cls(directory, base_offset, config, file_suffix=file_suffix)
        try:
            segment.activate()
        except StorageError:
            segment.delete()
            raise
        return segment

    @classmethod
    def open(cls, directory: Path, base_offset: int, config: LogConfig, *, file_suffix: str = "") -> LogSegment:
        """An existing segment, sealed; the caller then recovers, loads or activates it."""
        segment = cls(directory, base_offset, config, file_suffix=file_suffix)
        segment.size = segment.log_path.stat().st_size
        return segment

    def load(self) -> bool:
        """Fill in the in-memory state of a cleanly closed segment from its indexes
        without scanning the data. Returns False if an index is missing or fails
        its sanity check (the caller then calls :meth:`recover`)."""
        if self.size and not (self.offset_index.existed and self.time_index.existed):
            return False
        try:
            self.offset_index.sanity_check(self.size)
            if self.size:
                self.offset_index.verify_against(self._view_to(self.size), self.size)
            indexed, pos = self.offset_index.last_entry()
            last_pos, last = pos, None
            for last_pos, last in iter_batches(self._view_to(self.size), pos, self.size):
                if last_pos == pos and pos and last.last_offset != indexed:
                    raise CorruptIndexError(f"{self.offset_index.path.name}: last entry does not match the log")
            if last is None and self.size:
                raise CorruptIndexError(f"{self.offset_index.path.name}: no batch at indexed position")
            if last is not None and last_pos + last.size != self.size:
                raise CorruptIndexError(f"{self.log_path.name}: does not end on a batch boundary")
            self.next_offset = last.next_offset if last is not None else self.base_offset
            self.time_index.sanity_check(self.next_offset - 1)
        except CorruptIndexError:
            return False
        entry = self.time_index.last_entry()
        if entry is not None:
            self.max_timestamp, self.offset_of_max_timestamp = entry
        if self.size:
            self._set_rolling(parse_header(self._view_to(self.size), 0).max_timestamp)
        self._bytes_since_index = self.size - pos
        return True

    def activate(self) -> None:
        """Make this the active segment: open for writing, reserve index space."""
        if self.active:
            return
        offset_bytes, time_bytes = index_capacities(self.config)
        with WRITE_DESCRIPTORS.use(self, self.log_path):
            pass  # opens it now, so a refusal surfaces here rather than at the first append
        self.offset_index.make_writable(offset_bytes)
        self.time_index.make_writable(time_bytes)
        self._update_full()
        self.active = True

    def seal(self) -> None:
        """Stop appending (roll or close): record the final max timestamp in the
        time index, trim both indexes, close the write descriptor."""
        if not self.active:
            return
        self._seal_indexes()
        WRITE_DESCRIPTORS.release(self)
        self.active = False
        self._drop_map()  # give back the address space reserved ahead of the data

    def _set_rolling(self, timestamp: int | None) -> None:
        self.rolling_timestamp = timestamp
        self.roll_base_timestamp = timestamp if timestamp is not None and timestamp >= 0 else _NO_ROLL_TS

    def _update_full(self) -> None:
        self.indexes_full = self.offset_index.is_full or self.time_index.is_full

    def _seal_indexes(self) -> None:
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp, force=True)
        self.offset_index.trim()
        self.time_index.trim()

    def close(self) -> None:
        """Seal and drop the map (views already handed out stay valid)."""
        self.seal()
        self.offset_index.close()
        self.time_index.close()
        self._drop_map()

    def delete(self) -> None:
        """Remove the files: .log first, so a crash leaves orphan indexes at worst."""
        WRITE_DESCRIPTORS.release(self)
        self.active = False
        self._drop_map()
        self.log_path.unlink(missing_ok=True)
        self.offset_index.delete()
        self.time_index.delete()

    def paths(self) -> tuple[Path, Path, Path]:
        return self.log_path, self.offset_index.path, self.time_index.path

    def rename_files(self, file_suffix: str, *, log_last: bool = True) -> None:
        """Rename the three files to carry ``file_suffix`` instead of the current
        one (the segment must be sealed). Maps stay valid (same inodes). The
        ``.log`` is renamed last (``log_last``) or first: the order a crash-safe
        swap relies on (see :meth:`PartitionLog.replace_segments`). Raises
        StorageError; the files renamed so far keep their new names."""
        if self.active:
            raise ValueError(f"{self.log_path.name}: an active segment's files are not renamed")
        base, directory = self.base_offset, self.directory
        log_path = segment_path(directory, base, LOG_SUFFIX + file_suffix)
        indexes = (
            (self.offset_index, segment_path(directory, base, INDEX_SUFFIX + file_suffix)),
            (self.time_index, segment_path(directory, base, TIME_INDEX_SUFFIX + file_suffix)),
        )
        try:
            if not log_last:
                os.rename(self.log_path, log_path)
                self.log_path = log_path
            for index, path in indexes:
                os.rename(index.path, path)
                index.path = path
            if log_last:
                os.rename(self.log_path, log_path)
                self.log_path = log_path
        except OSError as exc:
            raise StorageError(f"cannot rename {self.log_path.name} to {log_path.name}: {exc.strerror or exc}") from exc
        self.file_suffix = file_suffix

    def unlink_files(self) -> None:
        """Remove the three files but keep this object readable: the log is
        mapped first (if it holds data) and the maps of the log and indexes keep
        the unlinked inodes alive until the object is dropped. For a sealed
        segment replaced in its partition log, which readers may still hold.
        Raises StorageError (the log cannot be mapped, or a file not removed)."""
        if self.active:
            raise ValueError(f"{self.log_path.name}: an active segment is never unlinked")
        if self.size:
            self._view_to(self.size)
        # Unlinked files cannot be mapped again: keep these maps outside the budget.
        self._pinned = True
        MAPS.forget(self)
        self.offset_index.pin()
        self.time_index.pin()
        try:
            for path in self.paths():
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot remove {self.log_path.name}: {exc.strerror or exc}") from exc

    # -- append --------------------------------------------------------------------------
    def append(self, buffers: Sequence[BytesLike], size: int, last_offset: int, max_timestamp: int) -> int:
        """Write ``buffers`` (``size`` bytes: one or more whole, numbered batches whose
        last offset is ``last_offset``) at the end. Returns the start position.

        Raises StorageError if the disk refuses; the file is then cut back to
        its previous size, so nothing partial remains.
        """
        pos = self.size
        with WRITE_DESCRIPTORS.use(self, self.log_path) as fd:
            try:
                written = os.pwritev(fd, buffers, pos)
                if written != size:
                    _write_rest(fd, buffers, written, size, pos)
            except OSError as exc:
                _undo_write(fd, pos)
                raise StorageError(f"cannot append to {self.log_path}: {exc.strerror or exc}") from exc
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self._bytes_since_index > self.config.index_interval_bytes:
            self.offset_index.append(last_offset, pos)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0
            self._update_full()
        self._bytes_since_index += size
        if not pos:
            self._set_rolling(max_timestamp)
        self._append_hint = (self.next_offset, pos)
        self.size = pos + size
        if self.verified == pos:  # appended batches were validated by the partition log
            self.verified = pos + size
        if self._appended_from is None:
            self._appended_from = pos
        self.next_offset = last_offset + 1
        return pos

    # -- reads -----------------------------------------------------------------------------
    def _view_to(self, end: int) -> memoryview:
        """A view of the file's first >= ``end`` bytes (at most ``size``), mapping
        again only if the current map ends before ``end`` (or the map budget
        released it)."""
        view = self._view
        if end > len(view):
            view = self._map_file()
        else:
            MAPS.touch(self)
        if len(view) > self.size:  # a reservation: never expose bytes past the data
            return view[: self.size]
        return view

    def _map_file(self) -> memoryview:
        size = self.size
        capacity = size
        if self.active:
            capacity = max(size, min(-(-(size + 1) // _MAP_STEP) * _MAP_STEP, self.config.segment_bytes))
        try:
            fd = os.open(self.log_path, os.O_RDONLY)
        except OSError as exc:
            raise StorageError(f"cannot open {self.log_path}: {exc.strerror or exc}") from exc
        try:
            view = map_fd(fd, capacity)  # holds no descriptor
            if view is None and capacity > size:
                view = map_fd(fd, size)
            if view is None:
                self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
                view = memoryview(self._map)
            else:
                self._map = None
        except OSError as exc:
            raise StorageError(f"cannot map {self.log_path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        self._view, self._mapped = view, len(view)
        if not self._pinned:
            MAPS.add(self)
        return view

    def release_map(self) -> None:
        """Drop the map (the map budget calls this; the next read maps again).
        Views handed out keep their map alive."""
        self._view = _EMPTY
        self._map = None
        self._mapped = 0

    def _drop_map(self) -> None:
        MAPS.forget(self)
        self.release_map()

    def locate(self, offset: int) -> int | None:
        """Position of the batch containing ``offset`` (the first batch whose last
        offset is >= ``offset``), or None if every batch ends before it."""
        size = self.size
        floor, pos = self._append_hint
        if offset < floor:
            floor, pos = self._read_hint
            # The read hint may be old: follow it only as far as the index would.
            if offset < floor or size - pos > self.config.index_interval_bytes:
                _, pos = self.offset_index.lookup(offset)
        if pos >= size:
            return None
        view = self._view_to(size)
        found = _walk_to(view, pos, size, offset)
        if isinstance(found, _Break):
            return self._locate_past_break(view, size, offset, found)
        return found

    def _locate_past_break(self, view: memoryview, size: int, offset: int, broken: _Break) -> int | None:
        """The walk from a hint or index entry met bytes that are not a batch: either
        the entry points inside a batch (a damaged index entry that passed the
        sanity check), or the log itself is damaged there. Walk from the start to
        tell; raises CorruptSegmentError for damage in the log."""
        if broken.position not in self.damaged:
            found = _walk_to(view, 0, size, offset)
            if not isinstance(found, _Break):
                _log.warning("%s: an index entry points inside a batch; %s is walked from its start",
                             self.offset_index.path.name, self.log_path.name)
                self._append_hint = self._read_hint = (self.base_offset, 0)
                return found
            broken = found
        first = broken.after if broken.after is not None else offset
        raise self._damage(broken.position, first, -1, "no batch header at this position")

    def _damage(self, position: int, first: int, last: int, reason: str) -> CorruptSegmentError:
        """Record (and log, the first time) a damaged batch at ``position``; the error to raise."""
        found = self.damaged.get(position)
        if found is None:
            found = self.damaged[position] = DamagedBatch(str(self.log_path), position, first, last, reason)
            _log.error("%s: damaged batch at byte %d (%s) is not served: %s; stop the broker and run "
                       "'logbroker repair' on its data directory", self.log_path, position, found.offsets(), reason)
        return CorruptSegmentError(
            f"{self.log_path}: damaged batch at byte {position} ({found.offsets()}): {found.reason}"
        )

    def read(self, position: int, max_bytes: int) -> memoryview:
        """Whole batches from ``position``: at least the first, then as many more as
        fit in ``max_bytes`` in total. A zero-copy view of the map."""
        size = self.size
        view = self._view_to(size)
        end = position + LOCATE_STRUCT.unpack_from(view, position)[1] + LOG_OVERHEAD
        limit = position + max_bytes
        if limit >= size:
            end = size
            self._read_hint = (self.next_offset, size)
        elif limit > end:
            pos = max(end, self.offset_index.lookup_position(limit))
            if pos != end and not _is_batch_start(view, pos, size):
                pos = end  # a damaged index entry: extend batch by batch from here
            while pos < limit:
                nxt = pos + LOCATE_STRUCT.unpack_from(view, pos)[1] + LOG_OVERHEAD
                if nxt > limit or nxt <= pos:  # (a damaged length: _verify stops there)
                    break
                pos = nxt
            end = pos
        if end > self.verified and (self._appended_from is None or position < self._appended_from):
            end = self._verify(view, position, end)
        return view[position:end]

    def _verify(self, view: memoryview, position: int, end: int) -> int:
        """CRC-check the batches of [position, end) not yet verified; returns where
        serving must stop (before the first damaged batch). Raises
        CorruptSegmentError when the very first batch is damaged: it is never
        served. Each damaged batch is recorded in :attr:`damaged` and logged once."""
        contiguous = position <= self.verified
        pos = max(position, self.verified) if contiguous else position
        stop = end if self._appended_from is None else min(end, self._appended_from)
        while pos < stop:
            try:
                header = check_batch(view, pos)
            except CorruptBatchError as exc:
                first, last = -1, -1
                if self.size - pos >= HEADER_SIZE:
                    base, _, last_delta = LOCATE_STRUCT.unpack_from(view, pos)
                    first, last = base, base + last_delta
                error = self._damage(pos, first, last, str(exc))
                if pos == position:
                    raise error from exc
                end = pos
                break
            pos += header.size
        if contiguous and pos > self.verified:
            self.verified = pos
        return end

    def view(self) -> memoryview:
        """The whole segment (zero-copy)."""
        return self._view_to(self.size)[: self.size] if self.size else _EMPTY

    def headers(self, position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """``(position, BatchHeader)`` of each batch from ``position`` (no CRC check)."""
        if position >= self.size:
            return iter(())
        return iter_batches(self._view_to(self.size), position, self.size)

    # -- recovery and truncation -----------------------------------------------------------
    def recover(self, max_batch_bytes: int | None = None) -> SegmentRecovery:
        """Validate every batch (length, magic, CRC, increasing offsets), remove the
        damaged ones and rebuild both indexes.

        Damage followed by valid batches is cut out: the file is rewritten
        without it (a temp file renamed over the ``.log``), and the batches
        after it keep their offsets (a gap, as after compaction). Damage with
        nothing valid after it (a torn tail) is truncated. The result says
        which byte ranges and offsets went. ``max_batch_bytes`` (optional)
        treats a batch declaring more bytes as damaged. Leaves the segment
        sealed unless it was active. Raises StorageError if the disk refuses
        the rewrite (the file is then unchanged).
        """
        was_active = self.active
        offset_bytes, time_bytes = index_capacities(self.config)
        self.offset_index.make_writable(offset_bytes)
        self.time_index.make_writable(time_bytes)
        self.offset_index.reset()
        self.time_index.reset()
        self._drop_map()
        self._append_hint = self._read_hint = _NO_HINT
        self.damaged.clear()
        file_size = self.log_path.stat().st_size
        self.size = file_size
        scan = self._rebuild(file_size, max_batch_bytes)
        kept = scan.kept_bytes
        if scan.has_holes:
            if was_active:
                self.seal()  # no write descriptor on the file being replaced
            self._rewrite(scan.kept)
            if was_active:
                self.size = kept
                self.activate()
        elif kept < file_size:
            os.truncate(self.log_path, kept)
        self._drop_map()
        self.size = kept
        self.verified = kept
        self._update_full()
        if not was_active:
            self._seal_indexes()
        return SegmentRecovery(scan.batches, kept, file_size - kept, scan.lost)

    def _rebuild(self, end: int, max_batch_bytes: int | None) -> BatchScan:
        """The scan of :meth:`recover`: state and indexes for the batches kept,
        at their positions once the damaged ranges are removed."""
        self.next_offset = self.base_offset
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self._set_rolling(None)
        interval = self.config.index_interval_bytes
        offset_index, time_index = self.offset_index, self.time_index
        since = 0
        max_ts = max_ts_offset = -1

        def on_batch(pos: int, size: int, last: int, batch_max_ts: int) -> None:
            nonlocal since, max_ts, max_ts_offset
            if batch_max_ts > max_ts:
                max_ts, max_ts_offset = batch_max_ts, last
            if since > interval:
                offset_index.append(last, pos)
                time_index.maybe_append(max_ts, max_ts_offset)
                since = 0
            since += size
            if not pos:
                self._set_rolling(batch_max_ts)

        view = self._view_to(end) if end else _EMPTY
        scan = scan_batches(view, end, self.base_offset, path=str(self.log_path),
                            max_batch_bytes=max_batch_bytes, on_batch=on_batch)
        self.next_offset = scan.next_offset
        self.max_timestamp, self.offset_of_max_timestamp = max_ts, max_ts_offset
        self._bytes_since_index = since
        return scan

    def _rewrite(self, kept: tuple[tuple[int, int], ...]) -> None:
        """Replace the ``.log`` by its ``kept`` byte ranges: temp file (same mode),
        fsync, rename, fsync the directory, so a crash leaves the old or the new
        file. Raises StorageError (the old file is then untouched)."""
        view = self._view_to(self.size)
        try:
            mode = stat.S_IMODE(os.stat(self.log_path).st_mode)
        except OSError as exc:
            raise StorageError(f"cannot rewrite {self.log_path}: {exc.strerror or exc}") from exc
        write_atomically(self.log_path, (view[start:stop] for start, stop in kept), mode,
                         temp_suffix=REWRITE_SUFFIX)
        self._drop_map()  # the map shows the replaced file

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset is >= ``offset`` (a batch containing
        ``offset`` goes whole). Returns the bytes removed. The segment must be active."""
        pos = self.locate(offset)
        if pos is None:
            return 0
        removed = self.size - pos
        self._drop_map()
        self._append_hint = self._read_hint = _NO_HINT
        try:
            with WRITE_DESCRIPTORS.use(self, self.log_path) as fd:
                os.ftruncate(fd, pos)
        except OSError as exc:
            raise StorageError(f"cannot truncate {self.log_path}: {exc.strerror or exc}") from exc
        self.size = pos
        self.verified = min(self.verified, pos)
        self.damaged = {p: d for p, d in self.damaged.items() if p < pos}
        if self._appended_from is not None and self._appended_from > pos:
            self._appended_from = pos
        self.offset_index.truncate_to_position(pos)
        # Recompute the in-memory state from the remaining headers (not a hot path).
        self.next_offset = self.base_offset
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self._set_rolling(None)
        for _, header in self.headers(0):
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = header.max_timestamp, header.last_offset
            if self.rolling_timestamp is None:
                self._set_rolling(header.max_timestamp)
            self.next_offset = header.next_offset
        self._bytes_since_index = pos - self.offset_index.last_entry()[1]
        self._update_full()
        self.time_index.truncate_to(self.next_offset)
        return removed

    def flush_paths(self) -> tuple[Path, ...]:
        """Files to fsync to make this segment durable (all three once sealed)."""
        if self.active:
            return (self.log_path,)
        return self.paths()

    def __repr__(self) -> str:
        return (
            f"<LogSegment {self.log_path.name} offsets=[{self.base_offset}, {self.next_offset}) "
            f"size={self.size} {'active' if self.active else 'sealed'} "
            f"max_ts={self.max_timestamp} index={self.offset_index.entries}>"
        )


def _write_rest(fd: int, buffers: Sequence[BytesLike], written: int, size: int, pos: int) -> None:
    data = memoryview(b"".join(buffers))  # rare path (short write): a copy is fine
    while written < size:
        n = os.pwrite(fd, data[written:], pos + written)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        written += n


def _undo_write(fd: int, pos: int) -> None:
    try:
        os.ftruncate(fd, pos)
    except OSError:
        pass  # the next recovery cuts the partial batch off anyway
