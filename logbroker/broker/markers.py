"""Transaction control markers: the batches that end a transaction on a partition,
and the header-level helpers read_committed fetches need.

A marker is a control batch (attributes: transactional and control bits)
carrying the transaction's producer id and epoch, base sequence -1, and one
record in the format of :mod:`logbroker.records.control`.
"""

from __future__ import annotations

from logbroker.records import BatchBuilder, BatchHeader, iter_batches
from logbroker.records.control import (
    ABORT as ABORT,
    COMMIT as COMMIT,
    is_abort_marker as is_abort_marker,
    marker_key,
    marker_type,
    marker_value,
)


def control_batch(producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                  now_ms: int) -> bytes:
    """The marker batch ending a transaction (commit or abort)."""
    builder = BatchBuilder(
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=-1,
        transactional=True, control=True,
    )
    builder.append(marker_value(coordinator_epoch), marker_key(commit), timestamp_ms=now_ms)
    return builder.build()


def is_commit_key(key: bytes | None) -> bool:
    """True if a control record's key says COMMIT."""
    return marker_type(key) == COMMIT


def cut_before(records: memoryview, offset: int) -> memoryview:
    """The whole batches of ``records`` that start below ``offset`` (a batch
    boundary: the last stable offset). Walks batch headers only."""
    end = 0
    for pos, header in iter_batches(records):
        if header.base_offset >= offset:
            break
        end = pos + header.size
    return records[:end]


def last_offset_of(records: memoryview) -> int | None:
    """The last offset of the last whole batch in ``records`` (None if empty)."""
    last: BatchHeader | None = None
    for _, header in iter_batches(records):
        last = header
    return None if last is None else last.last_offset
