"""Decode Kafka record batches v2 into records (the client side of the wire).

The broker never needs this on its hot paths (docs/contributing.md, convention 9); clients, tools
and coordinators replaying internal topics do. A batch is checked (length,
magic, CRC-32C), its records section decompressed once, and every record
decoded in one loop with inline fast paths for one- and two-byte varints.
See :mod:`logbroker.records.builder` for the record layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records.compression import Compression, decompress
from logbroker.records.header import (
    HEADER_SIZE,
    BatchHeader,
    check_batch,
    iter_batches,
)
from logbroker.records.varint import DECODED, decode_zigzag

Buffer = bytes | bytearray | memoryview  # what the decoders read (3.12's collections.abc.Buffer)


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


def decode_batch(buf: Buffer, pos: int = 0) -> DecodedBatch:
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


def records_section(buf: Buffer, pos: int, header: BatchHeader) -> bytes:
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


def decode_batches(buf: Buffer) -> Iterator[DecodedBatch]:
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
            headers: tuple[tuple[str, bytes | None], ...]
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


# -- columnar decoding ---------------------------------------------------------------------

_I64 = np.int64
_MAX_VARINT = 10


class RecordColumns:
    """The records of one or more batches as columns (see :func:`decode_columns`).

    ``buffer`` holds the records sections; keys and values are the byte ranges
    ``buffer[start : start + length]`` (length -1: null). ``headers`` is None
    when no record has a header, else one tuple per record. Offsets and
    timestamps are absolute, in record order. All arrays are int64.
    """

    __slots__ = ("buffer", "offsets", "timestamps", "key_starts", "key_lengths", "value_starts", "value_lengths",
                 "headers")

    def __init__(self, buffer: bytes, offsets: np.ndarray, timestamps: np.ndarray, key_starts: np.ndarray,
                 key_lengths: np.ndarray, value_starts: np.ndarray, value_lengths: np.ndarray,
                 headers: list[tuple[tuple[str, bytes | None], ...]] | None) -> None:
        # The columns of one record set travel together, hence more arguments than convention 12 likes.
        self.buffer = buffer
        self.offsets = offsets
        self.timestamps = timestamps
        self.key_starts = key_starts
        self.key_lengths = key_lengths
        self.value_starts = value_starts
        self.value_lengths = value_lengths
        self.headers = headers

    @property
    def count(self) -> int:
        return len(self.offsets)

    def select(self, which: slice | np.ndarray) -> RecordColumns:
        """The records picked by ``which`` (a slice or a boolean mask)."""
        headers = self.headers
        if headers is not None:
            headers = headers[which] if isinstance(which, slice) else [h for h, keep in zip(headers, which) if keep]
        return RecordColumns(self.buffer, self.offsets[which], self.timestamps[which], self.key_starts[which],
                             self.key_lengths[which], self.value_starts[which], self.value_lengths[which], headers)

    def __repr__(self) -> str:
        first = int(self.offsets[0]) if self.count else None
        return f"<RecordColumns records={self.count} first_offset={first} headers={self.headers is not None}>"


def _varints(arr: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray | int]:
    """Decode the zigzag varint at each of ``pos`` in ``arr``; return (values, sizes), int64
    arrays (sizes: the int 1 when every varint is one byte).

    A position past the end reads the last byte (the caller checks that every record
    ends where its length says, which such a read cannot).
    """
    raw = arr.take(pos, mode="clip")
    if not raw.size or raw.max() < 0x80:  # one byte each
        b = raw.astype(_I64)
        return (b >> 1) ^ -(b & 1), 1
    b = raw.astype(_I64)
    c = arr.take(pos + 1, mode="clip").astype(_I64)
    long = b >= 0x80
    if not (c[long] >= 0x80).any():  # one or two bytes each
        u = np.where(long, (b & 0x7F) | (c << 7), b)
        return (u >> 1) ^ -(u & 1), long + 1
    u = b & 0x7F
    size = np.ones(len(pos), _I64)
    more = np.flatnonzero(long)
    shift = 7
    while more.size:
        if shift > 63:
            raise CorruptBatchError("varint longer than 10 bytes")
        nxt = arr.take(pos[more] + size[more], mode="clip").astype(_I64)
        u[more] |= (nxt & 0x7F) << shift
        size[more] += 1
        more = more[nxt >= 0x80]
        shift += 7
    return (u >> 1) ^ -(u & 1), size


def _record_starts(buf: bytes, arr: np.ndarray, pos: int, end: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the ``count`` records filling ``buf[pos:end]`` starts, and where its
    body (what follows its length prefix) starts.

    Guesses that the records run on at the first one's size and checks every guess at
    once; at the first record of another size it guesses again from there. Records of
    varied sizes fall back to walking their length prefixes one by one.
    """
    parts = []
    bodies = []
    found = 0
    short_runs = 0
    table = DECODED
    while found < count:
        if short_runs > 4:  # sizes vary: walk the rest one record at a time
            rest = [0] * (count - found)
            body = [0] * (count - found)
            try:
                for i in range(count - found):
                    rest[i] = pos
                    b = buf[pos]
                    if b < 0x80:
                        body[i] = pos = pos + 1
                        pos += table[b]
                    else:
                        c = buf[pos + 1]
                        if c < 0x80:
                            body[i] = pos = pos + 2
                            pos += table[(b & 0x7F) | (c << 7)]
                        else:
                            n, p = decode_zigzag(buf, pos)
                            body[i] = p
                            pos = p + n
            except IndexError:
                raise CorruptBatchError("records run past the end of their batch") from None
            parts.append(np.array(rest, _I64))
            bodies.append(np.array(body, _I64))
            found = count
            break
        if pos >= end:
            raise CorruptBatchError(f"{count} records do not fit their batch")
        length, p = decode_zigzag(buf, pos)
        stride = p - pos + length
        if stride <= 0:
            raise CorruptBatchError(f"record length {length}")
        guess = np.arange(pos, min(end, pos + stride * (count - found)), stride, dtype=_I64)
        # a record of the same size has the same length prefix: compare its bytes
        same = arr.take(guess, mode="clip") == buf[pos]
        for k in range(1, p - pos):
            same &= arr.take(guess + k, mode="clip") == buf[pos + k]
        bad = np.flatnonzero(~same)
        run = max(1, int(bad[0])) if bad.size else len(guess)  # the first guess is the record just read
        parts.append(guess[:run])
        bodies.append(guess[:run] + (p - pos))
        found += run
        pos += stride * run
        short_runs = short_runs + 1 if run < 16 else 0
    if pos != end:
        raise CorruptBatchError(f"records end at byte {pos}, their batch at {end}")
    if len(parts) == 1:
        return parts[0], bodies[0]
    return np.concatenate(parts), np.concatenate(bodies)


