"""One partition's log: a directory of segments, appended and read by offset.

A :class:`PartitionLog` validates a produced batch, numbers it (writes the base
offset and leader epoch in its first 16 bytes, which the CRC does not cover)
and appends it to the active segment, rolling to a new segment by size, age
or full index. Reads return zero-copy memoryviews of whole batches from one
segment. Retention deletes whole sealed segments from the oldest.

Thread-safety: every method is meant for one thread (the broker's event loop
thread), except :meth:`flush` and the read-only properties
(``log_end_offset``, ``recovery_point``, ``dirty``), which may be called from
worker threads concurrently with appends. Concurrent :meth:`flush` callers
share fsyncs (group commit): a caller whose offset is already covered by a
finished fsync returns without another one.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

import crc32c

from logbroker.errors import (
    BatchTooLargeError,
    CorruptBatchError,
    InvalidBatchError,
    OffsetOutOfRangeError,
    StorageError,
)
from logbroker.records import (
    BytesLike,
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    BatchHeader,
    check_batch,
    decode_batch,
    validate_produced_batch,
)
from logbroker.records import (
    ATTRIBUTES_AT,
    ATTRIBUTES_STRUCT,
    CRC_AT,
    CRC_START,
    CRC_STRUCT,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAX_TIMESTAMP_AT,
    PREFIX_SIZE,
    PREFIX_STRUCT,
    TIMESTAMP_STRUCT,
)
from logbroker.storage.config import LogConfig
from logbroker.storage.damage import DamagedBatch
from logbroker.storage.files import fsync_dir, fsync_path
from logbroker.storage.loader import PartitionRecovery, load_segments
from logbroker.storage.segment import LogSegment
from logbroker.storage.swap import CLEANED_SUFFIX, SWAP_SUFFIX
from logbroker.storage.txnindex import TxnIndexes

__all__ = ["AppendInfo", "PartitionLog", "ReadResult", "SegmentInfo"]

logger = logging.getLogger("logbroker.storage")

_INT32_MAX = 2**31 - 1
_EMPTY = memoryview(b"")


class AppendInfo(NamedTuple):
    """Where an appended batch landed. ``log_append_time_ms`` is -1 for CreateTime topics."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int


class ReadResult(NamedTuple):
    """``records``: whole batches from one segment (empty at the log end)."""

    records: memoryview
    high_watermark: int
    log_start_offset: int


class SegmentInfo(NamedTuple):
    """A snapshot of one segment's state."""

    base_offset: int
    next_offset: int
    size_bytes: int
    max_timestamp: int
    path: Path


