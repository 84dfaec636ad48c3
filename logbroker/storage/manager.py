"""The data directory: topics, their partition logs, lock, checkpoints, shutdown marker.

Layout of ``data_dir`` (byte formats in docs/on-disk-format.md)::

    .lock                              fcntl.flock'ed while a LogManager is open; holds its pid
    clean-shutdown                     written by close(), removed at open
    topics.json                        topic metadata (name, UUID, partitions, overrides)
    recovery-point-offset-checkpoint   per partition: offsets below it are fsynced
    log-start-offset-checkpoint        per partition: the DeleteRecords position
    <topic>-<partition>/               one PartitionLog per directory

Crash safety: topics.json and the checkpoints are replaced atomically (temp
file, fsync, rename, fsync dir). A topic is created by creating and opening
its partitions first, then writing topics.json; a failure on the way (EMFILE,
ENOSPC, ENAMETOOLONG) removes what was created, and a crash leaves partition
directories of no topic, which open removes when they hold no records (those
that hold records are left alone, with one warning). Before creating
partitions the manager checks that the process has file descriptors to spare
(:data:`DESCRIPTORS_PER_PARTITION` each plus :data:`DESCRIPTOR_HEADROOM`) and
refuses with StorageError rather than run out half way.

A topic is deleted by renaming its directories to
``<topic>-<n>.<topic id>-delete`` (the topic cut short to fit 255 bytes, as
Kafka does), then writing topics.json, then removing them. The rename is the
commitment: open finishes a deletion whose directories it finds renamed
(their name carries the topic id), so a restart never brings a deleted topic
back, and removes every ``-delete`` directory left over.

Files and directories are created with ``config.log.file_mode`` and
``config.log.dir_mode`` (0600 and 0700 by default: topic data is private to
the broker's user).

Thread-safety: meant for one thread, except :meth:`flush_dirty` and
:meth:`checkpoint`, which may run in a worker thread concurrently with it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import re
import resource
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType

from logbroker.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from logbroker.storage.checkpoints import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    RECOVERY_POSITION_CHECKPOINT,
    CheckpointEntry,
    Checkpoints,
    read_checkpoint,
    read_positions,
)
from logbroker.storage.config import LogConfig, LogManagerConfig
from logbroker.storage.descriptors import WRITE_DESCRIPTORS
from logbroker.storage.mapbudget import MAPS, map_budget_for
from logbroker.storage.files import (
    DELETE_DIR_SUFFIX,
    LOG_SUFFIX,
    TEMP_SUFFIX,
    delete_dir_name,
    fsync_dir,
    lock_data_dir,
    parse_delete_dir_name,
    parse_partition_dir_name,
    parse_segment_name,
    partition_dir_name,
    write_atomically,
)
from logbroker.storage.loader import PartitionRecovery
from logbroker.storage.partition import PartitionLog
from logbroker.storage.unopened import PartitionFigures, UnopenedFigures, segment_files, unchanged_since_flush

__all__ = [
    "DESCRIPTORS_PER_PARTITION",
    "DESCRIPTOR_HEADROOM",
    "LogManager",
    "PartitionFigures",
    "RecoveryReport",
    "TopicInfo",
    "spare_descriptors",
    "validate_topic_name",
]

logger = logging.getLogger("logbroker.storage")

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
TOPICS_FILE = "topics.json"
LEGACY_DELETED_SUFFIX = ".deleted"  # how deleted directories were named before "-delete"
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
MAX_PARTITIONS = 100_000
#: File descriptors a partition a creation adds may hold: its active segment's
#: write descriptor, while within the budget of open files (maps keep none).
DESCRIPTORS_PER_PARTITION = 1
#: Descriptors that must stay free after a creation, for connections and files.
DESCRIPTOR_HEADROOM = 64
_SHOWN = 5  # names quoted in a summarised log line


def spare_descriptors() -> tuple[int, int] | None:
    """``(free, limit)``: how many more descriptors the process may open under its
    RLIMIT_NOFILE soft limit, and the limit; None when there is no limit or the
    open descriptors cannot be counted (no /proc/self/fd or /dev/fd)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            open_now = len(os.listdir(listing)) - 1  # less the descriptor listdir itself used
        except OSError:
            continue
        return max(limit - open_now, 0), limit
    return None


