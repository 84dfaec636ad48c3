"""What the files of a partition not opened since the start tell without opening it.

The LogManager opens a partition at its first use. Until then its files are
as its last fsync left them (a clean shutdown, or after a crash files that
end at their recovery position: :func:`unchanged_since_flush`), so its
figures (:class:`PartitionFigures`: size, log end and log start offsets)
follow from its directory listing and its checkpoint entry, and retention
can count its segments (:func:`segment_files`) to decide whether opening it
would delete any.

Thread-safety: the functions only read files. :class:`UnopenedFigures` has
no lock of its own: its owner, the LogManager, calls it under its lock,
except :meth:`UnopenedFigures.read`, which lists directories and is called
outside it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Container, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from logbroker.errors import StorageError, UnknownTopicError
from logbroker.storage.checkpoints import CheckpointEntry
from logbroker.storage.files import LOG_SUFFIX, parse_segment_name, partition_dir_name, segment_name
from logbroker.storage.partition import PartitionLog
from logbroker.storage.segment import REWRITE_SUFFIX
from logbroker.storage.swap import CLEANED_SUFFIX, SWAP_SUFFIX

__all__ = [
    "PartitionFigures",
    "UnopenedFigures",
    "log_figures",
    "segment_files",
    "unchanged_since_flush",
]

logger = logging.getLogger("logbroker.storage")

TopicPartition = tuple[str, int]
_UNFINISHED_SUFFIXES = (CLEANED_SUFFIX, SWAP_SUFFIX, REWRITE_SUFFIX)
_SHOWN = 5  # partitions quoted in a summarised log line


class PartitionFigures(NamedTuple):
    """One partition's figures (see :meth:`LogManager.partition_figures`)."""

    topic: str
    partition: int
    size_bytes: int
    log_end_offset: int
    log_start_offset: int
    damaged: int
    """Batches that reads found damaged (0 until the partition opens: nothing was read)."""


def log_figures(tp: TopicPartition, log: PartitionLog) -> PartitionFigures:
    """The figures of an open log. Raises what its properties raise."""
    return PartitionFigures(tp[0], tp[1], log.size_bytes, log.log_end_offset, log.log_start_offset, len(log.damaged))


def _figures_on_disk(directory: str, tp: TopicPartition, entry: CheckpointEntry) -> PartitionFigures | None:
    """What a partition not opened yet would report once opened, from its
    directory listing and checkpoint ``entry``: its size is that of its .log
    files (a segment file is never longer than its data), its log start what
    PartitionLog makes of the checkpointed one, and its log end its recovery
    point, as nothing was written after its last fsync (a clean shutdown, or
    files found at their recovery position). None if its last segment no
    longer ends at its recovery position (``logbroker repair`` cut it while
    the broker was stopped): only its log tells its end then. Raises OSError."""
    point, start, position = entry
    size, first, last, last_size = 0, -1, -1, 0
    with os.scandir(directory) as entries:
        for item in entries:
            parsed = parse_segment_name(item.name) if item.name.endswith(LOG_SUFFIX) else None
            if parsed is None or parsed[1] != LOG_SUFFIX:
                continue
            base, length = parsed[0], item.stat().st_size
            size += length
            if first < 0 or base < first:
                first = base
            if base > last:
                last, last_size = base, length
    if last < 0:  # opening creates an empty segment at the log start
        return PartitionFigures(tp[0], tp[1], 0, start, start, 0)
    if position is not None and position != (last, last_size):
        return None
    return PartitionFigures(tp[0], tp[1], size, point, min(max(start, first), point), 0)


def unchanged_since_flush(directory: Path, position: tuple[int, int] | None) -> bool:
    """True if the partition's files in ``directory`` end where its recovery
    ``position`` says (no segment after that one, and that one of that size):
    nothing was written after its last fsync, so it needs no recovery."""
    if position is None:
        return False
    base, size = position
    try:
        names = os.listdir(directory)
        if os.stat(directory / (segment_name(base) + LOG_SUFFIX)).st_size != size:
            return False
    except OSError:
        return False
    for name in names:
        if name.endswith(_UNFINISHED_SUFFIXES):
            return False  # an interrupted swap or rewrite: open it now to finish it
        parsed = parse_segment_name(name)
        if parsed is not None and parsed[0] > base:
            return False
    return True


