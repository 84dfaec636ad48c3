"""Transaction control markers: the batches that end a transaction on a partition,
and the header-level helpers read_committed fetches need.

A marker is a control batch (attributes: transactional and control bits)
carrying the transaction's producer id and epoch, base sequence -1, and one
record: key = version int16 0 | type int16 (0 abort, 1 commit), value =
version int16 0 | coordinator epoch int32 (Kafka's ``EndTransactionMarker``).
"""

from __future__ import annotations

import struct

from logbroker.errors import RecordsError
from logbroker.records import BatchBuilder, BatchHeader, BytesLike, decode_batch, iter_batches

ABORT, COMMIT = 0, 1
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


def control_batch(producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                  now_ms: int) -> bytes:
    """The marker batch ending a transaction (commit or abort)."""
    builder = BatchBuilder(
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=-1,
        transactional=True, control=True,
    )
    builder.append(_VALUE.pack(0, coordinator_epoch), _KEY.pack(0, COMMIT if commit else ABORT), timestamp_ms=now_ms)
    return builder.build()


def is_abort_marker(data: BytesLike, pos: int = 0) -> bool:
    """True if the control batch at ``data[pos]`` is an abort marker (reads its one record)."""
    try:
        records = decode_batch(data, pos).records
    except RecordsError:
        return False
    return bool(records) and _marker_type(records[0].key) == ABORT


def is_commit_key(key: bytes | None) -> bool:
    """True if a control record's key says COMMIT."""
    return _marker_type(key) == COMMIT


def _marker_type(key: bytes | None) -> int | None:
    if key is None or len(key) < _KEY.size:
        return None
    return _KEY.unpack_from(key)[1]


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
