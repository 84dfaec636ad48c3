"""Transaction control markers: the one record a control batch carries.

Kafka's ``EndTransactionMarker``: key = version int16 0 | type int16 (0 abort,
1 commit); value = version int16 0 | coordinator epoch int32. The batch that
holds it has the transactional and control attribute bits set.
"""

from __future__ import annotations

import struct

from logbroker.errors import RecordsError
from logbroker.records.decoder import decode_batch
from logbroker.records.header import BytesLike

ABORT, COMMIT = 0, 1
MARKER_KEY = struct.Struct(">hh")  # version, type
MARKER_VALUE = struct.Struct(">hi")  # version, coordinator epoch
MARKER_NAMES = {ABORT: "ABORT", COMMIT: "COMMIT"}


def marker_key(commit: bool) -> bytes:
    return MARKER_KEY.pack(0, COMMIT if commit else ABORT)


def marker_value(coordinator_epoch: int) -> bytes:
    return MARKER_VALUE.pack(0, coordinator_epoch)


def marker_type(key: bytes | None) -> int | None:
    """ABORT or COMMIT from a control record's key; None if the key is too short."""
    if key is None or len(key) < MARKER_KEY.size:
        return None
    kind: int = MARKER_KEY.unpack_from(key)[1]
    return kind


def marker_epoch(value: bytes | None) -> int | None:
    """The coordinator epoch of a control record's value; None if too short."""
    if value is None or len(value) < MARKER_VALUE.size:
        return None
    epoch: int = MARKER_VALUE.unpack_from(value)[1]
    return epoch


def is_abort_marker(data: BytesLike, pos: int = 0) -> bool:
    """True if the control batch at ``data[pos]`` is an abort marker (decodes its one record)."""
    try:
        records = decode_batch(data, pos).records
    except RecordsError:
        return False
    return bool(records) and marker_type(records[0].key) == ABORT
