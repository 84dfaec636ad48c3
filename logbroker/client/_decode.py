"""Decode a fetched partition's batches straight into :class:`ConsumerRecord` tuples.

:func:`logbroker.records.decode_batches` makes a ``Record`` per record; the
consumer would then wrap each in a ``ConsumerRecord`` that also names the
topic and partition. Making the final tuple directly halves the allocations,
and a tuple of atomic values is untracked by the garbage collector, which
otherwise spends more time walking records than decoding them. Header
parsing, CRC-32C checks and decompression reuse :mod:`logbroker.records`.

Record layout (zigzag varints): see :mod:`logbroker.records.builder`.
"""

from __future__ import annotations

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records import ATTR_CONTROL, HEADER_SIZE, Compression, check_batch, decompress, iter_batches

from .types import ConsumerRecord

__all__ = ["decode_for_consumer"]

_DECODED = [(u >> 1) ^ -(u & 1) for u in range(1 << 14)]
_new = tuple.__new__


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    u = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            return (u >> 1) ^ -(u & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptBatchError("varint longer than 10 bytes")


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
        body = memoryview(data)[pos + HEADER_SIZE : pos + header.size]
        codec = header.attributes & 0x07
        if codec:
            try:
                records = decompress(Compression(codec), body)
            except ValueError:
                raise CompressionError(f"unknown compression codec {codec}") from None
        else:
            records = bytes(body)
        fixed_ts = header.max_timestamp if header.attributes & 0x08 else None
        _decode(records, header.records_count, header.base_offset, header.base_timestamp, fixed_ts,
                topic, partition, start, out)
    return out


def _decode(data: bytes, count: int, base_offset: int, base_ts: int, fixed_ts: int | None,
            topic: str, partition: int, start: int, out: list) -> None:
    table = _DECODED
    slow = _varint
    new = _new
    cls = ConsumerRecord
    append = out.append
    pos = 0
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = table[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    length = table[(b & 0x7F) | (c << 7)]
                    pos += 2
                else:
                    length, pos = slow(data, pos)
            end = pos + length
            b = data[pos + 1]  # skip the attributes byte
            if b < 0x80:
                ts_delta = table[b]
                pos += 2
            else:
                c = data[pos + 2]
                if c < 0x80:
                    ts_delta = table[(b & 0x7F) | (c << 7)]
                    pos += 3
                else:
                    ts_delta, pos = slow(data, pos + 1)
            b = data[pos]
            if b < 0x80:
                offset_delta = table[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    offset_delta = table[(b & 0x7F) | (c << 7)]
                    pos += 2
                else:
                    offset_delta, pos = slow(data, pos)
            b = data[pos]
            if b < 0x80:
                n = table[b]
                pos += 1
            else:
                n, pos = slow(data, pos)
            if n >= 0:
                key = data[pos : pos + n]
                pos += n
            else:
                key = None
            b = data[pos]
            if b < 0x80:
                n = table[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    n = table[(b & 0x7F) | (c << 7)]
                    pos += 2
                else:
                    n, pos = slow(data, pos)
            if n >= 0:
                value = data[pos : pos + n]
                pos += n
            else:
                value = None
            if data[pos] == 0:
                headers = ()
                pos += 1
            else:
                headers, pos = _headers(data, pos)
            if pos != end:
                raise CorruptBatchError(f"record ends at byte {pos}, its length says {end}")
            offset = base_offset + offset_delta
            if offset >= start:
                append(new(cls, (topic, partition, offset, base_ts + ts_delta if fixed_ts is None else fixed_ts,
                                 key, value, headers)))
    except IndexError:
        raise CorruptBatchError(f"records of batch at offset {base_offset} run past its end") from None
    if pos != len(data):
        raise CorruptBatchError(f"{len(data) - pos} bytes left after {count} records at offset {base_offset}")


def _headers(data: bytes, pos: int) -> tuple[tuple, int]:
    count, pos = _varint(data, pos)
    if count < 0:
        raise CorruptBatchError(f"record header count {count}")
    headers = []
    for _ in range(count):
        n, pos = _varint(data, pos)
        if n < 0:
            raise CorruptBatchError(f"record header name length {n}")
        name = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
        n, pos = _varint(data, pos)
        if n >= 0:
            value = data[pos : pos + n]
            pos += n
        else:
            value = None
        headers.append((name, value))
    return tuple(headers), pos
