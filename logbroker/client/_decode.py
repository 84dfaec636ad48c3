"""Decode a fetched partition's batches straight into :class:`ConsumerRecord` tuples.

:func:`logbroker.records.decode_records` makes the final named tuple (topic and
partition first) instead of a ``Record`` the consumer would wrap: half the
allocations, and tuples of atomic values stay untracked by the garbage
collector. Batches wholly before ``start`` and control batches are skipped
before their CRC is checked or their records decompressed.

read_committed (``aborted`` given): the broker returns only batches below the
last stable offset and lists the aborted transactions that overlap them as
(producer id, first offset). As the Java client does, walking the batches in
order, a producer becomes *aborted* once the walk reaches the first offset of
one of its aborted transactions; its transactional batches are then dropped
until its abort marker (a control batch whose record key says ABORT).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from logbroker.records import ATTR_CONTROL, ATTR_TRANSACTIONAL, check_batch, decode_batch, iter_batches
from logbroker.records.decoder import decode_records, records_section

from .types import ConsumerRecord

__all__ = ["decode_for_consumer", "is_abort_marker"]

_MARKER_KEY = struct.Struct(">hh")  # version, type (0 abort, 1 commit)


def is_abort_marker(data, pos: int) -> bool:
    """True if the control batch at ``data[pos]`` is an abort marker (reads its one record's key)."""
    records = decode_batch(data, pos).records
    key = records[0].key if records else None
    return key is not None and len(key) >= _MARKER_KEY.size and _MARKER_KEY.unpack_from(key)[1] == 0


def decode_for_consumer(data: bytes, topic: str, partition: int, start: int,
                        aborted: Iterable[tuple[int, int]] | None = None) -> list[ConsumerRecord]:
    """Every record at offset >= ``start`` in the complete batches of ``data``.

    Control batches are skipped; a partial trailing batch is ignored. With
    ``aborted`` (read_committed: the fetch answer's (producer id, first
    offset) pairs), the batches of those aborted transactions are skipped too.

    :raises CorruptBatchError: a bad CRC, length or record encoding.
    :raises CompressionError: records that do not decompress.
    """
    out: list[ConsumerRecord] = []
    pending = sorted(aborted, key=lambda a: a[1], reverse=True) if aborted else None
    aborting: set[int] = set()
    for pos, header in iter_batches(data):
        attributes = header.attributes
        if pending is not None and attributes & ATTR_TRANSACTIONAL:
            while pending and pending[-1][1] <= header.base_offset + header.last_offset_delta:
                aborting.add(pending.pop()[0])
            if header.producer_id in aborting:
                if not attributes & ATTR_CONTROL:
                    continue  # data of an aborted transaction
                if is_abort_marker(data, pos):
                    aborting.discard(header.producer_id)
        if attributes & ATTR_CONTROL or header.base_offset + header.last_offset_delta < start:
            continue
        check_batch(data, pos)
        records = records_section(data, pos, header)
        fixed_ts = header.max_timestamp if attributes & 0x08 else None
        decode_records(records, header.records_count, header.base_offset, header.base_timestamp, fixed_ts,
                       cls=ConsumerRecord, head=(topic, partition), start=start, out=out)
    return out
