"""Log compaction (``cleanup.policy=compact``): keep the latest record per key.

Cleaning runs in three steps so the slow part can leave the event loop:

1. :func:`plan_cleaning` (owner thread) picks the sealed segments old enough
   to clean (``min.compaction.lag.ms``) when their uncleaned share reaches
   ``min.cleanable.dirty.ratio``; it takes zero-copy views of them.
2. :func:`build_cleaned` (any thread) maps each key's xxh3-128 digest to its
   latest offset over that range, then writes the cleaned segments beside
   the old ones with the ``.cleaned`` file suffix (``<base>.log.cleaned``...).
   Consecutive segments are grouped as Kafka's ``groupSegmentsBySize`` does,
   by the size they clean down to: a group's output stays within
   ``segment.bytes``, its offset index within ``segment.index.bytes``, and
   its offsets within int32 of its base; each group becomes one segment at
   its first segment's base offset (a group of one segment that loses
   nothing is left alone). So small cleaned segments merge instead of piling
   up. Offsets are kept (gaps are fine; a rewritten batch keeps its
   lastOffsetDelta and producer fields), and tombstones (null values) are
   dropped once their batch's newest timestamp is older than
   ``delete.retention.ms``. The active segment is never touched.
   Transactional and control batches are kept whole and supersede nothing:
   whether their records count is decided by a marker later in the log,
   which the cleaner does not interpret (see docs/on-disk-format.md).
3. :func:`swap_cleaned` (owner thread) hands each run of adjacent groups to
   :meth:`PartitionLog.replace_segments`, which swaps them in crash-safely
   (``.cleaned`` -> ``.swap`` -> final names, the merged segments'
   aborted-transaction entries with them; a partition that opens after a
   crash discards or completes the swap, see :mod:`logbroker.storage.swap`).
   The cleaner never touches the partition log's segment list itself.

Readers keep whatever they hold: a replaced segment stays readable for as
long as it or a view of it is held.
"""

from __future__ import annotations

import logging
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import xxhash

from logbroker.errors import RecordsError, StorageError
from logbroker.records import (
    BatchBuilder,
    BatchHeader,
    BytesLike,
    Compression,
    Record,
    decode_batch,
    iter_batches,
    parse_header,
)
from logbroker.storage.config import LogConfig
from logbroker.storage.files import write_atomically
from logbroker.storage.index import OffsetIndex
from logbroker.storage.partition import PartitionLog
from logbroker.storage.segment import LogSegment, index_capacities
from logbroker.storage.swap import CLEANED_SUFFIX

__all__ = [
    "CleaningPlan",
    "CleanResult",
    "build_cleaned",
    "clean_partition",
    "plan_cleaning",
    "swap_cleaned",
]

logger = logging.getLogger("logbroker.storage")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CleaningPlan:
    """Sealed segments to clean, with views taken on the owner thread."""

    directory: Path
    config: LogConfig
    segments: tuple[LogSegment, ...]
    views: tuple[memoryview, ...]
    end_offset: int  # offsets below this are covered by the plan
    now_ms: int


@dataclass(frozen=True, slots=True)
class CleanResult:
    """What :func:`build_cleaned` wrote: ``cleaned``, sealed ``.cleaned`` segments
    (one per group of planned segments, at the group's first base offset);
    ``replaced``, the planned segments each one replaces (same order); and the
    statistics."""

    plan: CleaningPlan
    cleaned: tuple[LogSegment, ...]
    replaced: tuple[tuple[LogSegment, ...], ...]
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int

    @property
    def rewritten(self) -> tuple[int, ...]:
        """Base offsets of the segments written (one per group)."""
        return tuple(s.base_offset for s in self.cleaned)

    def discard(self) -> None:
        """Delete the cleaned segments (not swapped in)."""
        for segment in self.cleaned:
            segment.delete()

    def __str__(self) -> str:
        return (
            f"{self.plan.directory.name}: kept {self.records_after} of {self.records_before} records, "
            f"{self.bytes_after} of {self.bytes_before} bytes, "
            f"rewrote {sum(map(len, self.replaced))} segments into {len(self.cleaned)}"
        )


