"""The internal topic ``__consumer_offsets``: one partition, compacted, created
on the first write. Append, replay and copy-forward compaction come from
:class:`~logbroker.broker.internal_topic.InternalTopic` (the log cleaner also
compacts it in the background). Record layout: see
:mod:`logbroker.broker.groups.records`.
"""

from __future__ import annotations

from collections.abc import Iterator

from logbroker.broker.internal_topic import FlushPoint as FlushPoint, InternalTopic


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

    def replay(self) -> Iterator[tuple[bytes, bytes | None, int]]:
        """Every ``(key, value, timestamp)`` from the log start, in offset order (keyless skipped)."""
        for record in self.keyed_records():
            yield record.key, record.value, record.timestamp
