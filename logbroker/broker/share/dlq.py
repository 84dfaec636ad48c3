"""Dead-letter copies of archived share-group records (KIP-1191).

When a share group names a dead-letter topic (group config
``errors.deadletterqueue.topic.name``), a record it archives because a
consumer rejected it or because it reached the delivery-count limit is
copied there: same key, value, headers and timestamp, plus context headers
(:data:`DLQ_HEADERS`). Not a hot path: this decodes the source batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from logbroker.errors import LogbrokerError
from logbroker.records import BatchBuilder, decode_batches
from logbroker.storage import PartitionLog

HEADER_GROUP = "__dlq.errors.group.id"
HEADER_TOPIC = "__dlq.errors.topic"
HEADER_PARTITION = "__dlq.errors.partition"
HEADER_OFFSET = "__dlq.errors.offset"
HEADER_DELIVERY_COUNT = "__dlq.errors.delivery.count"
HEADER_REASON = "__dlq.errors.reason"
DLQ_HEADERS = (HEADER_GROUP, HEADER_TOPIC, HEADER_PARTITION, HEADER_OFFSET, HEADER_DELIVERY_COUNT, HEADER_REASON)
"""Context headers added to every dead-letter record; values are UTF-8 text
(the reason is ``REJECTED`` or ``DELIVERY_COUNT_EXCEEDED``)."""

_READ_BYTES = 1 << 20


def dead_letter_batch(
    source: PartitionLog, group_id: str, topic: str, partition: int,
    items: Sequence[tuple[int, int, str]], *, copy_record: bool = True,
) -> bytes | None:
    """One batch holding a copy of each ``(offset, delivery count, reason)``
    still in ``source``; None if none is (retention removed them, or the
    offsets were gaps of a compacted log). Without ``copy_record`` a dead
    letter has the context headers and the timestamp only (Kafka's default)."""
    wanted = {offset: (count, reason) for offset, count, reason in items}
    if not wanted:
        return None
    builder = BatchBuilder()
    offset, last = max(min(wanted), source.log_start_offset), max(wanted)
    while offset <= last and offset < source.log_end_offset:
        try:
            data = source.read(offset, _READ_BYTES).records
        except LogbrokerError:
            break
        if not len(data):
            break
        for batch in decode_batches(data):
            offset = max(offset, batch.header.next_offset)
            if batch.header.is_control:
                continue
            for record in batch.records:
                found = wanted.get(record.offset)
                if found is None:
                    continue
                count, reason = found
                context = (
                    (HEADER_GROUP, group_id.encode()),
                    (HEADER_TOPIC, topic.encode()),
                    (HEADER_PARTITION, str(partition).encode()),
                    (HEADER_OFFSET, str(record.offset).encode()),
                    (HEADER_DELIVERY_COUNT, str(count).encode()),
                    (HEADER_REASON, reason.encode()),
                )
                if copy_record:
                    builder.append(record.value, record.key, (*record.headers, *context), record.timestamp)
                else:
                    builder.append(None, None, context, record.timestamp)
            if offset > last:
                break
    return builder.build() if len(builder) else None
