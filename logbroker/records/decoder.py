"""Decode Kafka record batches v2 into records (the client side of the wire).

The broker never needs this on its hot paths (docs/contributing.md, convention 9); clients, tools
and coordinators replaying internal topics do. A batch is checked (length,
magic, CRC-32C), its records section decompressed once, and every record
decoded in one loop with inline fast paths for one- and two-byte varints.
See :mod:`logbroker.records.builder` for the record layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records.compression import Compression, decompress
from logbroker.records.header import (
    HEADER_SIZE,
    BatchHeader,
    check_batch,
    iter_batches,
)
from logbroker.records.varint import DECODED, decode_zigzag


class Record(NamedTuple):
    """One decoded record with its absolute offset and timestamp (ms).

    Header names are str (invalid UTF-8 is replaced, as the Java client
    does); header values, key and value are bytes or None. A named tuple:
    cheap to make and, holding only atomic values, not tracked by the
    garbage collector.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch's header and all of its records, in offset order."""

    header: BatchHeader
    records: list[Record]


def decode_batch(buf, pos: int = 0) -> DecodedBatch:
    """Decode the complete batch starting at ``buf[pos]`` (bytes-like).

    Checks length, magic and CRC, decompresses the records and decodes all of
    them. Record offsets are ``baseOffset + offsetDelta``; timestamps are
    ``baseTimestamp + timestampDelta``, or the batch's maxTimestamp for a
    LogAppendTime batch. Control batches decode like any other.

    Raises CorruptBatchError for a truncated or malformed batch or records
    that do not match the header's count, CompressionError if the records do
    not decompress or use an unknown codec.
    """
    header = check_batch(buf, pos)
    fixed_ts = header.max_timestamp if header.log_append_time else None
    records = decode_records(records_section(buf, pos, header), header.records_count, header.base_offset,
                             header.base_timestamp, fixed_ts)
    return DecodedBatch(header, records)


def records_section(buf, pos: int, header: BatchHeader) -> bytes:
    """The records of the batch at ``buf[pos]`` (checked), decompressed."""
    body = memoryview(buf)[pos + HEADER_SIZE : pos + header.size]
    codec = header.attributes & 0x07
    if not codec:
        return bytes(body)
    try:
        codec = Compression(codec)
    except ValueError:
        raise CompressionError(f"unknown compression codec {codec} in batch attributes") from None
    return decompress(codec, body)


def decode_batches(buf) -> Iterator[DecodedBatch]:
    """Decode every complete batch in ``buf`` (a log slice, a fetch response's
    records) in order, stopping quietly at a partial trailing batch.

    Raises as :func:`decode_batch` for a complete batch that is broken.
    """
    for pos, _header in iter_batches(buf):
        yield decode_batch(buf, pos)


_new = tuple.__new__


def decode_records(
    data: bytes, count: int, base_offset: int, base_ts: int, fixed_ts: int | None,
    *, cls: type[tuple] = Record, head: tuple = (), start: int = -1, out: list | None = None,
) -> list:
    """Decode the ``count`` records filling ``data`` (a batch's decompressed
    records section) exactly; append those at offset >= ``start`` to ``out``
    (default: a new list) as ``cls(*head, offset, timestamp, key, value, headers)``
    and return it. ``cls`` is a tuple subclass; the client passes
    ``head=(topic, partition)`` to make its consumer records directly.

    Each varint is read inline: one byte ``b < 0x80`` -> ``DECODED[b]``; two
    bytes -> ``DECODED[(b & 0x7F) | (c << 7)]``; longer ones call
    :func:`decode_zigzag`. Running past the end raises IndexError, turned into
    CorruptBatchError; each record must end where its length says.
    """
    if count < 0:
        raise CorruptBatchError(f"negative record count {count}")
    table = DECODED
    slow = decode_zigzag
    new = _new
    records: list = [] if out is None else out
    append = records.append
    pos = 0
    try:
        for _ in range(count):
            # length
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
            # attributes (unused), then timestampDelta
            b = data[pos + 1]
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
            # offsetDelta
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
            # key
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
                key = data[pos : pos + n]
                pos += n
            elif n == -1:
                key = None
            else:
                raise CorruptBatchError(f"record key length {n}")
            # value
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
            elif n == -1:
                value = None
            else:
                raise CorruptBatchError(f"record value length {n}")
            # headers
            if data[pos] == 0:
                headers = ()
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos)
            if pos != end:
                raise CorruptBatchError(f"record ends at byte {pos}, its length says {end}")
            offset = base_offset + offset_delta
            if offset >= start:
                append(new(cls, head + (offset, base_ts + ts_delta if fixed_ts is None else fixed_ts,
                                        key, value, headers)))
    except IndexError:
        raise CorruptBatchError(f"records of the batch at offset {base_offset} truncated: they run past its end") from None
    if pos != len(data):
        raise CorruptBatchError(f"{len(data) - pos} bytes left after {count} records at offset {base_offset}")
    return records


def _decode_headers(data: bytes, pos: int) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    """Decode headerCount and the headers at ``pos``; return (headers, next pos)."""
    count, pos = decode_zigzag(data, pos)
    if count < 0:
        raise CorruptBatchError(f"record header count {count}")
    headers = []
    for _ in range(count):
        n, pos = decode_zigzag(data, pos)
        if n < 0:
            raise CorruptBatchError(f"record header name length {n}")
        name = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
        n, pos = decode_zigzag(data, pos)
        if n >= 0:
            value = data[pos : pos + n]
            pos += n
        elif n == -1:
            value = None
        else:
            raise CorruptBatchError(f"record header value length {n}")
        headers.append((name, value))
    return tuple(headers), pos
