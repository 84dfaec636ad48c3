"""The 61-byte header of a Kafka record batch v2: parse, validate, stamp, iterate.

Byte layout (big-endian), see docs/on-disk-format.md::

    0  baseOffset i64        27 baseTimestamp i64
    8  batchLength i32       35 maxTimestamp i64
    12 partitionLeaderEpoch  43 producerId i64
    16 magic i8 (= 2)        51 producerEpoch i16
    17 crc u32               53 baseSequence i32
    21 attributes i16        57 recordsCount i32
    23 lastOffsetDelta i32   61 records...

The CRC-32C covers bytes [21, end), so the base offset and leader epoch can be
rewritten in place without recomputing it. Nothing here decodes records.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import crc32c

from logbroker.errors import BatchTooLargeError, CorruptBatchError, InvalidBatchError

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: bytes not counted by batchLength
MAGIC = 2

# Byte offsets of the header's fields within a batch (the table above).
BASE_OFFSET_AT = 0
BATCH_LENGTH_AT = 8
PARTITION_LEADER_EPOCH_AT = 12
MAGIC_AT = 16
CRC_AT = 17
ATTRIBUTES_AT = 21
LAST_OFFSET_DELTA_AT = 23
BASE_TIMESTAMP_AT = 27
MAX_TIMESTAMP_AT = 35
PRODUCER_ID_AT = 43
PRODUCER_EPOCH_AT = 51
BASE_SEQUENCE_AT = 53
RECORDS_COUNT_AT = 57
RECORDS_AT = HEADER_SIZE
CRC_START = ATTRIBUTES_AT  # the CRC-32C covers [attributes, end of batch)
PREFIX_SIZE = MAGIC_AT  # baseOffset, batchLength, partitionLeaderEpoch: what the broker writes

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
"""The whole 61-byte header, field by field in :class:`BatchHeader` order (the one definition)."""
PREFIX_STRUCT = struct.Struct(">qii")
"""baseOffset, batchLength, partitionLeaderEpoch: the 16 bytes before magic, outside the CRC."""
LOCATE_STRUCT = struct.Struct(f">qi{LAST_OFFSET_DELTA_AT - PARTITION_LEADER_EPOCH_AT}xi")
"""baseOffset, batchLength, lastOffsetDelta: what a walk along the batch chain needs."""
ATTRIBUTES_STRUCT = struct.Struct(">h")
CRC_STRUCT = struct.Struct(">I")
TIMESTAMP_STRUCT = struct.Struct(">q")
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")
_SIZE_PREFIX = struct.Struct(">qi")

assert HEADER_STRUCT.size == HEADER_SIZE and PREFIX_STRUCT.size == PREFIX_SIZE
assert LOCATE_STRUCT.size == LAST_OFFSET_DELTA_AT + 4

ATTR_COMPRESSION_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40

NO_PRODUCER_ID = -1

BytesLike = bytes | bytearray | memoryview
"""What the functions here read batches from (a map of a segment is read as a memoryview)."""


class BatchHeader(NamedTuple):
    """The decoded 61-byte header. ``size`` is the whole batch in bytes."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; wraps past INT32_MAX as Kafka does."""
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) % 0x80000000


def parse_header(buf: BytesLike, pos: int = 0) -> BatchHeader:
    """Decode the header at ``pos``; raises CorruptBatchError if fewer than 61 bytes remain."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatchError(f"batch header truncated: {len(buf) - pos} of {HEADER_SIZE} bytes")
    return BatchHeader._make(HEADER_STRUCT.unpack_from(buf, pos))


def batch_crc(buf: BytesLike, pos: int, size: int) -> int:
    """CRC-32C of the batch at ``pos`` of ``size`` bytes, over [21, size)."""
    view = memoryview(buf)[pos + CRC_START : pos + size]
    return crc32c.crc32c(view)


def check_batch(buf: BytesLike, pos: int = 0) -> BatchHeader:
    """Check that a well-formed batch starts at ``pos``: length, magic and CRC.

    Returns its header. Raises CorruptBatchError naming the first fault.
    """
    header = parse_header(buf, pos)
    size = header.size
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptBatchError(f"batch length {header.batch_length} shorter than a header")
    if len(buf) - pos < size:
        raise CorruptBatchError(f"batch truncated: {len(buf) - pos} of {size} bytes")
    if header.magic != MAGIC:
        raise CorruptBatchError(f"unsupported magic {header.magic}, only v2 batches")
    actual = batch_crc(buf, pos, size)
    if actual != header.crc:
        raise CorruptBatchError(f"CRC mismatch: header {header.crc:#010x}, data {actual:#010x}")
    return header


def validate_produced_batch(buf: BytesLike, *, max_bytes: int | None = None) -> BatchHeader:
    """Validate bytes that a producer sent as exactly one batch.

    Raises BatchTooLargeError above ``max_bytes``, CorruptBatchError for broken
    bytes, InvalidBatchError for a batch Kafka refuses (control batch, record
    count mismatch, negative sequence with a producer id). Returns the header.
    """
    if max_bytes is not None and len(buf) > max_bytes:
        raise BatchTooLargeError(f"batch of {len(buf)} bytes exceeds max.message.bytes {max_bytes}")
    header = check_batch(buf, 0)
    if header.size != len(buf):
        raise CorruptBatchError(
            f"batch length says {header.size} bytes but {len(buf)} were sent"
        )
    if header.records_count <= 0:
        raise InvalidBatchError(f"batch has {header.records_count} records")
    if header.last_offset_delta + 1 != header.records_count:
        raise InvalidBatchError(
            f"lastOffsetDelta {header.last_offset_delta} does not match {header.records_count} records"
        )
    if header.is_control:
        raise InvalidBatchError("producers may not send control batches")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidBatchError("idempotent batch without a base sequence")
    return header


def stamp_batch(buf: bytearray | memoryview, base_offset: int, leader_epoch: int = 0, pos: int = 0) -> None:
    """Write the base offset and leader epoch in place; the CRC stays valid."""
    _BASE_OFFSET.pack_into(buf, pos + BASE_OFFSET_AT, base_offset)
    _LEADER_EPOCH.pack_into(buf, pos + PARTITION_LEADER_EPOCH_AT, leader_epoch)


def iter_batches(buf: BytesLike, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` of each complete batch in ``buf[pos:end]``.

    Stops cleanly at a partial trailing batch. No CRC check: use
    :func:`scan_valid_prefix` for that.
    """
    limit = len(buf) if end is None else end
    unpack = HEADER_STRUCT.unpack_from
    while limit - pos >= HEADER_SIZE:
        header = BatchHeader._make(unpack(buf, pos))
        size = header.batch_length + LOG_OVERHEAD
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > limit:
            return
        yield pos, header
        pos += size


def scan_valid_prefix(buf: BytesLike, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` of each batch that passes :func:`check_batch`.

    Stops at the first invalid or partial batch; the caller learns where the
    valid prefix ends from the last position and size yielded.
    """
    limit = len(buf) if end is None else end
    view = memoryview(buf)[:limit]
    while limit - pos >= HEADER_SIZE:
        try:
            header = check_batch(view, pos)
        except CorruptBatchError:
            return
        yield pos, header
        pos += header.size


def peek_size(buf: BytesLike, pos: int = 0) -> int | None:
    """Total size of the batch starting at ``pos``, or None if its prefix is incomplete."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    return _SIZE_PREFIX.unpack_from(buf, pos)[1] + LOG_OVERHEAD
