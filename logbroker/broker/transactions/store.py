"""The internal topic ``__transaction_state``: append, replay, copy-forward compaction.

Like ``__consumer_offsets`` (:mod:`logbroker.broker.groups.store`): one
partition, ``cleanup.policy=compact``, created on the first write; the log
cleaner compacts it in the background, and the coordinator copies its live
records forward when the log holds twice as many records as there are
transactional ids (:class:`~logbroker.broker.internal_topic.InternalTopic`).

Not thread-safe; the broker calls it from one thread. Record layout: see
:mod:`logbroker.broker.transactions.transaction_log_format`.
"""

from __future__ import annotations

from collections.abc import Iterator

from logbroker.broker.internal_topic import FlushPoint as FlushPoint, InternalTopic

TRANSACTION_STATE_TOPIC = "__transaction_state"
TRANSACTION_STATE_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(100 * 1024 * 1024),  # Kafka's transaction.state.log.segment.bytes
}


class TransactionStateTopic(InternalTopic):
    """Appends the transaction coordinator's records and reads them back.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read.
    """

    NAME = TRANSACTION_STATE_TOPIC
    CONFIGS = TRANSACTION_STATE_TOPIC_CONFIGS
    REWRITE_BATCH_RECORDS = 1000

    def replay(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every ``(key, value)`` from the log start, in offset order (keyless skipped)."""
        for record in self.keyed_records():
            if record.key is not None:  # keyed_records gives only these
                yield record.key, record.value
