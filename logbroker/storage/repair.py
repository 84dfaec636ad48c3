"""Offline repair of a data directory: remove damaged batches (``logbroker repair``).

After a clean shutdown the broker opens segments without scanning them (as
Kafka does), so a batch damaged while it was stopped is only found when a
fetch reaches it (answered CORRUPT_MESSAGE). :func:`repair_data_dir` takes
the directory's lock (so it refuses while a broker runs on it), scans every
batch of every segment of every partition, and cuts out what is damaged the
way recovery does (:meth:`LogSegment.recover`): damaged batches followed by
valid ones are removed from the file, which keeps every later batch at its
offset; a torn tail is truncated; later segments are kept. The report names
each removed byte range and the offsets it held. ``dry_run`` only reports.

A torn tail of a partition's last segment is bounded by the recovery-point
checkpoint when the directory was shut down cleanly (it is then the old log
end); otherwise its offsets are reported as "from N on".
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from logbroker.errors import LogbrokerError, StorageError
from logbroker.storage.checkpoints import RECOVERY_POINT_CHECKPOINT, read_checkpoint
from logbroker.storage.swap import finish_interrupted_swaps
from logbroker.storage.config import LogConfig
from logbroker.storage.damage import LostRange, scan_batches
from logbroker.storage.files import (
    LOG_SUFFIX, fsync_dir, fsync_path, lock_data_dir, parse_partition_dir_name, parse_segment_name,
)
from logbroker.storage.manager import CLEAN_SHUTDOWN_FILE, LOCK_FILE, TOPICS_FILE
from logbroker.storage.segment import LogSegment

__all__ = ["PartitionRepair", "RepairReport", "repair_data_dir"]

logger = logging.getLogger("logbroker.storage")


@dataclass(frozen=True, slots=True)
class PartitionRepair:
    """The damage found in one partition: removed (or, in a dry run, to remove) ranges."""

    topic: str
    partition: int
    lost: tuple[LostRange, ...]

    @property
    def records(self) -> int | None:
        """Offsets lost in total; None if a torn tail's end is unknown."""
        counts = [r.records for r in self.lost]
        known = [c for c in counts if c is not None]
        return sum(known) if len(known) == len(counts) else None


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :func:`repair_data_dir` found and (unless ``dry_run``) removed."""

    data_dir: str
    dry_run: bool
    partitions: tuple[PartitionRepair, ...]  # only the damaged ones
    scanned_partitions: int
    scanned_segments: int
    scanned_bytes: int

    @property
    def damaged(self) -> bool:
        return bool(self.partitions)


def repair_data_dir(data_dir: Path | str, *, dry_run: bool = False) -> RepairReport:
    """Scan every segment under ``data_dir`` and remove damaged batches (see the module docstring).

    Raises LogDirLockedError while a broker (or another repair) holds the
    directory, StorageError if it is not a data directory or the disk refuses.
    """
    data_dir = Path(data_dir)
    if not (data_dir / TOPICS_FILE).is_file():
        raise StorageError(f"{data_dir} is not a logbroker data directory (no {TOPICS_FILE})")
    lock_fd = _lock(data_dir)
    try:
        report = _repair_locked(data_dir, dry_run)
    except OSError as exc:
        raise StorageError(f"cannot repair {data_dir}: {exc}") from exc
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    for part in report.partitions:
        for r in part.lost:
            logger.warning("%s %s-%d: %s", "would remove from" if dry_run else "removed from",
                           part.topic, part.partition, r.describe())
    return report


def _repair_locked(data_dir: Path, dry_run: bool) -> RepairReport:
    configs = _topic_configs(data_dir)
    clean = (data_dir / CLEAN_SHUTDOWN_FILE).exists()
    try:
        log_ends = read_checkpoint(data_dir / RECOVERY_POINT_CHECKPOINT) if clean else {}
    except StorageError:
        log_ends = {}
    damaged, partitions, segments, scanned = [], 0, 0, 0
    for entry in sorted(os.listdir(data_dir)):
        parsed = parse_partition_dir_name(entry)
        directory = data_dir / entry
        if parsed is None or not directory.is_dir():
            continue
        topic, number = parsed
        config = configs.get(topic, LogConfig())
        if not dry_run:
            finish_interrupted_swaps(directory)
        lost, count, size = _repair_partition(directory, config, log_ends.get(parsed), dry_run)
        partitions += 1
        segments += count
        scanned += size
        if lost:
            damaged.append(PartitionRepair(topic, number, tuple(lost)))
    return RepairReport(str(data_dir), dry_run, tuple(damaged), partitions, segments, scanned)


def _repair_partition(directory: Path, config: LogConfig, log_end: int | None,
                      dry_run: bool) -> tuple[list[LostRange], int, int]:
    """(ranges lost, segments scanned, bytes scanned) of one partition directory."""
    bases = sorted(
        parsed[0] for name in os.listdir(directory)
        if (parsed := parse_segment_name(name)) is not None and parsed[1] == LOG_SUFFIX
    )
    lost: list[LostRange] = []
    scanned = 0
    for i, base in enumerate(bases):
        path = directory / f"{base:020d}{LOG_SUFFIX}"
        found = _scan(path, base)
        scanned += path.stat().st_size
        if not found:
            continue
        bound = bases[i + 1] if i + 1 < len(bases) else log_end
        for r in found:
            if r.next_offset is None and bound is not None:
                r = r._replace(next_offset=max(bound, r.first_offset))
            lost.append(r)
        if not dry_run:
            segment = LogSegment.open(directory, base, config)
            try:
                segment.recover()
            finally:
                segment.close()
            for file in segment.paths():
                fsync_path(file)
    if lost and not dry_run:
        fsync_dir(directory)
    return lost, len(bases), scanned


def _scan(path: Path, base: int) -> tuple[LostRange, ...]:
    """The damaged ranges of one ``.log``, read through a private read-only map."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if not size:
            return ()
        with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return scan_batches(view, size, base, path=str(path)).lost
            finally:
                view.release()


def _topic_configs(data_dir: Path) -> dict[str, LogConfig]:
    """Each topic's LogConfig from topics.json (the defaults where it cannot be read:
    configs only shape the rebuilt indexes)."""
    try:
        doc = json.loads((data_dir / TOPICS_FILE).read_text(encoding="utf-8"))
        return {str(t["name"]): LogConfig.from_topic_configs({str(k): str(v) for k, v in t["configs"].items()})
                for t in doc["topics"]}
    except (OSError, ValueError, LookupError, TypeError, AttributeError, LogbrokerError) as exc:
        # damaged metadata: repair the segments with the default index settings
        logger.warning("cannot read topic configs from %s (%s); using the defaults", TOPICS_FILE, exc)
        return {}


def _lock(data_dir: Path) -> int:
    """The directory's lock, as the broker takes it; LogDirLockedError if held."""
    return lock_data_dir(data_dir / LOCK_FILE, 0o600, "stop that broker before repairing")