def read_checkpoint(directory: Path) -> int:
    """First offset not yet cleaned (0 when never cleaned)."""
    try:
        return int((directory / CHECKPOINT_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def plan_cleaning(plog: PartitionLog, now_ms: int, *, force: bool = False) -> CleaningPlan | None:
    """Choose what to clean in ``plog`` (a PartitionLog of a compacted topic), or None.

    ``force`` ignores the dirty ratio (not the compaction lag).
    """
    config: LogConfig = plog.config
    if not config.compacts:
        return None
    lag = config.min_compaction_lag_ms
    chosen: list[LogSegment] = []
    for segment in plog.sealed_segments():  # never the active segment
        if segment.next_offset <= plog.log_start_offset:
            continue  # retention or DeleteRecords will remove it
        if segment.max_timestamp >= 0 and now_ms - segment.max_timestamp < lag:
            break
        chosen.append(segment)
    if not chosen:
        return None
    total = sum(s.size for s in chosen)
    first_dirty = read_checkpoint(plog.directory)
    dirty = sum(s.size for s in chosen if s.next_offset > first_dirty)
    if not force and (not dirty or dirty / total < config.min_cleanable_dirty_ratio):
        return None
    return CleaningPlan(
        directory=plog.directory,
        config=config,
        segments=tuple(chosen),
        views=tuple(s.view() for s in chosen),
        end_offset=chosen[-1].next_offset,
        now_ms=now_ms,
    )


def _digest(key: bytes) -> int:
    return xxhash.xxh3_128_intdigest(key)


def _latest_offsets(views: Iterable[memoryview]) -> dict[int, int]:
    latest: dict[int, int] = {}
    for view in views:
        for pos, header in iter_batches(view):
            if header.is_control or header.is_transactional:
                continue
            for record in decode_batch(view, pos).records:
                if record.key is not None:
                    latest[_digest(record.key)] = record.offset
    return latest


def _rewrite(
    view: memoryview, header: BatchHeader, pos: int, keep: Callable[[Record], bool]
) -> bytes | memoryview | None:
    """The batch at ``pos`` with only the records ``keep`` accepts: a view of it
    when it keeps them all, new bytes when some go, None if none remain."""
    records = decode_batch(view, pos).records
    kept = [r for r in records if keep(r)]
    if len(kept) == len(records):
        return view[pos : pos + header.size]
    if not kept:
        return None
    builder = BatchBuilder(
        compression=Compression(header.compression),
        base_offset=header.base_offset,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        transactional=header.is_transactional,
        log_append_time=header.log_append_time,
        partition_leader_epoch=header.partition_leader_epoch,
    )
    for r in kept:
        builder.append(r.value, r.key, r.headers, r.timestamp, offset_delta=r.offset - header.base_offset)
    return builder.build(last_offset_delta=header.last_offset_delta)


# A kept batch: its bytes (a view of the planned segment when unchanged) and header.
_Batch = tuple[BytesLike, BatchHeader]


class _CleanedSegment(NamedTuple):
    batches: list[_Batch]  # what stays of one planned segment
    changed: bool  # some record went
    records_before: int


def _keep(latest: dict[int, int], drop_tombstones: bool, record: Record) -> bool:
    if record.key is not None and latest.get(_digest(record.key)) != record.offset:
        return False
    return not (drop_tombstones and record.value is None)


def _clean_segment(view: memoryview, latest: dict[int, int], tombstone_horizon: int) -> _CleanedSegment:
    """What stays of one planned segment (its view: ``view``)."""
    batches: list[_Batch] = []
    changed = False
    before = 0
    for pos, header in iter_batches(view):
        before += header.records_count
        if header.is_control or header.is_transactional:
            batches.append((view[pos : pos + header.size], header))
            continue
        # By the batch's newest timestamp, not the segment's: merging must not
        # keep an old tombstone alive for as long as newer data joins its segment.
        drop = 0 <= header.max_timestamp < tombstone_horizon
        data = _rewrite(view, header, pos, functools.partial(_keep, latest, drop))
        if isinstance(data, memoryview):
            batches.append((data, header))
            continue
        changed = True
        if data is not None:
            batches.append((data, parse_header(data)))
    return _CleanedSegment(batches, changed, before)


class _Group:
    """Consecutive planned segments cleaned into one segment at the first one's
    base offset (Kafka's groupSegmentsBySize, by the size they clean down to).

    The output is written as members join, except while the group is one
    segment that lost nothing: that one is left as it is unless another joins.
    """

    def __init__(self, directory: Path, config: LogConfig, first: LogSegment) -> None:
        self.base = first.base_offset
        self.members: list[LogSegment] = []
        self.size = 0
        self._directory = directory
        self._config = config
        self._index_capacity = index_capacities(config)[0] // OffsetIndex.ENTRY_SIZE
        self._index_entries = 0
        self._since_index = 0
        self._held: list[_Batch] = []  # the first member's batches while it may stay unchanged
        self._fresh: LogSegment | None = None

    def __repr__(self) -> str:
        return (f"_Group(base={self.base}, members={[s.base_offset for s in self.members]}, size={self.size}, "
                f"index_entries={self._index_entries}, written={self._fresh is not None})")

    def fits(self, segment: LogSegment, batches: list[_Batch]) -> bool:
        """True if ``segment``, cleaned down to ``batches``, may join: the output
        stays within segment.bytes, its offset index within segment.index.bytes,
        and its offsets within int32 of the base (indexes store them relative)."""
        if not self.members:
            return True
        if segment.next_offset - 1 - self.base > _INT32_MAX:
            return False
        if self.size + sum(len(data) for data, _ in batches) > self._config.segment_bytes:
            return False
        entries, _ = self._count_index_entries(batches)
        # The time index has one entry more than the offset index can: it fits too.
        return entries <= self._index_capacity

    def _count_index_entries(self, batches: list[_Batch]) -> tuple[int, int]:
        """Offset-index entries and bytes since the last entry after appending
        ``batches`` (LogSegment.append's rule: an entry once more than
        index.interval.bytes went in since the previous one)."""
        entries, since = self._index_entries, self._since_index
        for data, _ in batches:
            if since > self._config.index_interval_bytes:
                entries += 1
                since = 0
            since += len(data)
        return entries, since

    def add(self, segment: LogSegment, batches: list[_Batch], changed: bool) -> None:
        """Take ``segment`` in (``fits`` said yes). Raises StorageError."""
        self.members.append(segment)
        self.size += sum(len(data) for data, _ in batches)
        self._index_entries, self._since_index = self._count_index_entries(batches)
        if len(self.members) == 1 and not changed:
            self._held = batches
            return
        self._write(self._held)
        self._held = []
        self._write(batches)

    def _write(self, batches: list[_Batch]) -> None:
        if self._fresh is None:
            self._fresh = LogSegment.create(self._directory, self.base, self._config, file_suffix=CLEANED_SUFFIX)
        for data, header in batches:
            self._fresh.append([data], len(data), header.last_offset, header.max_timestamp)

    def finish(self) -> LogSegment | None:
        """The sealed ``.cleaned`` segment, or None when the group is one segment
        left as it is. Raises StorageError."""
        if self._fresh is None and len(self.members) > 1:
            self._write([])  # members that all cleaned down to nothing
        if self._fresh is not None:
            self._fresh.seal()
        return self._fresh

    def discard(self) -> None:
        if self._fresh is not None:
            self._fresh.delete()


def build_cleaned(plan: CleaningPlan) -> CleanResult:
    """Write the cleaned versions of the planned segments beside them, as sealed
    segments with the ``.cleaned`` file suffix: each run of consecutive segments
    that fits one segment (see :class:`_Group`) becomes one segment at the run's
    first base offset; a segment alone in its run that loses nothing stays.

    Safe to run in a worker thread: it reads only the plan's views of sealed
    segments and writes only ``.cleaned`` files. Raises StorageError (having
    deleted what it wrote).
    """
    latest = _latest_offsets(plan.views)
    tombstone_horizon = plan.now_ms - plan.config.delete_retention_ms
    groups: list[_Group] = []
    cleaned: list[LogSegment] = []
    replaced: list[tuple[LogSegment, ...]] = []
    before = after = bytes_after = 0
    try:
        for segment, view in zip(plan.segments, plan.views):
            batches, changed, records = _clean_segment(view, latest, tombstone_horizon)
            before += records
            after += sum(h.records_count for _, h in batches)
            if not groups or not groups[-1].fits(segment, batches):
                groups.append(_Group(plan.directory, plan.config, segment))
            groups[-1].add(segment, batches, changed)
        for group in groups:
            fresh = group.finish()
            if fresh is None:
                bytes_after += group.size
                continue
            cleaned.append(fresh)
            replaced.append(tuple(group.members))
            bytes_after += fresh.size
    except BaseException as exc:
        for group in groups:
            group.discard()
        if isinstance(exc, RecordsError):
            raise StorageError(f"cannot clean {plan.directory.name}: {exc}") from exc
        raise
    return CleanResult(
        plan=plan,
        cleaned=tuple(cleaned),
        replaced=tuple(replaced),
        records_before=before,
        records_after=after,
        bytes_before=sum(len(v) for v in plan.views),
        bytes_after=bytes_after,
    )


def swap_cleaned(plog: PartitionLog, result: CleanResult) -> bool:
    """Put the cleaned segments in place of the old ones (owner thread), through
    :meth:`PartitionLog.replace_segments`, one run of adjacent groups at a time.

    Returns False, discarding the cleaned files, when the log changed in a way
    that invalidates them (a planned segment was deleted or truncated, or the
    log closed). Raises StorageError if the disk refuses (the cleaned files not
    swapped in are deleted).
    """
    plan = result.plan
    if plog.closed:  # the topic was deleted meanwhile
        result.discard()
        return False
    current = {id(s) for s in plog.sealed_segments()}
    if any(id(s) not in current or s.size != len(v) for s, v in zip(plan.segments, plan.views)):
        result.discard()
        return False
    # Adjacent groups go in one replacement: (new segments, the old ones they replace).
    position = {id(s): i for i, s in enumerate(plog.sealed_segments())}
    runs: list[tuple[list[LogSegment], list[LogSegment]]] = []
    for fresh, olds in zip(result.cleaned, result.replaced):
        if runs and position[id(runs[-1][1][-1])] + 1 == position[id(olds[0])]:
            runs[-1][0].append(fresh)
            runs[-1][1].extend(olds)
        else:
            runs.append(([fresh], list(olds)))
    for i, (new, old) in enumerate(runs):
        try:
            plog.replace_segments(new, old)
        except BaseException:
            for rest, _ in runs[i:]:
                for fresh in rest:
                    if fresh.file_suffix == CLEANED_SUFFIX:
                        fresh.delete()
            raise
    write_atomically(plan.directory / CHECKPOINT_FILE, f"{plan.end_offset}\n".encode(), plan.config.file_mode)
    logger.info("compacted %s", result)
    return True


def clean_partition(plog: PartitionLog, now_ms: int, *, force: bool = False) -> CleanResult | None:
    """Plan, build and swap in one call (tests, tools). Returns None if nothing to do."""
    plan = plan_cleaning(plog, now_ms, force=force)
    if plan is None:
        return None
    result = build_cleaned(plan)
    swap_cleaned(plog, result)
    return result