def _write_budget(configured: int) -> int:
    """``configured`` write descriptors, or half the RLIMIT_NOFILE soft limit if
    that is less (the other half is for connections and short-lived opens)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY or configured <= limit // 2:
        return configured
    budget = max(1, limit // 2)
    logger.info(
        "log.max.open.files=%d is more than half the open-files limit (%d): keeping at most %d segment files "
        "open for writing (raise the limit with ulimit -n or LimitNOFILE= to keep more)", configured, limit, budget,
    )
    return budget


def _sample(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def _holds_no_records(path: Path) -> bool:
    """True if a partition directory holds only empty logs and their indexes
    (what a creation that failed or was interrupted leaves)."""
    for child in path.iterdir():
        parsed = parse_segment_name(child.name)
        if parsed is None:
            return False  # another file (snapshot, checkpoint, .cleaning): keep it
        if parsed[1] == LOG_SUFFIX and child.stat().st_size > 0:
            return False
    return True


def validate_topic_name(name: str) -> None:
    """Raise InvalidTopicError unless ``name`` follows Kafka's topic name rules."""
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidTopicError(
            f"invalid topic name {name!r}: use 1 to 249 of [a-zA-Z0-9._-], not '.' or '..'"
        )


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic's metadata. ``configs`` are the explicit overrides (source TOPIC);
    every other config has its default (see TOPIC_CONFIG_DEFAULTS)."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the data directory did, for the server to log."""

    clean_shutdown: bool
    partitions: tuple[PartitionRecovery, ...]
    """The partitions opened (recovered) at once; the others open at first use."""
    removed: tuple[str, ...]
    duration_s: float
    total: int = 0
    """Partitions in the data directory."""
    checked: int = 0
    """Partitions whose files were compared with their recovery position (after a crash)."""

    @property
    def truncated_bytes(self) -> int:
        return sum(p.truncated_bytes for p in self.partitions)

    def __str__(self) -> str:
        scanned = sum(p.scanned_bytes for p in self.partitions)
        recovered = ""
        if not self.clean_shutdown:
            recovered = (f", {len(self.partitions)} of them recovered ({self.checked - len(self.partitions)} "
                         f"unchanged since their last fsync)")
        return (
            f"{'clean' if self.clean_shutdown else 'unclean'} shutdown before; {self.total} partitions"
            f"{recovered}, the rest open at first use; in {self.duration_s:.3f}s, scanned {scanned} bytes, "
            f"truncated {self.truncated_bytes} bytes, removed {len(self.removed)} leftovers"
        )


