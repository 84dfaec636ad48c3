"""Build one Kafka record batch v2 from records, in a single pass.

Each appended record is encoded at once into a few byte strings kept in one
list (varints come from a precomputed table for values below 16384); ``build``
joins them with one ``b"".join``, compresses the blob if asked, and prefixes
the 61-byte header whose CRC-32C covers attributes..records (see
:mod:`logbroker.records.header` for the layout).

Record layout (all varints zigzag)::

    length varint | attributes i8 (0) | timestampDelta varlong | offsetDelta varint
    | keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
    | headerCount varint | [keyLength varint | key utf-8 | valueLength varint | value]*
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Iterable

import crc32c

from logbroker.errors import CompressionError
from logbroker.records.compression import Compression, compress
from logbroker.records.header import (
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL,
    CRC_AT,
    CRC_START,
    CRC_STRUCT,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
)
from logbroker.records.varint import ENCODED, NULL, TABLE_SIZE, ZERO, encode_zigzag

_BYTE_TYPES = (bytes, bytearray, memoryview)

# ``_ATTR_TS[d]``: the attributes byte (always 0) followed by timestampDelta ``d``.
_ATTR_TS = [ZERO + enc for enc in ENCODED]


def _as_bytes(obj: object, what: str) -> bytes:
    """A bytes copy of a bytes-like key/value; TypeError for anything else."""
    if isinstance(obj, _BYTE_TYPES):
        return bytes(obj)
    raise TypeError(f"record {what} must be bytes-like or None, not {type(obj).__name__}")


def _encode_headers(headers: Iterable[tuple[str | bytes, bytes | None]]) -> bytes:
    """headerCount followed by each header; keys are str (UTF-8) or bytes."""
    if not isinstance(headers, (list, tuple)):
        headers = tuple(headers)
    parts = [encode_zigzag(len(headers))]
    append = parts.append
    for name, value in headers:
        if isinstance(name, str):
            name = name.encode("utf-8")
        elif not isinstance(name, bytes):
            name = _as_bytes(name, "header key")
        append(encode_zigzag(len(name)))
        append(name)
        if value is None:
            append(NULL)
        else:
            if value.__class__ is not bytes:
                value = _as_bytes(value, "header value")
            append(encode_zigzag(len(value)))
            append(value)
    return b"".join(parts)


class BatchBuilder:
    """Accumulates records for one v2 batch; ``build()`` returns its bytes.

    Offsets are ``base_offset + i`` for the i-th appended record (producers
    leave 0; the broker stamps the real base offset without touching the CRC).
    The batch's base timestamp is the first record's, its max timestamp the
    largest. ``control=True`` marks a control batch (broker-written
    transaction markers); producers never set it.

    Not thread-safe. ``build()`` may be called more than once and appending
    after it continues the same batch.
    """

    __slots__ = (
        "_codec",
        "_base_offset",
        "_producer_id",
        "_producer_epoch",
        "_base_sequence",
        "_attributes",
        "_leader_epoch",
        "_parts",
        "_size",
        "_count",
        "_base_ts",
        "_max_ts",
    )

    def __init__(
        self,
        *,
        compression: Compression = Compression.NONE,
        base_offset: int = 0,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        transactional: bool = False,
        log_append_time: bool = False,
        partition_leader_epoch: int = -1,
        control: bool = False,
    ) -> None:
        # The API is fixed by its callers, hence more keywords than convention 12 of docs/contributing.md likes.
        try:
            self._codec = Compression(compression)
        except ValueError:
            raise CompressionError(f"unknown compression codec {compression!r}") from None
        self._base_offset = base_offset
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._leader_epoch = partition_leader_epoch
        attributes = int(self._codec)
        if log_append_time:
            attributes |= ATTR_LOG_APPEND_TIME
        if transactional:
            attributes |= ATTR_TRANSACTIONAL
        if control:
            attributes |= ATTR_CONTROL
        self._attributes = attributes
        self._parts: list[bytes] = []
        self._size = 0  # bytes of encoded records so far
        self._count = 0
        self._base_ts = -1
        self._max_ts = -1

    def append(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Iterable[tuple[str | bytes, bytes | None]] = (),
        timestamp_ms: int | None = None,
        offset_delta: int | None = None,
    ) -> None:
        """Encode one record at the end of the batch.

        ``offset_delta`` (default: the record's index) lets the log cleaner
        rewrite a batch with gaps while every record keeps its offset.

        ``key``/``value`` are bytes-like or None (copied if not bytes);
        ``headers`` is an iterable of ``(name, value)`` with a str (or bytes)
        name and a bytes-like or None value; ``timestamp_ms`` (int) defaults
        to the current wall-clock time. Raises TypeError for a key, value or
        header of another type, leaving the builder unchanged.
        """
        count = self._count
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        delta = timestamp_ms - self._base_ts if count else 0
        attr_ts = _ATTR_TS[delta] if 0 <= delta < TABLE_SIZE else ZERO + encode_zigzag(delta)
        if offset_delta is None:
            offset_delta = count
        delta_bytes = ENCODED[offset_delta] if offset_delta < TABLE_SIZE else encode_zigzag(offset_delta)

        if key is None:
            key_len = NULL
            key = b""
        else:
            if key.__class__ is not bytes:
                key = _as_bytes(key, "key")
            n = len(key)
            key_len = ENCODED[n] if n < TABLE_SIZE else encode_zigzag(n)
        if value is None:
            value_len = NULL
            value = b""
        else:
            if value.__class__ is not bytes:
                value = _as_bytes(value, "value")
            n = len(value)
            value_len = ENCODED[n] if n < TABLE_SIZE else encode_zigzag(n)
        encoded_headers = _encode_headers(headers) if headers else ZERO

        body = (
            len(attr_ts)
            + len(delta_bytes)
            + len(key_len)
            + len(key)
            + len(value_len)
            + len(value)
            + len(encoded_headers)
        )
        length = ENCODED[body] if body < TABLE_SIZE else encode_zigzag(body)
        self._parts += (length, attr_ts, delta_bytes, key_len, key, value_len, value, encoded_headers)
        self._size += len(length) + body
        self._count = count + 1
        if not count:
            self._base_ts = self._max_ts = timestamp_ms
        elif timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms

    def __len__(self) -> int:
        """Number of records appended."""
        return self._count

    def estimated_size(self) -> int:
        """Uncompressed size of the batch so far, header included, in bytes."""
        return HEADER_SIZE + self._size

    def build(self, *, last_offset_delta: int | None = None) -> bytes:
        """The complete batch: header with a valid CRC-32C, records compressed
        with the builder's codec. ``last_offset_delta`` defaults to the record
        count - 1; the cleaner keeps the original one so a compacted batch still
        spans its offsets. Raises ValueError if no record was appended,
        CompressionError if the codec fails.
        """
        count = self._count
        if not count:
            raise ValueError("a record batch needs at least one record")
        records = b"".join(self._parts)
        if self._codec:
            records = compress(self._codec, records)
        header = bytearray(HEADER_SIZE)
        HEADER_STRUCT.pack_into(
            header,
            0,
            self._base_offset,
            HEADER_SIZE - LOG_OVERHEAD + len(records),
            self._leader_epoch,
            MAGIC,
            0,  # the CRC, written once the bytes it covers are known
            self._attributes,
            count - 1 if last_offset_delta is None else last_offset_delta,
            self._base_ts,
            self._max_ts,
            self._producer_id,
            self._producer_epoch,
            self._base_sequence,
            count,
        )
        crc = crc32c.crc32c(records, crc32c.crc32c(memoryview(header)[CRC_START:]))
        CRC_STRUCT.pack_into(header, CRC_AT, crc)
        return b"".join((header, records))

    def __repr__(self) -> str:
        return (
            f"<BatchBuilder {self._codec.label} records={self._count} "
            f"size~{self.estimated_size()} base_offset={self._base_offset} "
            f"producer_id={self._producer_id} attributes={self._attributes:#x}>"
        )


def build_batch(records: Iterable[tuple[Any, ...]], **builder_kwargs: Any) -> bytes:
    """One batch from ``records``, each ``(key, value)``, ``(key, value, headers)``
    or ``(key, value, headers, timestamp_ms)``; keywords go to :class:`BatchBuilder`.

    Returns the batch bytes; raises as :meth:`BatchBuilder.append` and
    :meth:`BatchBuilder.build` do.
    """
    builder = BatchBuilder(**builder_kwargs)
    append = builder.append
    for record in records:
        if len(record) == 2:
            append(record[1], record[0])
        else:
            append(record[1], record[0], *record[2:])
    return builder.build()
