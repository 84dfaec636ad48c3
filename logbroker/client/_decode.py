"""Decode a fetched partition's batches straight into :class:`ConsumerRecord` tuples.

:func:`logbroker.records.decode_records` makes the final named tuple (topic and
partition first) instead of a ``Record`` the consumer would wrap: half the
allocations, and tuples of atomic values stay untracked by the garbage
collector. Batches wholly before ``start`` and control batches are skipped
before their CRC is checked or their records decompressed.
"""

from __future__ import annotations

from logbroker.records import ATTR_CONTROL, check_batch, iter_batches
from logbroker.records.decoder import decode_records, records_section

from .types import ConsumerRecord

__all__ = ["decode_for_consumer"]


def decode_for_consumer(data: bytes, topic: str, partition: int, start: int) -> list[ConsumerRecord]:
    """Every record at offset >= ``start`` in the complete batches of ``data``.

    Control batches are skipped; a partial trailing batch is ignored.

    :raises CorruptBatchError: a bad CRC, length or record encoding.
    :raises CompressionError: records that do not decompress.
    """
    out: list[ConsumerRecord] = []
    for pos, header in iter_batches(data):
        if header.attributes & ATTR_CONTROL or header.base_offset + header.last_offset_delta < start:
            continue
        check_batch(data, pos)
        records = records_section(data, pos, header)
        fixed_ts = header.max_timestamp if header.attributes & 0x08 else None
        decode_records(records, header.records_count, header.base_offset, header.base_timestamp, fixed_ts,
                       cls=ConsumerRecord, head=(topic, partition), start=start, out=out)
    return out
