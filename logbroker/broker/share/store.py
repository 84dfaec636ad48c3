"""The internal topic ``__share_group_state``: append, replay, copy-forward compaction.

Like ``__consumer_offsets`` (:mod:`logbroker.broker.groups.store`): one
partition, ``cleanup.policy=compact``, created on the first write. The
storage engine has no log cleaner, so compaction copies the live records
(a snapshot of every share-partition, every group and config record)
forward into a fresh segment, fsyncs them and moves the log start past
everything older. A crash at any point leaves a replayable log.

Not thread-safe; the broker calls it from one thread. Record layout: see
:mod:`logbroker.broker.share.records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from logbroker.errors import UnknownTopicError
from logbroker.broker.replay import replay_records
from logbroker.records import BatchBuilder
from logbroker.storage import LogManager, PartitionLog

log = logging.getLogger("logbroker.share")

SHARE_STATE_TOPIC = "__share_group_state"
SHARE_STATE_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(100 * 1024 * 1024),
    "max.message.bytes": str(16 * 1024 * 1024),
}
_REWRITE_BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class FlushPoint:
    """fsync ``log`` below ``offset`` to make a write durable."""

    log: PartitionLog
    offset: int


class ShareStateTopic:
    """Appends the share coordinator's records and reads them back.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read.
    """

    def __init__(self, log_manager: LogManager) -> None:
        self._manager = log_manager
        self.record_count = 0

    def __repr__(self) -> str:
        return f"ShareStateTopic(records={self.record_count})"

    def _log(self, create: bool) -> PartitionLog | None:
        try:
            return self._manager.get_partition(SHARE_STATE_TOPIC, 0)
        except UnknownTopicError:
            if not create:
                return None
        self._manager.create_topic(SHARE_STATE_TOPIC, 1, dict(SHARE_STATE_TOPIC_CONFIGS))
        log.info("created internal topic %s", SHARE_STATE_TOPIC)
        return self._manager.get_partition(SHARE_STATE_TOPIC, 0)

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

    def replay(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every ``(key, value)`` from the log start, in offset order (keyless records skipped)."""
        self.record_count = 0
        plog = self._log(create=False)
        if plog is None:
            return
        for record in replay_records(plog):
            self.record_count += 1
            if record.key is not None:
                yield record.key, record.value

    def rewrite(self, records: Sequence[tuple[bytes, bytes | None]], now_ms: int, batch_records: int = 500) -> None:
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
        builder = BatchBuilder()
        for key, value in records:
            builder.append(value, key, timestamp_ms=now_ms)
            if len(builder) >= batch_records or builder.estimated_size() >= _REWRITE_BATCH_BYTES:
                plog.append(builder.build(), now_ms)
                builder = BatchBuilder()
        if len(builder):
            plog.append(builder.build(), now_ms)
        plog.flush()
        plog.delete_records_before(start)
        dropped = self.record_count
        self.record_count = len(records)
        log.info(
            "compacted %s: %d records before offset %d replaced by %d live records",
            SHARE_STATE_TOPIC, dropped, before, len(records),
        )
