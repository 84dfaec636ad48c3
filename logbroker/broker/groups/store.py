"""The internal topic ``__consumer_offsets``: one partition, compacted, created
on the first write. Append, replay and copy-forward compaction come from
:class:`~logbroker.broker.internal_topic.InternalTopic` (the log cleaner also
compacts it in the background). Record layout: see
:mod:`logbroker.broker.groups.offsets_log_format`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from logbroker.broker.internal_topic import FlushPoint as FlushPoint, InternalTopic
from logbroker.broker.markers import control_batch, is_commit_key


OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}


class OffsetsTopic(InternalTopic):
    """Appends the coordinator's records to the internal topic and reads them back.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read (the coordinator compares it with its live
    state to decide when to compact).
    """

    NAME = OFFSETS_TOPIC
    CONFIGS = OFFSETS_TOPIC_CONFIGS
    REWRITE_BATCH_RECORDS = 1000

    def replay(self) -> Iterator[OffsetsLogEntry]:
        """Every keyed record and every transaction marker from the log start, in
        offset order (keyless records skipped)."""
        for header, records in self.batches():
            if header.is_control:
                if header.producer_id >= 0 and records:
                    commit = is_commit_key(records[0].key)
                    yield OffsetsLogEntry(None, None, header.max_timestamp, header.producer_id, commit)
                continue
            producer_id = header.producer_id if header.is_transactional else -1
            for record in records:
                if record.key is not None:
                    yield OffsetsLogEntry(record.key, record.value, record.timestamp, producer_id, None)

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                      now_ms: int) -> FlushPoint:
        """Append the marker ending ``producer_id``'s transaction. Raises LogbrokerError."""
        batch = control_batch(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)
        return self.append_batch(batch, now_ms, control=True)


class OffsetsLogEntry(NamedTuple):
    """One replayed item: a record (``key``, ``value``, ``timestamp``, and
    ``producer_id`` >= 0 when it was written in that producer's transaction),
    or a transaction marker (``key`` None, ``marker`` True for a commit)."""

    key: bytes | None
    value: bytes | None
    timestamp: int
    producer_id: int
    marker: bool | None
