"""Log compaction (``cleanup.policy=compact``): keep the latest record per key.

Cleaning runs in three steps so the slow part can leave the event loop:

1. :func:`plan_cleaning` (owner thread) picks the sealed segments old enough
   to clean (``min.compaction.lag.ms``) when their uncleaned share reaches
   ``min.cleanable.dirty.ratio``; it takes zero-copy views of them.
2. :func:`build_cleaned` (any thread) maps each key's xxh3-128 digest to its
   latest offset over that range, then rewrites each segment whose batches
   lose records into ``<partition>/.cleaning/``. Offsets are kept (gaps are
   fine; a rewritten batch keeps its lastOffsetDelta and producer fields), and
   tombstones (null values) are dropped once their segment is older than
   ``delete.retention.ms``. The active segment is never touched.
   Transactional and control batches are kept whole and supersede nothing:
   whether their records count is decided by a marker later in the log,
   which the cleaner does not interpret (see docs/on-disk-format.md).
3. :func:`swap_cleaned` (owner thread) swaps the rewritten segments in: it
   writes ``.cleaning/SWAP``, renames each file over its old one and removes
   the directory. :func:`finish_interrupted_cleaning`, called when a partition
   opens, completes the renames if the marker exists and otherwise discards
   the half-built files, so a crash at any point leaves a readable log that
   holds either the old or the cleaned segments.

Readers keep whatever views they hold: a replaced segment's map stays alive
for as long as a view of it does.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import xxhash

from logbroker.errors import RecordsError, StorageError
from logbroker.records import BatchBuilder, BatchHeader, decode_batch, iter_batches, parse_header
from logbroker.storage.config import LogConfig
from logbroker.storage.files import (
    SEGMENT_SUFFIXES,
    fsync_dir,
    fsync_path,
    segment_name,
    write_atomically,
)
from logbroker.storage.segment import LogSegment

__all__ = [
    "CleaningPlan",
    "CleanResult",
    "build_cleaned",
    "clean_partition",
    "finish_interrupted_cleaning",
    "plan_cleaning",
    "swap_cleaned",
]

logger = logging.getLogger("logbroker.storage")

CLEANING_DIR = ".cleaning"
SWAP_MARKER = "SWAP"
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
    """What :func:`build_cleaned` wrote; ``rewritten`` are base offsets in ``.cleaning/``."""

    plan: CleaningPlan
    rewritten: tuple[int, ...]
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int

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


def plan_cleaning(plog, now_ms: int, *, force: bool = False) -> CleaningPlan | None:
    """Choose what to clean in ``plog`` (a PartitionLog of a compacted topic), or None.

    ``force`` ignores the dirty ratio (not the compaction lag).
    """
    config: LogConfig = plog.config
    if not config.compacts:
        return None
    lag = config.min_compaction_lag_ms
    chosen: list[LogSegment] = []
    for segment in plog._segments[:-1]:  # never the active segment
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


def _latest_offsets(views) -> dict[int, int]:
    latest: dict[int, int] = {}
    for view in views:
        for pos, header in iter_batches(view):
            if header.is_control or header.is_transactional:
                continue
            for record in decode_batch(view, pos).records:
                if record.key is not None:
                    latest[_digest(record.key)] = record.offset
    return latest


def _rewrite(view, header: BatchHeader, pos: int, keep) -> bytes | None:
    """The batch at ``pos`` with only the records ``keep`` accepts; None if none remain."""
    records = decode_batch(view, pos).records
    kept = [r for r in records if keep(r)]
    if len(kept) == len(records):
        return bytes(view[pos : pos + header.size])
    if not kept:
        return None
    builder = BatchBuilder(
        compression=header.compression,
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
    """Write the cleaned versions of the planned segments into ``.cleaning/``.

    Safe to run in a worker thread: it reads only the plan's views of sealed
    segments and writes only inside ``.cleaning/``. Raises StorageError.
    """
    cleaning = plan.directory / CLEANING_DIR
    shutil.rmtree(cleaning, ignore_errors=True)
    cleaning.mkdir(mode=plan.config.dir_mode)
    latest = _latest_offsets(plan.views)
    tombstone_horizon = plan.now_ms - plan.config.delete_retention_ms
    rewritten: list[int] = []
    before = after = bytes_after = 0
    try:
        for segment, view in zip(plan.segments, plan.views):
            drop_tombstones = 0 <= segment.max_timestamp < tombstone_horizon

            def keep(record, _drop=drop_tombstones) -> bool:
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
            bytes_after += _write_segment(cleaning, segment.base_offset, plan.config, batches)
            rewritten.append(segment.base_offset)
    except RecordsError as exc:
        shutil.rmtree(cleaning, ignore_errors=True)
        raise StorageError(f"cannot clean {plan.directory.name}: {exc}") from exc
    except BaseException:
        shutil.rmtree(cleaning, ignore_errors=True)
        raise
    return CleanResult(
        plan=plan,
        rewritten=tuple(rewritten),
        records_before=before,
        records_after=after,
        bytes_before=sum(len(v) for v in plan.views),
        bytes_after=bytes_after,
    )


def _header_of(data: bytes) -> BatchHeader:
    return parse_header(data)


def _write_segment(directory: Path, base: int, config: LogConfig, batches) -> int:
    segment = LogSegment.create(directory, base, config)
    size = 0
    try:
        for data, header in batches:
            segment.append([data], len(data), header.last_offset, header.max_timestamp)
            size += len(data)
        segment.close()
        for path in segment.paths():
            fsync_path(path)
    except BaseException:
        segment.close()
        raise
    return size


def swap_cleaned(plog, result: CleanResult) -> bool:
    """Put the cleaned segments in place of the old ones (owner thread).

    Returns False, discarding the cleaned files, when the log changed in a way
    that invalidates them (a planned segment was deleted or truncated).
    """
    plan = result.plan
    directory = plan.directory
    cleaning = directory / CLEANING_DIR
    if plog._closed:  # the topic was deleted meanwhile
        shutil.rmtree(cleaning, ignore_errors=True)
        return False
    current = {id(s) for s in plog._segments}
    stale = any(id(s) not in current or s.size != len(v) for s, v in zip(plan.segments, plan.views))
    if stale:
        shutil.rmtree(cleaning, ignore_errors=True)
        return False
    if result.rewritten:
        by_base = {s.base_offset: s for s in plan.segments}
        with plog._lock:
            write_atomically(cleaning / SWAP_MARKER, b"swap\n", plan.config.file_mode)
            for base in result.rewritten:
                by_base[base].close()
                for suffix in SEGMENT_SUFFIXES:
                    name = segment_name(base) + suffix
                    os.replace(cleaning / name, directory / name)
            fsync_dir(directory)
            for base in result.rewritten:
                fresh = LogSegment.open(directory, base, plan.config)
                if not fresh.load():
                    fresh.recover()
                index = plog._segments.index(by_base[base])
                plog._segments[index] = fresh
                plog._unsynced_sealed = [s for s in plog._unsynced_sealed if s is not by_base[base]]
    shutil.rmtree(cleaning, ignore_errors=True)
    write_atomically(directory / CHECKPOINT_FILE, f"{plan.end_offset}\n".encode(), plan.config.file_mode)
    logger.info("compacted %s", result)
    return True


def clean_partition(plog, now_ms: int, *, force: bool = False) -> CleanResult | None:
    """Plan, build and swap in one call (tests, tools). Returns None if nothing to do."""
    plan = plan_cleaning(plog, now_ms, force=force)
    if plan is None:
        return None
    result = build_cleaned(plan)
    swap_cleaned(plog, result)
    return result


def finish_interrupted_cleaning(directory: Path) -> list[str]:
    """Complete or discard a cleaning cut short by a crash; returns what was done."""
    cleaning = directory / CLEANING_DIR
    if not cleaning.is_dir():
        return []
    done = []
    if (cleaning / SWAP_MARKER).exists():
        for path in sorted(cleaning.iterdir()):
            if path.name != SWAP_MARKER and path.is_file():
                os.replace(path, directory / path.name)
                done.append(f"completed swap of {path.name}")
        fsync_dir(directory)
    else:
        done.append("discarded an unfinished cleaning")
    shutil.rmtree(cleaning, ignore_errors=True)
    for line in done:
        logger.warning("%s: %s", directory.name, line)
    return done