class LogManager:
    """Owns ``data_dir`` and every partition log in it; see the module docstring.

    Opening takes the directory lock (LogDirLockedError if another process
    holds it), loads topic metadata and checkpoints, and opens every
    partition (recovering them after an unclean shutdown); ``now_ms`` is the
    caller's clock. ``recovery_report`` says what recovery did. Use as a
    context manager or call :meth:`close`.

    ``on_fsync``: set it to a ``callable(seconds)`` to time every partition
    fsync round (it is called from the flushing thread; None: not timed).
    """

    def __init__(
        self,
        data_dir: Path | str,
        config: LogManagerConfig | None = None,
        now_ms: int | None = None,
    ) -> None:
        started = time.perf_counter()
        self.data_dir = Path(data_dir)
        self.config = config if config is not None else LogManagerConfig()
        WRITE_DESCRIPTORS.set_limit(_write_budget(self.config.max_open_files))
        MAPS.set_limit(map_budget_for(self.config.max_memory_maps))
        self.opened_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        self._lock = threading.RLock()
        self._closed = False
        self._topics: dict[str, TopicInfo] = {}
        self._log_configs: dict[str, LogConfig] = {}
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        # Partitions not opened yet (opened at first use): (recovery point, log
        # start offset, recovery position) from the checkpoints.
        self._unopened: dict[tuple[str, int], tuple[int, int, tuple[int, int] | None]] = {}
        # Figures of unopened partitions read from their directories; a row is
        # forgotten when its _unopened entry goes.
        self._figures = UnopenedFigures(self.data_dir)
        self.on_fsync: Callable[[float], None] | None = None
        # Called as on_open(topic, partition, log) when a partition opens at first
        # use (the broker restores its own state of the partition then).
        self.on_open: Callable[[str, int, PartitionLog], None] | None = None
        self._dir_mode, self._file_mode = self.config.log.dir_mode, self.config.log.file_mode
        self._checkpoints = Checkpoints(self.data_dir, self._file_mode)
        try:
            self.data_dir.mkdir(mode=self._dir_mode, parents=True, exist_ok=True)
            mode = stat.S_IMODE(self.data_dir.stat().st_mode)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.data_dir}: {exc}") from exc
        if mode & ~self._dir_mode:
            logger.warning(
                "data directory %s has mode %04o, more open than %04o: other users may read topic data; "
                "chmod %o it", self.data_dir, mode, self._dir_mode, self._dir_mode,
            )
        self._lock_fd: int | None = self._take_lock()
        try:
            self.recovery_report = self._open(started)
        except BaseException:
            self._release()
            raise

    # -- opening -------------------------------------------------------------------------
    def _take_lock(self) -> int:
        return lock_data_dir(self.data_dir / LOCK_FILE, self._file_mode, "stop that broker or choose another directory")

    def _open(self, started: float) -> RecoveryReport:
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        had_marker = marker.exists()
        clean = had_marker or not (self.data_dir / TOPICS_FILE).exists()  # a new directory
        self._load_topics()
        removed = self._remove_leftovers()
        try:
            recovery_points = read_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT)
        except StorageError as exc:
            logger.warning("%s; recovering every partition from offset 0", exc)
            recovery_points, clean = {}, False
        try:
            log_starts = read_checkpoint(self.data_dir / LOG_START_OFFSET_CHECKPOINT)
        except StorageError as exc:
            logger.warning("%s; log start offsets fall back to the first segments", exc)
            log_starts = {}
        try:
            positions = read_positions(self.data_dir / RECOVERY_POSITION_CHECKPOINT)
        except StorageError as exc:
            logger.warning("%s; recovering every partition with unflushed data from its recovery point", exc)
            positions = {}
        if had_marker:
            marker.unlink()
            fsync_dir(self.data_dir)  # a later crash must not look clean
        # Partitions open at first use. After a crash, those whose files end
        # where their last fsync left them are as good as cleanly closed; the
        # others are recovered now, so recovery costs what was unflushed.
        reports = []
        checked = 0
        for info in self._topics.values():
            for n in range(info.partitions):
                tp = (info.name, n)
                point, start = recovery_points.get(tp, 0), log_starts.get(tp, 0)
                # A position is trusted only beside its recovery point (written first).
                position = positions.get(tp) if tp in recovery_points else None
                if not clean:
                    checked += 1
                if clean or unchanged_since_flush(self.data_dir / partition_dir_name(info.name, n), position):
                    self._unopened[tp] = (point, start, position)
                    continue
                log = self._open_partition(info.name, n, point, start, False)
                reports.append(log.recovery_report)
        report = RecoveryReport(clean, tuple(reports), tuple(removed), time.perf_counter() - started,
                                total=len(self._unopened) + len(self._logs), checked=checked)
        self._log_recovery(report)
        self._checkpoints.reset(recovery_points, log_starts, positions)
        return report

    def _log_recovery(self, report: RecoveryReport) -> None:
        """A few lines whatever the number of partitions: the first recoveries
        that changed or scanned something, then the totals."""
        notable = [p for p in report.partitions if p.scanned_segments or p.changed_data or p.rebuilt_indexes]
        for part in notable[:_SHOWN]:
            logger.info("recovery: %s", part)
        if len(notable) > _SHOWN:
            logger.info("recovery: %d more partitions recovered (%d with data removed)", len(notable) - _SHOWN,
                        sum(1 for p in notable[_SHOWN:] if p.changed_data))
        logger.info("opened %s: %s", self.data_dir, report)

    def _open_partition(self, topic: str, n: int, recovery_point: int, log_start: int, clean: bool) -> PartitionLog:
        """Open one partition's log (recovering it unless ``clean``) and keep it."""
        log = PartitionLog(
            self.data_dir / partition_dir_name(topic, n),
            self._log_configs[topic],
            recovery_point=recovery_point,
            log_start_offset=log_start,
            clean_shutdown=clean,
            on_log_start_offset_change=partial(self._log_start_moved, (topic, n)),
            on_fsync=partial(self._fsynced, (topic, n)),
        )
        self._logs[(topic, n)] = log
        self._checkpoints.changed((topic, n))
        return log

    def _log_start_moved(self, tp: tuple[str, int], _offset: int) -> None:
        self._checkpoints.changed(tp)
        self.checkpoint()  # DeleteRecords is persisted at once

    def _fsynced(self, tp: tuple[str, int], seconds: float) -> None:
        # Its recovery point moves right after (checkpoint() reads a dirty log again later).
        self._checkpoints.changed(tp)
        hook = self.on_fsync
        if hook is not None:
            hook(seconds)

    def _remove_leftovers(self) -> list[str]:
        """Finish interrupted deletions, then remove deleted directories, temp
        files and partition directories of no topic that hold no records."""
        by_id = {info.topic_id: info for info in self._topics.values()}
        interrupted: set[str] = set()
        doomed: list[Path] = []
        removed: list[str] = []
        for entry in sorted(os.listdir(self.data_dir)):
            path = self.data_dir / entry
            if entry.endswith((DELETE_DIR_SUFFIX, LEGACY_DELETED_SUFFIX)) and path.is_dir():
                parsed = parse_delete_dir_name(entry)
                info = by_id.get(parsed[1]) if parsed is not None else None
                # A renamed partition of a listed topic whose own directory is
                # gone: that topic's deletion was interrupted.
                if info is not None and parsed is not None and not (self.data_dir / partition_dir_name(info.name, parsed[0])).exists():
                    interrupted.add(info.name)
                doomed.append(path)
            elif entry.endswith(TEMP_SUFFIX) and path.is_file():
                path.unlink()
                removed.append(entry)
        for name in sorted(interrupted):
            info = self._topics.pop(name)
            del self._log_configs[name]
            logger.warning("topic %s (%s) was being deleted when the broker stopped; finishing the deletion",
                           name, info.topic_id)
            try:
                doomed += self._rename_for_deletion(info)
            except OSError as exc:
                raise StorageError(f"cannot finish deleting topic {name}: {exc.strerror or exc}") from exc
        if interrupted:
            self._save_topics()
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed + self._remove_strays()

    def _remove_strays(self) -> list[str]:
        """Remove partition directories of no topic that hold no records (left by a
        creation that failed or was interrupted); warn once about the others."""
        empty, kept = [], []
        for entry in sorted(os.listdir(self.data_dir)):
            parsed = parse_partition_dir_name(entry)
            path = self.data_dir / entry
            if parsed is None or not path.is_dir():
                continue
            info = self._topics.get(parsed[0])
            if info is not None and parsed[1] < info.partitions:
                continue
            if _holds_no_records(path):
                shutil.rmtree(path, ignore_errors=True)
                empty.append(entry)
            else:
                kept.append(entry)
        if empty:
            fsync_dir(self.data_dir)
            logger.info("removed %d empty partition directories of no topic (a creation that failed or was "
                        "interrupted): %s", len(empty), _sample(empty))
        if kept:
            logger.warning("ignoring %d directories that look like partitions of no topic but hold records: %s; "
                           "move them out of %s", len(kept), _sample(kept), self.data_dir)
        return empty

    def _rename_for_deletion(self, info: TopicInfo) -> list[Path]:
        """Rename the topic's partition directories to their ``-delete`` names and
        fsync the data directory; the renamed paths. Raises OSError, having
        renamed back the ones it had renamed."""
        renamed: list[tuple[Path, Path]] = []
        try:
            for n in range(info.partitions):
                path = self.data_dir / partition_dir_name(info.name, n)
                target = self.data_dir / delete_dir_name(info.name, n, info.topic_id)
                try:
                    os.rename(path, target)
                except FileNotFoundError:
                    continue
                renamed.append((path, target))
            fsync_dir(self.data_dir)
        except OSError:
            for path, target in reversed(renamed):
                try:
                    os.rename(target, path)
                except OSError as exc:
                    logger.error("cannot rename %s back to %s: %s", target, path, exc)
            raise
        return [target for _, target in renamed]

    def _load_topics(self) -> None:
        path = self.data_dir / TOPICS_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            strays = sorted(
                e for e in os.listdir(self.data_dir)
                if parse_partition_dir_name(e) is not None and (self.data_dir / e).is_dir()
            )
            if strays:
                raise StorageError(
                    f"{path} is missing but {self.data_dir} holds partition directories ({_sample(strays)}); "
                    f"refusing to guess the topics: restore {TOPICS_FILE} or move them away"
                ) from None
            # A new directory: an empty topics.json from the start means that
            # partitions a crashed first creation leaves belong to no topic.
            self._save_topics()
            return
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read topic metadata {path}: {exc}") from exc
        try:
            for item in doc["topics"]:
                configs = {str(k): str(v) for k, v in item["configs"].items()}
                info = TopicInfo(item["name"], uuid.UUID(item["topic_id"]), int(item["partitions"]), configs)
                self._topics[info.name] = info
                self._log_configs[info.name] = LogConfig.from_topic_configs(configs, self.config.log)
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"malformed topic metadata {path}: {exc!r}") from exc

    def _save_topics(self) -> None:
        doc = {
            "version": 1,
            "topics": [
                {"name": t.name, "topic_id": str(t.topic_id), "partitions": t.partitions, "configs": dict(t.configs)}
                for t in sorted(self._topics.values(), key=lambda t: t.name)
            ],
        }
        write_atomically(self.data_dir / TOPICS_FILE, json.dumps(doc, indent=1).encode("utf-8"), self._file_mode)

    # -- topics ------------------------------------------------------------------------------
    def topics(self) -> dict[str, TopicInfo]:
        """Every topic by name (a copy)."""
        return dict(self._topics)

    def has_topic(self, name: str) -> bool:
        """True if ``name`` exists; no copy of the table (the produce path asks this)."""
        return name in self._topics

    def topic(self, name: str) -> TopicInfo:
        """Raises UnknownTopicError."""
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicError(f"unknown topic {name!r}") from None

    def log_config(self, name: str) -> LogConfig:
        """The effective LogConfig of a topic. Raises UnknownTopicError."""
        self.topic(name)
        return self._log_configs[name]

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str] | None = None,
        *,
        topic_id: uuid.UUID | None = None,
    ) -> TopicInfo:
        """Create a topic with ``partitions`` empty partitions and config overrides.

        Nothing is left behind when it fails (directories, topics.json entry).
        Raises InvalidTopicError, InvalidPartitionsError, InvalidConfigError,
        TopicExistsError, StorageError (also when the process lacks the file
        descriptors the partitions need; see :func:`spare_descriptors`).
        """
        self._check_open()
        validate_topic_name(name)
        if name in self._topics:
            raise TopicExistsError(f"topic {name!r} already exists")
        if not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(f"partitions must be between 1 and {MAX_PARTITIONS}, got {partitions!r}")
        overrides = {k: str(v) for k, v in (configs or {}).items()}
        log_config = LogConfig.from_topic_configs(overrides, self.config.log)
        info = TopicInfo(name, topic_id or uuid.uuid4(), partitions, overrides)
        with self._lock:
            self._check_descriptors(partitions, f"topic {name!r}")
            self._log_configs[name] = log_config
            try:
                self._open_new_partitions(name, range(partitions))
                self._topics[name] = info
                self._save_topics()
            except BaseException:
                self._topics.pop(name, None)
                self._log_configs.pop(name, None)
                self._discard_partitions(name, range(partitions))
                raise
        logger.info("created topic %s (%s) with %d partitions", name, info.topic_id, partitions)
        return info

    def _clear_stale_dir(self, name: str, n: int) -> None:
        path = self.data_dir / partition_dir_name(name, n)
        if path.exists():
            logger.warning("removing stale directory %s before creating %s-%d", path, name, n)
            doomed = path.with_name(delete_dir_name(name, n))
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its data, for every legal name.

        The partitions are closed and their directories renamed first; if a
        rename fails, the ones done are renamed back, the partitions reopened
        and StorageError raised, the topic whole. Once renamed, the deletion
        holds: a later failure to write topics.json is logged and the next
        open finishes it. Raises UnknownTopicError, StorageError.
        """
        self._check_open()
        with self._lock:
            info = self.topic(name)
            closed = []
            for n in range(info.partitions):
                self._checkpoints.changed((name, n))
                self._unopened.pop((name, n), None)
                self._figures.forget((name, n))
                log = self._logs.pop((name, n), None)
                if log is None:
                    continue
                closed.append((n, log))
                try:
                    log.close(flush=False)
                except (OSError, StorageError) as exc:
                    logger.warning("closing partition %s-%d for deletion: %s", name, n, exc)
            try:
                doomed = self._rename_for_deletion(info)
            except OSError as exc:
                for n, log in closed:
                    try:
                        self._open_partition(name, n, log.recovery_point, log.log_start_offset, False)
                    except StorageError as reopen:
                        logger.error("cannot reopen %s-%d after a failed deletion: %s", name, n, reopen)
                raise StorageError(f"cannot delete topic {name!r}: {exc.strerror or exc}") from exc
            del self._topics[name], self._log_configs[name]
            try:
                self._save_topics()
            except StorageError as exc:
                if not doomed:
                    raise
                logger.error("topic %s is deleted but %s; the next start finishes the deletion", name, exc)
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.checkpoint()
        except StorageError as exc:
            logger.warning("checkpoint after deleting topic %s: %s", name, exc)
        logger.info("deleted topic %s (%s)", name, info.topic_id)

    def add_partitions(self, name: str, new_total: int) -> TopicInfo:
        """Grow a topic to ``new_total`` partitions. Raises UnknownTopicError,
        InvalidPartitionsError (not an increase), StorageError."""
        self._check_open()
        info = self.topic(name)
        if not isinstance(new_total, int) or not info.partitions < new_total <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"topic {name!r} has {info.partitions} partitions; cannot change to {new_total!r}"
            )
        grown = TopicInfo(info.name, info.topic_id, new_total, dict(info.configs))
        added = range(info.partitions, new_total)
        with self._lock:
            self._check_descriptors(len(added), f"{len(added)} partitions of {name!r}")
            try:
                self._open_new_partitions(name, added)
                self._topics[name] = grown
                self._save_topics()
            except BaseException:
                self._topics[name] = info
                self._discard_partitions(name, added)
                raise
        return grown

    def _check_descriptors(self, partitions: int, what: str) -> None:
        """Raise StorageError unless ``partitions`` new partitions leave
        DESCRIPTOR_HEADROOM descriptors free (a creation that ran out of
        descriptors half way would fail anyway, and starve connections).
        Write descriptors never exceed ``config.max_open_files`` however many
        partitions there are, so no more than that many partitions count."""
        spare = spare_descriptors()
        if spare is None:
            return
        free, limit = spare
        room = max(0, WRITE_DESCRIPTORS.limit - WRITE_DESCRIPTORS.open_count())
        needed = min(partitions, room) * DESCRIPTORS_PER_PARTITION
        if needed + DESCRIPTOR_HEADROOM > free:
            raise StorageError(
                f"cannot create {what}: {partitions} partitions need {needed} file descriptors and "
                f"{DESCRIPTOR_HEADROOM} must stay free, but only {free} of the limit of {limit} are free; "
                f"raise the limit (ulimit -n, LimitNOFILE=) or create fewer partitions"
            )

    def _open_new_partitions(self, name: str, numbers: range) -> None:
        """Create and open empty partitions; the caller persists topics.json only
        once all of them opened, so a failure (EMFILE, ENOSPC) leaves no topic
        that cannot be opened again."""
        try:
            for n in numbers:
                self._clear_stale_dir(name, n)
                self._open_partition(name, n, 0, 0, True)
            fsync_dir(self.data_dir)
        except OSError as exc:
            raise StorageError(f"cannot create partitions of {name}: {exc.strerror or exc}") from exc

    def _discard_partitions(self, name: str, numbers: range) -> None:
        """Close and remove partitions a failed creation made (best effort: what
        stays is removed at the next open, as it holds no records)."""
        for n in numbers:
            self._checkpoints.changed((name, n))
            log = self._logs.pop((name, n), None)
            if log is not None:
                try:
                    log.close(flush=False)
                except (OSError, StorageError):
                    pass
            shutil.rmtree(self.data_dir / partition_dir_name(name, n), ignore_errors=True)
        try:
            fsync_dir(self.data_dir)
        except OSError:
            pass

    def alter_topic_configs(self, name: str, configs: dict[str, str]) -> TopicInfo:
        """Replace a topic's overrides with ``configs`` (names absent fall back to
        defaults). Raises UnknownTopicError, InvalidConfigError, StorageError."""
        self._check_open()
        info = self.topic(name)
        overrides = {k: str(v) for k, v in configs.items()}
        log_config = LogConfig.from_topic_configs(overrides, self.config.log)
        altered = TopicInfo(info.name, info.topic_id, info.partitions, overrides)
        with self._lock:
            self._topics[name] = altered
            try:
                self._save_topics()
            except StorageError:
                self._topics[name] = info
                raise
            self._log_configs[name] = log_config
            for n in range(info.partitions):
                log = self._logs.get((name, n))
                if log is not None:  # the others take it when they open
                    log.update_config(log_config)
        return altered

    def set_log_defaults(self, log: LogConfig) -> None:
        """Lay every topic's overrides over new defaults (dynamic broker configs),
        effective at once for each partition; the directory and file modes stay."""
        self._check_open()
        log = dataclasses.replace(log, dir_mode=self._dir_mode, file_mode=self._file_mode)
        with self._lock:
            self.config = dataclasses.replace(self.config, log=log)
            for name, info in self._topics.items():
                log_config = LogConfig.from_topic_configs(dict(info.configs), log)
                self._log_configs[name] = log_config
                for n in range(info.partitions):
                    plog = self._logs.get((name, n))
                    if plog is not None:  # the others take it when they open
                        plog.update_config(log_config)

    # -- partitions ----------------------------------------------------------------------------
    def get_partition(self, topic: str, partition: int) -> PartitionLog:
        """The log of one partition, opened now if this is its first use since
        the start. Raises UnknownTopicError, StorageError (it cannot be opened)."""
        tp = (topic, partition)
        log = self._logs.get(tp)
        if log is not None:
            return log
        with self._lock:
            log = self._logs.get(tp)
            if log is not None:
                return log
            unopened = self._unopened.get(tp)
            if unopened is None:
                raise UnknownTopicError(f"unknown topic-partition {topic}-{partition}") from None
            point, start, _ = unopened
            log = self._open_partition(topic, partition, point, start, True)
            del self._unopened[tp]
            self._figures.forget(tp)
            report = log.recovery_report
            if report.scanned_segments or report.changed_data or report.rebuilt_indexes:
                logger.warning("opened %s-%d at first use: %s", topic, partition, report)
            hook = self.on_open
            if hook is not None:
                hook(topic, partition, log)
        return log

    def iter_partitions(self, *, opened_only: bool = False) -> Iterator[tuple[tuple[str, int], PartitionLog]]:
        """``((topic, partition), log)`` for every partition (a snapshot), opening
        those not used yet; with ``opened_only``, only the partitions already
        open (what holds data not yet flushed, or state in memory)."""
        if not opened_only:
            with self._lock:
                waiting = list(self._unopened)
            for topic, n in waiting:
                try:
                    self.get_partition(topic, n)
                except UnknownTopicError:
                    continue  # deleted meanwhile
        with self._lock:
            items = list(self._logs.items())
        return iter(items)

    def partition_figures(self, topics: Iterable[str] | None = None) -> list[PartitionFigures]:
        """Size, offsets and damaged batches of every partition (of ``topics`` only,
        if given: names of no topic are ignored), sorted by topic and partition,
        without opening the partitions not used yet (a scrape must not open
        100,000 of them).

        A partition not opened yet has the figures its directory listing and
        checkpoint entry tell (see :mod:`logbroker.storage.unopened`), read once
        and kept until it opens or is deleted; only one whose last segment
        changed while the broker was stopped is opened. A partition whose
        figures cannot be read or that cannot be opened is left out (logged).
        Call it on the thread that uses the open logs (it reads them, and may
        open one)."""
        with self._lock:
            if topics is None:
                opened = list(self._logs.items())
                kept, missing = self._figures.select(self._unopened)
            else:
                wanted = [(name, n) for name in dict.fromkeys(topics) if name in self._topics
                          for n in range(self._topics[name].partitions)]
                opened = [(tp, self._logs[tp]) for tp in wanted if tp in self._logs]
                kept, missing = self._figures.select(self._unopened, [tp for tp in wanted if tp in self._unopened])
        # Outside the lock: flushing threads need it, and this lists a directory per partition.
        rows, read = self._figures.read(opened, missing, self.get_partition)
        if read:
            with self._lock:
                self._figures.keep(read, self._unopened)
        rows += kept
        rows += read
        rows.sort()
        return rows

    @property
    def open_partitions(self) -> int:
        """Partitions opened so far (the others open at first use)."""
        return len(self._logs)

    # -- maintenance -------------------------------------------------------------------------------
    def flush_dirty(self) -> int:
        """fsync every partition with unflushed data, then write the checkpoints.
        Returns the number of partitions flushed. Thread-safe.

        A partition whose fsync fails does not stop the others: the first
        failure is raised (StorageError) once every partition was tried and the
        checkpoints written.
        """
        flushed = 0
        failed: list[StorageError] = []
        with self._lock:
            # The logs alone (no (key, log) tuple per partition: a round must not
            # allocate in proportion to the partitions, whose garbage collection
            # scans the whole heap).
            logs = list(self._logs.values())
        for log in logs:
            if log.dirty:
                try:
                    log.flush()
                except StorageError as exc:
                    failed.append(exc)
                    continue
                flushed += 1
        self.checkpoint()
        if failed:
            raise failed[0]
        return flushed

    def apply_retention(self, now_ms: int) -> int:
        """Run retention on every partition; returns the number of segments deleted.
        A partition not opened yet is opened only if it has more than one
        segment (the active segment is never deleted)."""
        deleted = 0
        with self._lock:
            waiting = list(self._unopened)
        for topic, n in waiting:
            if segment_files(self.data_dir / partition_dir_name(topic, n)) > 1:
                try:
                    self.get_partition(topic, n)
                except UnknownTopicError:
                    continue
        for tp, log in self.iter_partitions(opened_only=True):
            removed = log.apply_retention(now_ms)
            if removed:
                self._checkpoints.changed(tp)  # its log start offset moved
                deleted += removed
        return deleted

    def checkpoint(self) -> None:
        """Write the recovery-point, log-start-offset and recovery-position
        checkpoints if they changed, reading only the partitions that were
        opened, flushed, created, deleted or moved their log start since the
        last write. Thread-safe. Raises StorageError."""
        with self._lock:
            if self._closed:
                return
            self._checkpoints.write(self._checkpoint_entry, self._all_partitions)

    def _checkpoint_entry(self, tp: tuple[str, int]) -> CheckpointEntry | None:
        log = self._logs.get(tp)
        if log is None:
            return self._unopened.get(tp)  # None: deleted
        if log.dirty:
            # A flush in another thread may be about to move its recovery point: read it again next time.
            self._checkpoints.changed(tp)
        return log.recovery_point, log.log_start_offset, log.recovery_position

    def _all_partitions(self) -> list[tuple[str, int]]:
        return [*self._unopened, *self._logs]

    def close(self) -> None:
        """Flush and close every partition, write the checkpoints and the clean-shutdown
        marker, release the lock. Idempotent. If a flush fails the marker is not
        written (the next open recovers) and StorageError is raised."""
        with self._lock:
            if self._closed:
                return
            try:
                for _, log in self.iter_partitions(opened_only=True):
                    log.close()
                self.checkpoint()
                write_atomically(self.data_dir / CLEAN_SHUTDOWN_FILE, b"", self._file_mode)
            finally:
                self._closed = True
                for _, log in self.iter_partitions(opened_only=True):
                    log.close(flush=False)
                self._release()
        logger.info("closed %s cleanly", self.data_dir)

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"log manager of {self.data_dir} is closed")

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<LogManager {self.data_dir} flush={self.config.flush} topics={len(self._topics)} "
            f"partitions={len(self._logs) + len(self._unopened)} open={len(self._logs)}"
            f"{' closed' if self._closed else ''}>"
        )