def segment_files(directory: Path) -> int:
    """The .log files in a partition's ``directory`` (0 if it cannot be listed)."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for e in entries if e.name.endswith(LOG_SUFFIX))
    except OSError:
        return 0


def _sample(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


class UnopenedFigures:
    """The figures of partitions not opened yet, read from their directories
    once and kept until the partition opens or is deleted (its files do not
    change meanwhile). Which partitions are unopened is the owner's state,
    passed to each call; this holds only the rows it read."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = os.fspath(data_dir)  # joined as strings: a Path per partition costs more than its listing
        self._rows: dict[TopicPartition, PartitionFigures] = {}

    def select(
        self, unopened: Mapping[TopicPartition, CheckpointEntry], among: Iterable[TopicPartition] | None = None,
    ) -> tuple[list[PartitionFigures], list[tuple[TopicPartition, CheckpointEntry]]]:
        """The rows kept of the ``unopened`` partitions (of those in ``among``
        only, each of which must be in ``unopened``), and the partitions with
        no row yet, with their checkpoint entries (for :meth:`read`)."""
        if among is None:
            rows = list(self._rows.values())
            if len(rows) == len(unopened):  # every row is of an unopened partition
                return rows, []
            return rows, [(tp, entry) for tp, entry in unopened.items() if tp not in self._rows]
        rows, missing = [], []
        for tp in among:
            row = self._rows.get(tp)
            if row is None:
                missing.append((tp, unopened[tp]))
            else:
                rows.append(row)
        return rows, missing

    def read(
        self,
        opened: Iterable[tuple[TopicPartition, PartitionLog]],
        missing: Iterable[tuple[TopicPartition, CheckpointEntry]],
        open_log: Callable[[str, int], PartitionLog],
    ) -> tuple[list[PartitionFigures], list[PartitionFigures]]:
        """``(rows, read)``: ``rows`` of the ``opened`` logs and of the ``missing``
        partitions that ``open_log`` opened because only their log tells their
        end (see :func:`_figures_on_disk`), and the rows ``read`` from the
        directories of the others (to :meth:`keep`). A partition deleted
        meanwhile (UnknownTopicError) is left out; so is one whose figures
        cannot be read or that cannot be opened, logged in one line."""
        rows: list[PartitionFigures] = []
        failed: list[str] = []
        for tp, log in opened:
            try:
                rows.append(log_figures(tp, log))
            except (OSError, StorageError) as exc:
                failed.append(f"{tp[0]}-{tp[1]} ({exc})")
        if failed:
            logger.warning("cannot read the figures of %d open partitions: %s", len(failed), _sample(failed))
        read: list[PartitionFigures] = []
        failed = []
        for tp, entry in missing:
            try:
                row = _figures_on_disk(os.path.join(self._data_dir, partition_dir_name(*tp)), tp, entry)
                if row is None:
                    rows.append(log_figures(tp, open_log(*tp)))
                else:
                    read.append(row)
            except UnknownTopicError:
                continue  # deleted meanwhile
            except (OSError, StorageError) as exc:
                failed.append(f"{tp[0]}-{tp[1]} ({exc})")
        if failed:  # one line, not one per partition (EMFILE would fail thousands)
            logger.warning("cannot read the files of %d unopened partitions: %s", len(failed), _sample(failed))
        return rows, read

    def keep(self, read: Iterable[PartitionFigures], unopened: Container[TopicPartition]) -> None:
        """Keep the rows :meth:`read` returned of the partitions still ``unopened``
        (not one opened or deleted since)."""
        for row in read:
            if (row.topic, row.partition) in unopened:
                self._rows[row.topic, row.partition] = row

    def forget(self, tp: TopicPartition) -> None:
        """Drop the row of a partition that opened or was deleted."""
        self._rows.pop(tp, None)

    def __repr__(self) -> str:
        return f"<UnopenedFigures {self._data_dir} kept={len(self._rows)}>"