class PartitionLog:
    """The log of one partition in ``directory`` (created if missing).

    ``recovery_point``: offsets below it are known to be on disk;
    ``clean_shutdown``: the directory was closed cleanly (no data scan on
    open); without it every segment from the recovery point on is re-scanned
    and cut at the first invalid byte (see :mod:`logbroker.storage.loader`).
    ``log_start_offset``: the persisted DeleteRecords position.
    ``on_log_start_offset_change(new_offset)`` is called after
    :meth:`delete_records_before` moves the log start, to persist it.
    ``on_fsync(seconds)``, if given, is called after each :meth:`flush` round
    that made system calls, with how long they took (from a worker thread).
    Raises StorageError if the directory cannot be opened.
    """

    def __init__(
        self,
        directory: Path | str,
        config: LogConfig | None = None,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        clean_shutdown: bool = False,
        on_log_start_offset_change: Callable[[int], None] | None = None,
        on_fsync: Callable[[float], None] | None = None,
    ) -> None:
        self._dir = Path(directory)
        self._config = config if config is not None else LogConfig()
        self._set_limits(self._config)
        try:
            self._dir.mkdir(mode=self._config.dir_mode, parents=True, exist_ok=True)
            segments, report = load_segments(
                self._dir,
                self._config,
                recovery_point=recovery_point,
                clean=clean_shutdown,
                log_start_offset=log_start_offset,
            )
        except OSError as exc:
            raise StorageError(f"cannot open partition directory {self._dir}: {exc}") from exc
        self.recovery_report: PartitionRecovery = report
        self._segments: list[LogSegment] = segments
        self._bases = [s.base_offset for s in segments]
        self._active = segments[-1]
        end = self._active.next_offset
        self._log_start_offset = min(max(log_start_offset, segments[0].base_offset), end)
        # As Kafka: recovered bytes are not known to be on disk, so the recovery
        # point stays where the checkpoint put it (capped by the log end).
        self._recovery_point = min(recovery_point, end)
        # Where the recovery point lies in the files, while nothing past it is
        # unflushed (see recovery_position).
        active = self._active
        self._recovery_position: tuple[int, int] | None = (
            (active.base_offset, active.size) if self._recovery_point >= end else None
        )
        self._on_log_start_change = on_log_start_offset_change
        self._on_fsync = on_fsync
        self._lock = threading.Lock()  # guards the segment list vs flush threads
        self._flush_lock = threading.Lock()  # one fsync round at a time
        self._generation = 0  # bumped by truncations, which lower the recovery point
        self._unsynced_sealed: list[LogSegment] = []
        self._dir_dirty = False
        self._closed = False
        self._fsync_failed: str | None = None
        """Why an fsync failed: the kernel may have dropped the dirty pages, so
        nothing more is appended or called durable until a restart recovers."""
        self.fsyncs = 0  # fsync calls made by flush (statistics)
        # Aborted-transaction entries, one .txnindex per segment (the broker fills it).
        self.txn_index = TxnIndexes(self._dir, file_mode=self._config.file_mode)
        self.txn_index.prune(self._bases, end)
        # Retention deletes no segment holding this offset or later (the broker
        # sets it to the last stable offset while a transaction is open).
        self.retention_limit: int | None = None

    # -- properties ---------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The partition directory; the broker may keep its own files here."""
        return self._dir

    @property
    def config(self) -> LogConfig:
        return self._config

    def update_config(self, config: LogConfig) -> None:
        """Apply new topic settings (from the next append / retention run on)."""
        self._config = config
        self._set_limits(config)
        for segment in self._segments:
            segment.config = config

    def _set_limits(self, config: LogConfig) -> None:
        self._max_message_bytes = config.max_message_bytes
        self._segment_bytes = config.segment_bytes
        self._segment_ms = config.segment_ms
        self._log_append_time = config.log_append_time

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        """One past the last offset (the next offset to be assigned)."""
        return self._active.next_offset

    @property
    def high_watermark(self) -> int:
        """Equal to the log end offset on a single node."""
        return self._active.next_offset

    @property
    def recovery_point(self) -> int:
        """Offsets below this are fsynced."""
        return self._recovery_point

    @property
    def recovery_position(self) -> tuple[int, int] | None:
        """``(segment base offset, bytes)``: the files up to here are fsynced (that
        segment up to ``bytes``, the earlier ones whole). None when unknown. A
        log whose files end there after a crash needs no recovery."""
        return self._recovery_position

    @property
    def dirty(self) -> bool:
        """True if some appended data is not yet fsynced."""
        return self._recovery_point < self._active.next_offset or bool(self._unsynced_sealed)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def damaged(self) -> tuple[DamagedBatch, ...]:
        """Batches that reads found damaged since the log opened (never served; a
        read from them raises CorruptSegmentError), in log order. Empty after a
        repair or a recovery that scanned them (recovery removes damage)."""
        return tuple(d for s in list(self._segments) for _, d in sorted(s.damaged.items()))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (e.g. the topic was deleted)."""
        return self._closed

    def sealed_segments(self) -> tuple[LogSegment, ...]:
        """The sealed segments (every one but the active), oldest first: for the
        log cleaner, which reads them and hands replacements to
        :meth:`replace_segments`. Read only; do not close or mutate them."""
        return tuple(self._segments[:-1])

    @property
    def segments(self) -> tuple[SegmentInfo, ...]:
        return tuple(
            SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp, s.log_path)
            for s in self._segments
        )

    # -- append ---------------------------------------------------------------------
    def append(
        self,
        batch: bytes | memoryview,
        now_ms: int,
        *,
        leader_epoch: int = 0,
        header: BatchHeader | None = None,
        allow_control: bool = False,
    ) -> AppendInfo:
        """Validate, number and append one produced batch; returns its AppendInfo.

        ``batch`` is not copied (except on LogAppendTime topics, which rewrite
        attributes, maxTimestamp and CRC): a new 16-byte prefix with the
        offset and epoch is written, followed by ``batch[16:]``.
        ``header``: the result of ``validate_produced_batch(batch)`` if the
        caller already ran it (the CRC is then not checked again).
        ``allow_control``: accept control batches (broker-written markers).

        Raises BatchTooLargeError (above max.message.bytes or segment.bytes),
        CorruptBatchError, InvalidBatchError, StorageError (disk refused; the
        log is unchanged). Nothing is written when it raises.
        """
        if self._closed:
            raise StorageError(f"{self._dir.name} is closed")
        if self._fsync_failed is not None:
            raise StorageError(f"{self._fsync_failed}; restart the broker to recover the log")
        size = len(batch)
        if header is not None:
            last_delta, max_ts = header.last_offset_delta, header.max_timestamp
            length = header.batch_length
            if size > self._max_message_bytes or size > self._segment_bytes:
                self._refuse(batch, allow_control)
        else:
            # Fast path: the checks of validate_produced_batch on one unpack; any
            # failure goes to the slow path, which raises the precise error.
            try:
                (_, length, _, magic, crc, attributes, last_delta, _, max_ts,
                 producer_id, _, base_sequence, count) = HEADER_STRUCT.unpack_from(batch, 0)
            except struct.error:
                self._refuse(batch, allow_control)
            view = batch if batch.__class__ is memoryview else memoryview(batch)
            if (
                length + LOG_OVERHEAD != size
                or size > self._max_message_bytes
                or size > self._segment_bytes
                or magic != 2
                or count <= 0
                or last_delta + 1 != count
                or (attributes & ATTR_CONTROL and not allow_control)
                or (producer_id >= 0 and base_sequence < 0)
                or crc32c.crc32c(view[CRC_START:]) != crc
            ):
                self._refuse(batch, allow_control)
        segment = self._active
        base = segment.next_offset
        last = base + last_delta
        buffers: tuple[BytesLike, ...]
        if self._log_append_time:
            max_ts = append_time = now_ms
            buffers = (_stamp_log_append_time(batch, base, leader_epoch, now_ms),)
        else:
            append_time = -1
            if header is not None:
                view = batch if batch.__class__ is memoryview else memoryview(batch)
            buffers = (PREFIX_STRUCT.pack(base, length, leader_epoch), view[PREFIX_SIZE:])
        used = segment.size
        if used and (
            used + size > self._segment_bytes
            or max_ts - segment.roll_base_timestamp > self._segment_ms
            or segment.indexes_full
            or last - segment.base_offset > _INT32_MAX
        ):
            segment = self._roll(base)
        segment.append(buffers, size, last, max_ts)
        return AppendInfo(base, last, append_time, self._log_start_offset)

    def _refuse(self, batch: BytesLike, allow_control: bool) -> NoReturn:
        """Raise the precise error for a batch the fast path refused."""
        if allow_control:
            header = _validate_trusted(batch)
        else:
            header = validate_produced_batch(batch, max_bytes=self._max_message_bytes)
        if header.size > self._segment_bytes:
            raise BatchTooLargeError(f"batch of {header.size} bytes exceeds segment.bytes {self._segment_bytes}")
        if header.size > self._max_message_bytes:
            raise BatchTooLargeError(
                f"batch of {header.size} bytes exceeds max.message.bytes {self._max_message_bytes}"
            )
        raise CorruptBatchError("batch refused")  # unreachable unless the checks disagree

    def roll(self) -> None:
        """Seal the active segment and start a new one at the log end (no-op if empty)."""
        if self._active.size:
            self._roll(self._active.next_offset)

    def _roll(self, base: int) -> LogSegment:
        new = LogSegment.create(self._dir, base, self._config)  # may raise: nothing changed
        with self._lock:
            old = self._active
            old.seal()
            self._segments.append(new)
            self._bases.append(base)
            self._active = new
            self._unsynced_sealed.append(old)
            self._dir_dirty = True
        logger.debug("%s: rolled to %s", self._dir.name, new.log_path.name)
        return new

    # -- reads ------------------------------------------------------------------------
    def read(self, offset: int, max_bytes: int) -> ReadResult:
        """Whole batches of one segment from the batch containing ``offset``: at least
        one batch even if larger than ``max_bytes``, then more while the total fits.

        Empty ``records`` when ``offset`` is the log end. Raises
        OffsetOutOfRangeError outside [log start, log end], CorruptSegmentError
        when the batch at ``offset`` is damaged (see :attr:`damaged`),
        StorageError once the log is closed (e.g. its topic was deleted).
        """
        if self._closed:
            raise StorageError(f"{self._dir.name} is closed")
        end = self._active.next_offset
        if offset == end:
            return ReadResult(_EMPTY, end, self._log_start_offset)
        if offset < self._log_start_offset or offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self._log_start_offset}, {end}] of {self._dir.name}"
            )
        segments = self._segments
        i = bisect.bisect_right(self._bases, offset) - 1
        for segment in segments[i:]:
            pos = segment.locate(offset)
            if pos is not None:
                return ReadResult(segment.read(pos, max_bytes), end, self._log_start_offset)
            # a gap in the offsets (compaction): continue at the next segment
        return ReadResult(_EMPTY, end, self._log_start_offset)  # only gaps up to the end

    def iter_batch_headers(self, from_offset: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """``(segment base offset, header)`` of each batch whose last offset is >=
        ``from_offset``, in order (e.g. to rebuild producer state)."""
        for segment in list(self._segments):
            if segment.next_offset <= from_offset:
                continue
            start = segment.locate(max(from_offset, segment.base_offset))
            if start is None:
                continue
            for _, header in segment.headers(start):
                yield segment.base_offset, header

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record at or after the log start whose
        timestamp is >= ``timestamp_ms``; None if there is none."""
        start = self._log_start_offset
        for segment in list(self._segments):
            if segment.max_timestamp < timestamp_ms or segment.next_offset <= start:
                continue
            offset = max(segment.time_index.lookup(timestamp_ms), start)
            _, pos = segment.offset_index.lookup(offset)
            for position, header in segment.headers(pos):
                if header.last_offset < start or header.max_timestamp < timestamp_ms:
                    continue
                if header.log_append_time:
                    return max(header.base_offset, start), header.max_timestamp
                for record in decode_batch(segment.view(), position).records:
                    if record.offset >= start and record.timestamp >= timestamp_ms:
                        return record.offset, record.timestamp
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the first record with the largest timestamp,
        or None if the log holds no timestamped record."""
        best = None
        for segment in self._segments:
            if segment.max_timestamp >= 0 and (best is None or segment.max_timestamp > best.max_timestamp):
                best = segment
        if best is None:
            return None
        ts, offset = best.max_timestamp, best.offset_of_max_timestamp
        pos = best.locate(offset)
        if pos is not None:
            decoded = decode_batch(best.view(), pos)
            for record in decoded.records:
                if record.timestamp == ts:
                    return ts, record.offset
        return ts, offset

    # -- deletion -------------------------------------------------------------------------
    def apply_retention(self, now_ms: int) -> int:
        """Delete whole sealed segments from the oldest while one of these holds:
        older than ``retention.ms`` (by its largest timestamp), the rest still
        holds ``retention.bytes``, or it lies wholly below the log start offset.
        Time and size only apply with ``delete`` in cleanup.policy. The active
        segment is never deleted. Returns the number of segments deleted."""
        config = self._config
        by_time = config.deletes and config.retention_ms >= 0
        by_size = config.deletes and config.retention_bytes >= 0
        total = self.size_bytes
        doomed: list[LogSegment] = []
        limit = self.retention_limit
        for segment, following in zip(self._segments, self._segments[1:]):
            if limit is not None and following.base_offset > limit:
                break
            if following.base_offset <= self._log_start_offset:
                pass
            elif by_time and now_ms - _largest_timestamp(segment) > config.retention_ms:
                pass
            elif by_size and total - segment.size >= config.retention_bytes:
                pass
            else:
                break
            doomed.append(segment)
            total -= segment.size
        if doomed:
            self._delete_oldest(len(doomed))
            logger.info(
                "%s: retention deleted %d segments, log start offset now %d",
                self._dir.name,
                len(doomed),
                self._log_start_offset,
            )
        return len(doomed)

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move the log start offset up to ``offset`` and delete the
        sealed segments wholly below it. Returns the new log start offset.

        Raises OffsetOutOfRangeError if ``offset`` is beyond the log end.
        """
        end = self._active.next_offset
        if offset > end or offset < 0:
            raise OffsetOutOfRangeError(f"cannot delete records before {offset}: log end is {end}")
        if offset <= self._log_start_offset:
            return self._log_start_offset
        self._log_start_offset = offset
        count = 0
        for following in self._segments[1:]:
            if following.base_offset > offset:
                break
            count += 1
        if count:
            self._delete_oldest(count)
        if self._on_log_start_change is not None:
            self._on_log_start_change(self._log_start_offset)
        return self._log_start_offset

    def _delete_oldest(self, count: int) -> None:
        with self._lock:
            doomed = self._segments[:count]
            del self._segments[:count]
            del self._bases[:count]
            self._unsynced_sealed = [s for s in self._unsynced_sealed if s not in doomed]
            self._dir_dirty = True
            self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        for segment in doomed:
            segment.delete()
        self.txn_index.prune(self._bases, self._active.next_offset)

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset is >= ``offset`` (a batch containing
        ``offset`` goes whole). Returns the new log end offset (<= ``offset``).

        Below the log start, the log is emptied and restarts at ``offset``.
        Memoryviews of the removed bytes must no longer be used.
        """
        end = self._active.next_offset
        if offset >= end:
            return end
        with self._lock:
            self._generation += 1
            if offset < self._log_start_offset:
                for segment in self._segments:
                    segment.delete()
                doomed = []
                new = LogSegment.create(self._dir, offset, self._config)
                self._segments, self._bases = [new], [offset]
                self._log_start_offset = offset
            else:
                i = bisect.bisect_right(self._bases, offset) - 1
                doomed = self._segments[i + 1 :]
                keep = self._segments[i]
                del self._segments[i + 1 :]
                del self._bases[i + 1 :]
                if not keep.active:
                    keep.activate()
                keep.truncate_to(offset)
            self._active = self._segments[-1]
            self._unsynced_sealed = [s for s in self._unsynced_sealed if s in self._segments]
            self._recovery_point = min(self._recovery_point, self._active.next_offset)
            self._recovery_position = None
            self._log_start_offset = min(self._log_start_offset, self._active.next_offset)
            self._dir_dirty = True
        for segment in doomed:
            segment.delete()
        self.txn_index.prune(self._bases, self._active.next_offset)
        logger.info("%s: truncated to offset %d", self._dir.name, self._active.next_offset)
        return self._active.next_offset

    # -- segment replacement ---------------------------------------------------------------
    def replace_segments(self, new_segments: Sequence[LogSegment], old_segments: Sequence[LogSegment]) -> None:
        """Swap ``new_segments`` in for ``old_segments`` (Kafka's LocalLog.replaceSegments),
        crash-safely; the log cleaner's only way to change the log.

        Arguments: ``old_segments`` is a contiguous run of this log's sealed
        segments (the objects :meth:`sealed_segments` gave), oldest first.
        ``new_segments`` are sealed segments written in this directory with
        the ``.cleaned`` file suffix, sorted by base offset; the first has the
        base offset of the first old one, every base offset is one of the old
        ones, and each holds offsets below the next one's base offset (the last:
        below the base offset of the segment after the old run). The new
        segment at an old base offset replaces the old segments from there up
        to the next new one's base offset, and takes over their
        aborted-transaction entries (``.txnindex``).

        Steps (see :mod:`logbroker.storage.swap` for what a crash after each
        one opens as): fsync the new files; write the ``.txnindex.cleaned`` of
        each new segment that takes entries over; rename the files
        ``.cleaned`` -> ``.swap`` (.txnindex and indexes, then the ``.log``: the
        commit of that segment) and fsync the directory; delete the old
        segments' files; rename ``.swap`` -> final names and fsync the
        directory; then swap the segment list in memory and delete the
        ``.txnindex`` files of the old segments merged away.

        Invariants kept, in memory and (after a crash at any step) on disk:

        * segments stay sorted by base offset and cover the log contiguously:
          no offset is held by two segments, and the replaced range starts at
          the same base offset (the log start offset does not move);
        * the active segment is never replaced (ValueError if asked);
        * ``_bases`` (the bisect index of reads) and the per-segment
          ``.txnindex`` files stay in step with the segment list;
        * the unsynced bookkeeping forgets the old segments, and the new ones
          are durable before they join (nothing new for :meth:`flush` to do);
        * readers holding old segments (their objects, or views of their
          bytes) stay valid: an old segment's files are unlinked but its maps
          kept, so the bytes stay readable until the last holder drops it.

        Raises ValueError for arguments that break the contract (nothing is
        changed), StorageError if the disk refuses: before the commit the log
        is unchanged and the new files are left for the caller to delete;
        after it the log refuses appends until a restart completes the swap.
        """
        if self._closed:
            raise StorageError(f"{self._dir.name} is closed")
        if self._fsync_failed is not None:
            raise StorageError(f"{self._fsync_failed}; restart the broker to recover the log")
        old, new = list(old_segments), list(new_segments)
        start = self._check_replacement(new, old)
        kept = {s.base_offset for s in new}
        merged: list[list[int]] = []  # the old bases each new segment replaces
        for segment in old:
            if segment.base_offset in kept:
                merged.append([])
            merged[-1].append(segment.base_offset)
        moved = self.txn_index.merged_entries(merged)
        for segment in new:
            for path in segment.paths():
                try:
                    fsync_path(path)
                except OSError as exc:
                    raise StorageError(f"cannot fsync {path}: {exc.strerror or exc}") from exc
        committed = False
        try:
            for base, entries in moved.items():
                self.txn_index.stage(base, entries, CLEANED_SUFFIX)
            for segment in new:
                if segment.base_offset in moved:  # before the .log, whose rename commits both
                    self.txn_index.rename_staged(segment.base_offset, SWAP_SUFFIX)
                segment.rename_files(SWAP_SUFFIX, log_last=True)
                committed = committed or segment.log_path.name.endswith(SWAP_SUFFIX)
            fsync_dir(self._dir)
            for segment in old:
                segment.unlink_files()
            for segment in new:
                segment.rename_files("", log_last=False)
                if segment.base_offset in moved:
                    self.txn_index.rename_staged(segment.base_offset, "")
            fsync_dir(self._dir)
        except (OSError, StorageError) as exc:
            if not committed:
                try:
                    for segment in new:  # back to .cleaned: the caller deletes them
                        segment.rename_files(CLEANED_SUFFIX, log_last=False)
                except StorageError:
                    pass  # a restart discards what is left (no .log was committed)
                self.txn_index.discard_staged()
                raise StorageError(f"{self._dir.name}: cannot swap in cleaned segments: {exc}") from exc
            self._fsync_failed = f"a segment swap failed in {self._dir}: {exc}"
            raise StorageError(f"{self._fsync_failed}; restart the broker to complete it") from exc
        with self._lock:
            for segment in new:
                segment.config = self._config
            self._segments[start : start + len(old)] = new
            self._bases[start : start + len(old)] = [s.base_offset for s in new]
            self._unsynced_sealed = [s for s in self._unsynced_sealed if not any(s is o for o in old)]
        self.txn_index.adopt_staged()
        self.txn_index.prune(self._bases, self._active.next_offset)
        logger.info("%s: replaced segments %s by %s", self._dir.name,
                    [s.base_offset for s in old], [s.base_offset for s in new])

    def _check_replacement(self, new: list[LogSegment], old: list[LogSegment]) -> int:
        """The position of ``old`` in the segment list, if :meth:`replace_segments`
        may swap ``new`` in for it; ValueError otherwise."""
        if not old or not new:
            raise ValueError("a replacement needs old and new segments")
        try:
            start = next(i for i, s in enumerate(self._segments) if s is old[0])
        except StopIteration:
            raise ValueError(f"{old[0].log_path.name} is not a segment of {self._dir.name}") from None
        run = self._segments[start : start + len(old)]
        if len(run) != len(old) or any(a is not b for a, b in zip(run, old)):
            raise ValueError("the old segments are not a contiguous run of the log")
        if any(s is self._active for s in old):
            raise ValueError("the active segment is never replaced")
        end = self._segments[start + len(old)].base_offset
        old_bases = [s.base_offset for s in old]
        if new[0].base_offset != old_bases[0]:
            raise ValueError(f"the replacement starts at {new[0].base_offset}, not at {old_bases[0]}")
        for i, segment in enumerate(new):
            limit = new[i + 1].base_offset if i + 1 < len(new) else end
            if segment.active or segment.file_suffix != CLEANED_SUFFIX or segment.directory != self._dir:
                raise ValueError(f"{segment.log_path}: not a sealed {CLEANED_SUFFIX} segment of this directory")
            if segment.base_offset not in old_bases or segment.base_offset >= limit:
                raise ValueError(f"new segment {segment.base_offset} is not at an old segment's base, in order")
            if segment.next_offset > limit:
                raise ValueError(f"new segment {segment.base_offset} holds offsets up to {segment.next_offset - 1}, "
                                 f"past {limit - 1}")
        return start

    # -- durability ---------------------------------------------------------------------------
    def flush(self, up_to_offset: int | None = None) -> None:
        """Make every offset below ``up_to_offset`` (default: the log end) durable.

        Thread-safe and may run in a worker thread while the owner appends.
        Callers share fsyncs: whoever finds an earlier round already covered
        its offset returns at once; otherwise one round fsyncs everything
        appended so far (so it also covers callers that queued behind it).
        Raises StorageError if fsync fails.
        """
        target = self._active.next_offset if up_to_offset is None else up_to_offset
        if self._closed or (self._recovery_point >= target and not self._unsynced_sealed):
            return
        if self._fsync_failed is not None:
            raise StorageError(f"{self._fsync_failed}; restart the broker to recover the log")
        with self._flush_lock:
            if self._closed or (self._recovery_point >= target and not self._unsynced_sealed):
                return
            if self._fsync_failed is not None:  # a round that failed while this one waited
                raise StorageError(f"{self._fsync_failed}; restart the broker to recover the log")
            with self._lock:
                active = self._active
                # Size before next offset: appends set the size last, so the bytes
                # counted here were written before the fsyncs below start.
                position = (active.base_offset, active.size)
                end = active.next_offset
                generation = self._generation
                start = self._recovery_point
                paths: list[Path] = []
                for segment in self._unsynced_sealed:
                    paths.extend(segment.flush_paths())
                for segment in self._segments:
                    if segment.next_offset > start and segment.base_offset < end and segment not in self._unsynced_sealed:
                        paths.extend(segment.flush_paths())
                self._unsynced_sealed = []
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            started = time.perf_counter()
            try:
                for path in paths:
                    fsync_path(path)
                    self.fsyncs += 1
                if dir_dirty:
                    fsync_dir(self._dir)
                    self.fsyncs += 1
            except OSError as exc:
                self._fsync_failed = f"fsync failed in {self._dir}: {exc.strerror or exc}"
                raise StorageError(self._fsync_failed) from exc
            if self._on_fsync is not None and (paths or dir_dirty):
                self._on_fsync(time.perf_counter() - started)
            with self._lock:
                if generation == self._generation:
                    if end > self._recovery_point:
                        self._recovery_point = end
                    self._recovery_position = position

    def close(self, *, flush: bool = True) -> None:
        """Seal the active segment (trimming its indexes), fsync everything unless
        ``flush`` is False, unmap. Idempotent. Memoryviews already handed out
        stay valid. Raises StorageError if the final fsync fails."""
        if self._closed:
            return
        with self._lock:
            active = self._active
            clean = not self.dirty and not self._dir_dirty
            active.seal()
            # A log with nothing unflushed skips its fsyncs (three per partition add
            # up to minutes at 100,000 partitions): its data is on disk, and an
            # index whose trim is lost is rebuilt at open (it fails its check).
            if not clean and active not in self._unsynced_sealed:
                self._unsynced_sealed.append(active)
        if flush:
            self.flush()
        with self._flush_lock:
            self._closed = True
            for segment in self._segments:
                segment.close()

    def __repr__(self) -> str:
        return (
            f"<PartitionLog {self._dir.name} offsets=[{self._log_start_offset}, "
            f"{self._active.next_offset}) recovery_point={self._recovery_point} "
            f"segments={len(self._segments)} size={self.size_bytes}"
            f"{' closed' if self._closed else ''}>"
        )


def _largest_timestamp(segment: LogSegment) -> int:
    if segment.max_timestamp >= 0:
        return segment.max_timestamp
    try:
        return int(os.stat(segment.log_path).st_mtime * 1000)
    except FileNotFoundError:
        return 0


def _validate_trusted(batch: BytesLike) -> BatchHeader:
    """Checks for broker-written batches (control batches allowed)."""
    header = check_batch(batch, 0)
    if header.size != len(batch):
        raise CorruptBatchError(f"batch length says {header.size} bytes but {len(batch)} were given")
    if header.records_count <= 0 or header.last_offset_delta + 1 != header.records_count:
        raise InvalidBatchError(f"lastOffsetDelta {header.last_offset_delta} does not match {header.records_count} records")
    return header


def _stamp_log_append_time(batch: BytesLike, base: int, leader_epoch: int, now_ms: int) -> bytearray:
    """A copy of ``batch`` with the LogAppendTime attribute, maxTimestamp = now,
    a new CRC, and the offset and epoch stamped."""
    buf = bytearray(batch)
    attributes = ATTRIBUTES_STRUCT.unpack_from(buf, ATTRIBUTES_AT)[0] | ATTR_LOG_APPEND_TIME
    ATTRIBUTES_STRUCT.pack_into(buf, ATTRIBUTES_AT, attributes)
    TIMESTAMP_STRUCT.pack_into(buf, MAX_TIMESTAMP_AT, now_ms)
    CRC_STRUCT.pack_into(buf, CRC_AT, crc32c.crc32c(memoryview(buf)[CRC_START:]))
    PREFIX_STRUCT.pack_into(buf, 0, base, len(buf) - LOG_OVERHEAD, leader_epoch)
    return buf
