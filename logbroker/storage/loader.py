"""Opening a partition directory: find segments, recover them if needed (Kafka's LogLoader).

After a clean shutdown every segment is loaded from its indexes without
scanning data (an index that is missing or fails its sanity check is rebuilt).
After an unclean one, every segment from the one containing the recovery
point onward is re-scanned by :meth:`LogSegment.recover`: each batch is checked
(length, magic, CRC-32C, increasing offsets) and both indexes are rebuilt.
Damage loses only what it touched: damaged batches followed by valid ones are
cut out of the file (the valid ones keep their offsets, leaving a gap as
compaction does), a torn tail is truncated, and the later segments are kept.
Each removed range is logged with the offsets it held.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from logbroker.storage.config import LogConfig
from logbroker.storage.damage import LostRange
from logbroker.storage.files import LOG_SUFFIX, parse_segment_name
from logbroker.storage.swap import finish_interrupted_swaps
from logbroker.storage.segment import REWRITE_SUFFIX, LogSegment

__all__ = ["PartitionRecovery", "load_segments"]

logger = logging.getLogger("logbroker.storage")


@dataclass(frozen=True, slots=True)
class PartitionRecovery:
    """What opening one partition did (for the server to log)."""

    directory: str
    clean: bool
    segments: int
    scanned_segments: int = 0
    scanned_batches: int = 0
    scanned_bytes: int = 0
    truncated_bytes: int = 0
    deleted_segments: tuple[int, ...] = ()
    rebuilt_indexes: tuple[int, ...] = ()
    removed_files: tuple[str, ...] = ()
    duration_s: float = 0.0
    log_end_offset: int = 0
    lost: tuple[LostRange, ...] = ()
    """Byte ranges removed as damaged, with the offsets they held."""

    @property
    def changed_data(self) -> bool:
        """True if recovery removed bytes or segments."""
        return bool(self.truncated_bytes or self.deleted_segments or self.lost)

    def __str__(self) -> str:
        parts = [f"{self.directory}: {self.segments} segments, log end {self.log_end_offset}"]
        if self.scanned_segments:
            parts.append(
                f"scanned {self.scanned_segments} segments ({self.scanned_batches} batches, "
                f"{self.scanned_bytes} bytes)"
            )
        if self.truncated_bytes:
            parts.append(f"truncated {self.truncated_bytes} invalid bytes")
        lost = [r for r in self.lost if r.records != 0]
        if lost:
            parts.append("lost " + "; ".join(r.describe() for r in lost))
        if self.deleted_segments:
            parts.append(f"deleted segments {list(self.deleted_segments)}")
        if self.rebuilt_indexes:
            parts.append(f"rebuilt indexes of {list(self.rebuilt_indexes)}")
        if self.removed_files:
            parts.append(f"removed {list(self.removed_files)}")
        parts.append(f"in {self.duration_s:.3f}s")
        return ", ".join(parts)


@dataclass(slots=True)
class _Tally:
    scanned: int = 0
    batches: int = 0
    bytes: int = 0
    truncated: int = 0
    deleted: list[int] = field(default_factory=list)
    rebuilt: list[int] = field(default_factory=list)
    lost: list[LostRange] = field(default_factory=list)


def load_segments(
    directory: Path,
    config: LogConfig,
    *,
    recovery_point: int,
    clean: bool,
    log_start_offset: int = 0,
) -> tuple[list[LogSegment], PartitionRecovery]:
    """Open the segments of ``directory``; the last one comes back active.

    ``clean``: the data directory was closed cleanly (no data scan).
    ``recovery_point``: offsets below it were fsynced; after an unclean
    shutdown scanning starts at the segment containing it. An empty directory
    gets one empty segment at ``log_start_offset``. Raises StorageError if the
    disk refuses.
    """
    started = time.perf_counter()
    cleaning = finish_interrupted_swaps(directory)
    bases, removed = _list_segments(directory)
    removed = [*removed, *cleaning]
    segments = [LogSegment.open(directory, base, config) for base in bases]
    tally = _Tally()
    first_scan = len(segments) if clean else max(bisect.bisect_right(bases, recovery_point) - 1, 0)
    kept: list[LogSegment] = []
    for i, segment in enumerate(segments):
        if kept and segment.base_offset < kept[-1].next_offset:
            logger.warning("%s overlaps the previous segment; deleting it and later ones", segment)
            _delete_from(segments, i, tally)
            break
        if i < first_scan and segment.load():
            kept.append(segment)
            continue
        if i < first_scan:
            tally.rebuilt.append(segment.base_offset)
        result = segment.recover()
        tally.scanned += 1
        tally.batches += result.batches
        tally.bytes += result.valid_bytes
        kept.append(segment)
        tally.truncated += result.truncated_bytes
        for lost in result.lost:
            _report_lost(lost, segments[i + 1].base_offset if i + 1 < len(segments) else None, tally)
    if not kept:
        kept.append(LogSegment.create(directory, log_start_offset, config))
    else:
        kept[-1].activate()
    report = PartitionRecovery(
        directory=str(directory),
        clean=clean,
        segments=len(kept),
        scanned_segments=tally.scanned,
        scanned_batches=tally.batches,
        scanned_bytes=tally.bytes,
        truncated_bytes=tally.truncated,
        deleted_segments=tuple(tally.deleted),
        rebuilt_indexes=tuple(tally.rebuilt),
        removed_files=tuple(removed),
        duration_s=time.perf_counter() - started,
        log_end_offset=kept[-1].next_offset,
        lost=tuple(tally.lost),
    )
    return kept, report


def _report_lost(lost: LostRange, next_base: int | None, tally: _Tally) -> None:
    """Log a removed range, bounding a torn tail by the next segment's base offset."""
    tail = lost.next_offset is None
    if tail and next_base is not None:
        lost = lost._replace(next_offset=max(next_base, lost.first_offset))
    tally.lost.append(lost)
    size = lost.end - lost.position
    if not tail:
        logger.warning("%s: removed %d damaged bytes at positions [%d, %d), between valid batches; lost %s",
                       lost.path, size, lost.position, lost.end, lost.offsets())
    elif lost.next_offset is None:
        logger.warning("%s: truncated %d invalid bytes at position %d (the log now ends at offset %d)",
                       lost.path, size, lost.position, lost.first_offset)
    else:
        logger.warning("%s: truncated %d invalid bytes at position %d; lost %s; the next segment is kept",
                       lost.path, size, lost.position, lost.offsets())


def _list_segments(directory: Path) -> tuple[list[int], list[str]]:
    """Base offsets of the .log files, after removing index files without a .log."""
    found: dict[int, set[str]] = {}
    removed = []
    for name in os.listdir(directory):
        if name.endswith(LOG_SUFFIX + REWRITE_SUFFIX):  # a rewrite a crash interrupted (the .log is intact)
            (directory / name).unlink(missing_ok=True)
            removed.append(name)
            continue
        parsed = parse_segment_name(name)
        if parsed is not None:
            found.setdefault(parsed[0], set()).add(parsed[1])
    for base, suffixes in found.items():
        if LOG_SUFFIX not in suffixes:
            for suffix in suffixes:
                path = directory / (f"{base:020d}" + suffix)
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return sorted(base for base, suffixes in found.items() if LOG_SUFFIX in suffixes), removed


def _delete_from(segments: list[LogSegment], start: int, tally: _Tally) -> None:
    for segment in segments[start:]:
        logger.warning("deleting %s: it overlaps the previous segment", segment.log_path)
        tally.deleted.append(segment.base_offset)
        segment.delete()
