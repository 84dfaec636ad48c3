"""The internal topic ``__consumer_offsets``: append, replay, copy-forward compaction.

One partition (a single node has one coordinator, so one totally ordered log
is enough and replay is a single scan), ``cleanup.policy=compact``, created
on the first write. The storage engine has no log cleaner, so this unit
compacts by copying forward: it rolls the segment, appends the live records
(the coordinator's current state), fsyncs them and moves the log start past
everything older, which deletes the old segments. A crash at any point
leaves a log whose replay gives the same state (the copies are the latest
values, and the old records are only dropped once the copies are durable).

Not thread-safe; the broker calls it from one thread. Record layout: see
:mod:`logbroker.broker.groups.records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from logbroker.errors import UnknownTopicError
from logbroker.broker.replay import replay_records
from logbroker.records import BatchBuilder
from logbroker.storage import LogManager, PartitionLog

log = logging.getLogger("logbroker.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}


@dataclass(frozen=True, slots=True)
class FlushPoint:
    """fsync ``log`` below ``offset`` to make a write durable."""

    log: PartitionLog
    offset: int


class OffsetsTopic:
    """Appends the coordinator's records to the internal topic and reads them back.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read (the coordinator compares it with its live
    state to decide when to compact).
    """

    def __init__(self, log_manager: LogManager) -> None:
        self._manager = log_manager
        self.record_count = 0

    def __repr__(self) -> str:
        return f"OffsetsTopic(records={self.record_count})"

    def _log(self, create: bool) -> PartitionLog | None:
        try:
            return self._manager.get_partition(OFFSETS_TOPIC, 0)
        except UnknownTopicError:
            if not create:
                return None
        self._manager.create_topic(OFFSETS_TOPIC, 1, dict(OFFSETS_TOPIC_CONFIGS))
        log.info("created internal topic %s", OFFSETS_TOPIC)
        return self._manager.get_partition(OFFSETS_TOPIC, 0)

    def append(self, records: Sequence[tuple[bytes, bytes | None]], now_ms: int) -> FlushPoint:
        """Append ``(key, value)`` records as one batch; returns where to fsync.

        Creates the topic on first use. Raises LogbrokerError (StorageError,
        BatchTooLargeError...) with nothing written.
        """
        plog = self._log(create=True)
        builder = BatchBuilder()
        for key, value in records:
            builder.append(value, key, timestamp_ms=now_ms)
        info = plog.append(builder.build(), now_ms)
        self.record_count += len(records)
        return FlushPoint(plog, info.last_offset + 1)

    def replay(self) -> Iterator[tuple[bytes, bytes | None, int]]:
        """Every ``(key, value, timestamp)`` from the log start, in offset order.

        Records without a key are skipped. Raises CorruptBatchError if a
        batch that storage accepted does not decode.
        """
        self.record_count = 0
        plog = self._log(create=False)
        if plog is None:
            return
        for record in replay_records(plog):
            self.record_count += 1
            if record.key is not None:
                yield record.key, record.value, record.timestamp

    def rewrite(self, records: Sequence[tuple[bytes, bytes | None]], now_ms: int, batch_records: int = 1000) -> None:
        """Copy-forward compaction: make ``records`` (the live state) the whole log.

        Blocks for one fsync of the copies. Raises LogbrokerError; on error
        the old records are kept and the log stays replayable.
        """
        plog = self._log(create=False)
        if plog is None:
            return
        before = plog.log_end_offset
        plog.roll()
        start = plog.log_end_offset
        for i in range(0, len(records), batch_records):
            builder = BatchBuilder()
            for key, value in records[i : i + batch_records]:
                builder.append(value, key, timestamp_ms=now_ms)
            plog.append(builder.build(), now_ms)
        plog.flush()
        plog.delete_records_before(start)
        dropped = self.record_count
        self.record_count = len(records)
        log.info(
            "compacted %s: %d records before offset %d replaced by %d live records",
            OFFSETS_TOPIC, dropped, before, len(records),
        )
