"""The internal topic ``__share_group_state``: append, replay, copy-forward compaction.

Like ``__consumer_offsets`` (:mod:`logbroker.broker.groups.store`): one
partition, ``cleanup.policy=compact``, created on the first write; the log
cleaner compacts it in the background, and copy-forward compaction
(:class:`~logbroker.broker.internal_topic.InternalTopic`) copies the live records
(a snapshot of every share-partition, every group and config record)
forward into a fresh segment, fsyncs them and moves the log start past
everything older. A crash at any point leaves a replayable log.

Not thread-safe; the broker calls it from one thread. Record layout: see
:mod:`logbroker.broker.share.state_log_format`.
"""

from __future__ import annotations

from collections.abc import Iterator

from logbroker.broker.internal_topic import FlushPoint as FlushPoint, InternalTopic


SHARE_STATE_TOPIC = "__share_group_state"
SHARE_STATE_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(100 * 1024 * 1024),
    "max.message.bytes": str(16 * 1024 * 1024),
}


class ShareStateTopic(InternalTopic):
    """Appends the share coordinator's records and reads them back.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read.
    """

    NAME = SHARE_STATE_TOPIC
    CONFIGS = SHARE_STATE_TOPIC_CONFIGS
    REWRITE_BATCH_RECORDS = 500

    def replay(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every ``(key, value)`` from the log start, in offset order (keyless skipped)."""
        for record in self.keyed_records():
            if record.key is not None:  # keyed_records gives only these
                yield record.key, record.value
