"""Log compaction (``cleanup.policy=compact``): keep the latest record per key.

Cleaning runs in three steps so the slow part can leave the event loop:

1. :func:`plan_cleaning` (owner thread) picks the sealed segments old enough
   to clean (``min.compaction.lag.ms``) when their uncleaned share reaches
   ``min.cleanable.dirty.ratio``; it takes zero-copy views of them.
2. :func:`build_cleaned` (any thread) maps each key's xxh3-128 digest to its
   latest offset over that range, then rewrites each segment whose batches
   lose records into a sealed segment beside it with the ``.cleaned`` file
   suffix (``<base>.log.cleaned``...). Offsets are kept (gaps are
   fine; a rewritten batch keeps its lastOffsetDelta and producer fields), and
   tombstones (null values) are dropped once their segment is older than
   ``delete.retention.ms``. The active segment is never touched.
   Transactional and control batches are kept whole and supersede nothing:
   whether their records count is decided by a marker later in the log,
   which the cleaner does not interpret (see docs/on-disk-format.md).
3. :func:`swap_cleaned` (owner thread) hands each run of rewritten segments
   to :meth:`PartitionLog.replace_segments`, which swaps them in crash-safely
   (``.cleaned`` -> ``.swap`` -> final names; a partition that opens after a
   crash discards or completes the swap, see :mod:`logbroker.storage.swap`).
   The cleaner never touches the partition log's segment list itself.

Readers keep whatever they hold: a replaced segment stays readable for as
long as it or a view of it is held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from logbroker.errors import RecordsError, StorageError
from logbroker.records import BatchBuilder, BatchHeader, Compression, Record, decode_batch, iter_batches, parse_header
from logbroker.storage.config import LogConfig
from logbroker.storage.files import write_atomically
from logbroker.storage.partition import PartitionLog
from logbroker.storage.segment import LogSegment
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
    (one per rewritten segment, at its base offset), and the statistics."""

    plan: CleaningPlan
    cleaned: tuple[LogSegment, ...]
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int

    @property
    def rewritten(self) -> tuple[int, ...]:
        """Base offsets of the segments rewritten."""
        return tuple(s.base_offset for s in self.cleaned)

    def discard(self) -> None:
        """Delete the cleaned segments (not swapped in)."""
        for segment in self.cleaned:
            segment.delete()

    def __str__(self) -> str:
        return (
            f"{self.plan.directory.name}: kept {self.records_after} of {self.records_before} records, "
            f"{self.bytes_after} of {self.bytes_before} bytes, rewrote {len(self.rewritten)} segments"
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


def _rewrite(view: memoryview, header: BatchHeader, pos: int, keep: Callable[[Record], bool]) -> bytes | None:
    """The batch at ``pos`` with only the records ``keep`` accepts; None if none remain."""
    records = decode_batch(view, pos).records
    kept = [r for r in records if keep(r)]
    if len(kept) == len(records):
        return bytes(view[pos : pos + header.size])
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


def build_cleaned(plan: CleaningPlan) -> CleanResult:
    """Write the cleaned versions of the planned segments beside them, as sealed
    segments with the ``.cleaned`` file suffix.

    Safe to run in a worker thread: it reads only the plan's views of sealed
    segments and writes only ``.cleaned`` files. Raises StorageError (having
    deleted what it wrote).
    """
    latest = _latest_offsets(plan.views)
    tombstone_horizon = plan.now_ms - plan.config.delete_retention_ms
    cleaned: list[LogSegment] = []
    before = after = bytes_after = 0
    try:
        for segment, view in zip(plan.segments, plan.views):
            drop_tombstones = 0 <= segment.max_timestamp < tombstone_horizon

            def keep(record: Record, _drop: bool = drop_tombstones) -> bool:
                if record.key is not None and latest.get(_digest(record.key)) != record.offset:
                    return False
                return not (_drop and record.value is None)

            batches: list[tuple[bytes, BatchHeader]] = []
            changed = False
            for pos, header in iter_batches(view):
                before += header.records_count
                if header.is_control or header.is_transactional:
                    batches.append((bytes(view[pos : pos + header.size]), header))
                    after += header.records_count
                    continue
                data = _rewrite(view, header, pos, keep)
                if data is None or len(data) != header.size:
                    changed = True
                if data is not None:
                    kept_header = header if len(data) == header.size else _header_of(data)
                    batches.append((data, kept_header))
                    after += kept_header.records_count
            if not changed:
                bytes_after += len(view)
                continue
            fresh = _write_segment(plan.directory, segment.base_offset, plan.config, batches)
            cleaned.append(fresh)
            bytes_after += fresh.size
    except RecordsError as exc:
        for fresh in cleaned:
            fresh.delete()
        raise StorageError(f"cannot clean {plan.directory.name}: {exc}") from exc
    except BaseException:
        for fresh in cleaned:
            fresh.delete()
        raise
    return CleanResult(
        plan=plan,
        cleaned=tuple(cleaned),
        records_before=before,
        records_after=after,
        bytes_before=sum(len(v) for v in plan.views),
        bytes_after=bytes_after,
    )


def _header_of(data: bytes) -> BatchHeader:
    return parse_header(data)


def _write_segment(
    directory: Path, base: int, config: LogConfig, batches: list[tuple[bytes, BatchHeader]],
) -> LogSegment:
    """A sealed ``.cleaned`` segment at ``base`` holding ``batches``."""
    segment = LogSegment.create(directory, base, config, file_suffix=CLEANED_SUFFIX)
    try:
        for data, header in batches:
            segment.append([data], len(data), header.last_offset, header.max_timestamp)
        segment.seal()
    except BaseException:
        segment.delete()
        raise
    return segment


def swap_cleaned(plog: PartitionLog, result: CleanResult) -> bool:
    """Put the cleaned segments in place of the old ones (owner thread), through
    :meth:`PartitionLog.replace_segments`, one run of adjacent segments at a time.

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
    by_base = {s.base_offset: s for s in plan.segments}
    sealed = plog.sealed_segments()
    position = {id(s): i for i, s in enumerate(sealed)}
    runs: list[list[LogSegment]] = []
    for fresh in result.cleaned:
        old = by_base[fresh.base_offset]
        if runs and position[id(by_base[runs[-1][-1].base_offset])] + 1 == position[id(old)]:
            runs[-1].append(fresh)
        else:
            runs.append([fresh])
    for i, run in enumerate(runs):
        try:
            plog.replace_segments(run, [by_base[s.base_offset] for s in run])
        except BaseException:
            for rest in runs[i:]:
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