def decode_columns(data: Buffer, batches: Iterable[tuple[int, BatchHeader]], *, start: int = -1) -> RecordColumns:
    """Decode the batches of ``data`` at the given (position, header) pairs into columns.

    Each batch is checked (length, magic, CRC) and decompressed; the records at
    offset >= ``start`` are kept. The per-record work is done on whole arrays
    (numpy), not in a Python loop, except for records with headers and runs of
    records whose sizes all differ.

    :raises CorruptBatchError: a bad CRC, length or record encoding.
    :raises CompressionError: records that do not decompress.
    """
    listed = list(batches)
    regions: list[tuple[int, int, BatchHeader]] = []  # (begin, end) of each records section in buf, header
    if any(header.attributes & 0x07 for _, header in listed):
        sections = []
        offset = 0
        for pos, header in listed:
            check_batch(data, pos)
            section = records_section(data, pos, header)
            sections.append(section)
            regions.append((offset, offset + len(section), header))
            offset += len(section)
        buf = b"".join(sections)
    else:
        for pos, header in listed:
            check_batch(data, pos)
            regions.append((pos + HEADER_SIZE, pos + header.size, header))
        buf = data if isinstance(data, bytes) else bytes(data)
    arr = np.frombuffer(buf, np.uint8)
    if not regions:
        empty = np.zeros(0, _I64)
        return RecordColumns(buf, empty, empty, empty, empty, empty, empty, None)
    starts_parts = []
    body_parts = []
    base_offsets = []
    base_ts = []
    counts = []
    last_ends = []
    for begin, end, header in regions:
        count = header.records_count
        if count < 0:
            raise CorruptBatchError(f"negative record count {count}")
        if count:
            starts_part, body_part = _record_starts(buf, arr, begin, end, count)
            starts_parts.append(starts_part)
            body_parts.append(body_part)
            last_ends.append(end)
        elif begin != end:
            raise CorruptBatchError(f"{end - begin} bytes left after 0 records at offset {header.base_offset}")
        counts.append(count)
        base_offsets.append(header.base_offset)
        base_ts.append(header.max_timestamp if header.attributes & 0x08 else header.base_timestamp)
    if not starts_parts:
        empty = np.zeros(0, _I64)
        return RecordColumns(buf, empty, empty, empty, empty, empty, empty, None)
    starts = starts_parts[0] if len(starts_parts) == 1 else np.concatenate(starts_parts)
    q = body_parts[0] if len(body_parts) == 1 else np.concatenate(body_parts)
    count_arr = np.array(counts, _I64)
    ends = np.empty_like(starts)  # each record ends where the next starts, the last of a batch with it
    ends[:-1] = starts[1:]
    ends[np.cumsum(count_arr[count_arr > 0]) - 1] = last_ends
    q = q + 1  # past the attributes
    ts_delta, size = _varints(arr, q)
    q += size
    offset_delta, size = _varints(arr, q)
    q += size
    key_lengths, size = _varints(arr, q)
    q += size
    key_starts = q.copy()
    if key_lengths.max() >= 0:
        q += np.maximum(key_lengths, 0)
    value_lengths, size = _varints(arr, q)
    q += size
    value_starts = q.copy()
    q += np.maximum(value_lengths, 0)
    if (key_lengths < -1).any() or (value_lengths < -1).any():
        raise CorruptBatchError("a record key or value length below -1")
    headers: list | None = None
    with_headers = np.flatnonzero(arr.take(q, mode="clip"))
    if with_headers.size:
        headers = [()] * len(starts)
        for i in with_headers.tolist():
            headers[i], q[i] = _decode_headers(buf, int(q[i]))
    q += 1  # a zero header count, and the records with headers are past theirs
    if with_headers.size:
        q[with_headers] -= 1
    if not np.array_equal(q, ends):
        bad = int(np.flatnonzero(q != ends)[0])
        raise CorruptBatchError(f"record ends at byte {int(q[bad])}, its length says {int(ends[bad])}")
    if len(regions) == 1:
        offsets = offset_delta + base_offsets[0]
        timestamps = np.full(len(starts), base_ts[0], _I64) if regions[0][2].attributes & 0x08 \
            else ts_delta + base_ts[0]
    else:
        offsets = offset_delta + np.repeat(np.array(base_offsets, _I64), count_arr)
        fixed = np.repeat(np.array([bool(h.attributes & 0x08) for _, _, h in regions]), count_arr)
        timestamps = np.repeat(np.array(base_ts, _I64), count_arr) + np.where(fixed, 0, ts_delta)
    columns = RecordColumns(buf, offsets, timestamps, key_starts, key_lengths, value_starts, value_lengths, headers)
    if start > 0 and columns.count and offsets[0] < start:
        columns = columns.select(offsets >= start)
    return columns
