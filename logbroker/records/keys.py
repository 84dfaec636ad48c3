"""Which records of a batch have no key: the one record-level check of produce.

Compacted topics keep the latest record per key, so Kafka refuses keyless
records there (``LogValidator.validateKey``) and names each by its index in
the batch (KIP-467). Only compacted topics pay for this; other topics never
look past the 61-byte header (docs/contributing.md, convention 9).

One pass over the record varints, reading only each record's length and key
length: no record object, no copy of keys or values.
"""

from __future__ import annotations

from logbroker.errors import CorruptBatchError
from logbroker.records.decoder import records_section
from logbroker.records.header import BytesLike, check_batch
from logbroker.records.varint import DECODED, decode_zigzag


def keyless_records(batch: BytesLike) -> list[int]:
    """Indexes (0-based, in batch order) of the records of ``batch`` whose key
    is null; empty when every record has one.

    Checks the batch (length, magic, CRC) and decompresses its records. Raises
    CorruptBatchError for a broken batch or records that run past its end,
    CompressionError when the records do not decompress.
    """
    header = check_batch(batch)
    data = records_section(batch, 0, header)
    return _keyless(data, header.records_count)


def _keyless(data: bytes, count: int) -> list[int]:
    table = DECODED
    found: list[int] = []
    pos = 0
    try:
        for index in range(count):
            # length (one- and two-byte varints inline, as the decoder does)
            b = data[pos]
            if b < 0x80:
                length = table[b]
                pos += 1
            else:
                length, pos = decode_zigzag(data, pos)
            end = pos + length
            # attributes (1 byte), then skip timestampDelta and offsetDelta
            pos += 1
            while data[pos] >= 0x80:
                pos += 1
            pos += 1
            while data[pos] >= 0x80:
                pos += 1
            pos += 1
            # key length: a single byte 0x01 is zigzag(-1), a null key
            if data[pos] == 0x01:
                found.append(index)
            if length < 0 or end > len(data):
                raise IndexError
            pos = end
    except IndexError:
        raise CorruptBatchError("records run past the end of their batch") from None
    return found
