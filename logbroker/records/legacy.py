"""Legacy message sets (magic 0 and 1) <-> record batches v2, for old clients.

Kafka clients before 0.11 write and read *message sets*, not batches. Each
message on the wire (Kafka's ``LegacyRecord``)::

    offset i64 | size i32 | crc u32 | magic i8 | attributes i8
    | [timestamp i64, magic 1 only] | key bytes (i32 length, -1 null) | value bytes

``crc`` is a CRC-32 (zlib's, not CRC-32C) of everything from ``magic`` on.
``attributes`` bits 0-2 name a codec (1 gzip, 2 snappy, 3 lz4); bit 3 is
LogAppendTime (magic 1). A compressed message is a *wrapper*: its value is the
compressed message set of its inner messages; a magic-1 wrapper's inner
offsets are relative and its own offset is the last inner one's.

* :func:`message_set_to_batch` converts a produced message set into one v2 batch
  (offsets from 0, producer id -1, the source codec kept): v1 messages keep
  their timestamps, v0 ones get none (-1). The broker then appends it as any
  batch. Magic-0 LZ4 wrappers have the frame-header checksum Kafka's
  ``KafkaLZ4BlockOutputStream`` got wrong (hashed over the frame magic too);
  it is repaired before decompressing, as Kafka ignores it for magic 0.
* :func:`down_convert` converts stored v2 batches into uncompressed magic-0
  or magic-1 messages for a Fetch below v4, as Kafka's ``RecordsUtil.downConvert``
  does: control batches are skipped, records below the fetch offset dropped,
  headers dropped, aborted transactional data kept (old clients read
  uncommitted).

This is per-record Python work, done only for old clients.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final, NamedTuple

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records.builder import BatchBuilder
from logbroker.records.compression import Compression, decompress
from logbroker.records.decoder import decode_records, records_section
from logbroker.records.header import MAGIC, iter_batches

__all__ = [
    "LegacyMessage",
    "down_convert",
    "encode_message",
    "iter_messages",
    "message_set_magic",
    "message_set_to_batch",
]

_HEAD: Final = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_HEAD_SIZE: Final = _HEAD.size  # 18
_LOG_OVERHEAD: Final = 12  # offset + size
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_MIN_SIZE: Final = {0: 14, 1: 22}  # crc .. value length of an empty message
_ATTR_CODEC: Final = 0x07
_ATTR_LOG_APPEND_TIME: Final = 0x08
_NO_TIMESTAMP: Final = -1
_LZ4_MAGIC: Final = b"\x04\x22\x4d\x18"


class LegacyMessage(NamedTuple):
    """One decoded (inner) message: its offset as written, timestamp (-1: none)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def message_set_magic(buf: bytes | memoryview) -> int:
    """The magic byte of the first entry of ``buf`` (a message set or batches), or -1 if too short."""
    return buf[16] if len(buf) > 16 else -1


def _bytes_field(buf: memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    if pos + 4 > end:
        raise CorruptBatchError("legacy message truncated in a length field")
    (length,) = _I32.unpack_from(buf, pos)
    pos += 4
    if length == -1:
        return None, pos
    if length < 0 or pos + length > end:
        raise CorruptBatchError(f"legacy message field of {length} bytes overruns the message")
    return bytes(buf[pos : pos + length]), pos + length


def iter_messages(buf: bytes | memoryview, *, depth: int = 0) -> Iterator[tuple[int, LegacyMessage, int, bool]]:
    """Yield ``(magic, message, codec, log_append_time)`` for every top-level message of ``buf``.

    Wrappers are expanded into their inner messages (codec and timestamp type
    are the wrapper's). The set must be complete: a partial trailing message,
    a bad CRC, an unknown magic or codec raise :class:`CorruptBatchError` or
    :class:`CompressionError`, as Kafka refuses such a produce.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) or buf.format != "B" else buf
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < _HEAD_SIZE:
            raise CorruptBatchError(f"legacy message set ends in a partial message ({end - pos} bytes)")
        offset, size, crc, magic, attributes = _HEAD.unpack_from(view, pos)
        if magic not in _MIN_SIZE:
            raise CorruptBatchError(f"legacy message with magic {magic}")
        if size < _MIN_SIZE[magic] or pos + _LOG_OVERHEAD + size > end:
            raise CorruptBatchError(f"legacy message of size {size} does not fit the set")
        stop = pos + _LOG_OVERHEAD + size
        if zlib.crc32(view[pos + 16 : stop]) != crc:
            raise CorruptBatchError(f"legacy message at offset {offset} fails its CRC-32")
        field = pos + _HEAD_SIZE
        timestamp = _NO_TIMESTAMP
        if magic == 1:
            (timestamp,) = _I64.unpack_from(view, field)
            field += 8
        key, field = _bytes_field(view, field, stop)
        value, field = _bytes_field(view, field, stop)
        codec = attributes & _ATTR_CODEC
        log_append = magic == 1 and bool(attributes & _ATTR_LOG_APPEND_TIME)
        if not codec:
            yield magic, LegacyMessage(offset, timestamp, key, value), 0, log_append
        else:
            if depth or value is None:
                raise CorruptBatchError("a compressed legacy message nests another or has no value")
            for inner_magic, inner, inner_codec, _ in iter_messages(_decompress(codec, magic, value), depth=1):
                if inner_magic != magic or inner_codec:
                    raise CorruptBatchError("a legacy wrapper's inner message differs in magic or is compressed")
                yield magic, (inner._replace(timestamp=timestamp) if log_append else inner), codec, log_append
        pos = stop


def _decompress(codec: int, magic: int, value: bytes) -> bytes:
    try:
        compression = Compression(codec)
    except ValueError:
        raise CompressionError(f"unknown compression codec {codec} in a legacy message") from None
    if compression == Compression.ZSTD:
        raise CompressionError("zstd needs record batches v2")
    if compression == Compression.LZ4 and magic == 0:
        value = _fix_lz4_header_checksum(value)
    return decompress(compression, value)


def _fix_lz4_header_checksum(frame: bytes) -> bytes:
    """Rewrite the header checksum byte of an LZ4 frame to its correct value.

    Magic-0 writers (Kafka's KafkaLZ4BlockOutputStream before KIP-57) hash the
    4 frame-magic bytes too; Kafka reads magic 0 ignoring that byte.
    """
    if len(frame) < 7 or frame[:4] != _LZ4_MAGIC:
        return frame
    flags = frame[4]
    end = 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)  # content size, dict id
    if len(frame) <= end:
        return frame
    checksum = (_xxh32(frame[4:end]) >> 8) & 0xFF
    return frame[:end] + bytes((checksum,)) + frame[end + 1 :]


_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32: Final = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of a few bytes (an LZ4 frame descriptor); no stripes needed below 16 bytes."""
    n = len(data)
    pos = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed, (seed - _P1) & _M32]
        while pos + 16 <= n:
            for i in range(4):
                (lane,) = struct.unpack_from("<I", data, pos)
                v[i] = (_rotl((v[i] + lane * _P2) & _M32, 13) * _P1) & _M32
                pos += 4
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while pos + 4 <= n:
        (word,) = struct.unpack_from("<I", data, pos)
        h = (_rotl((h + word * _P3) & _M32, 17) * _P4) & _M32
        pos += 4
    while pos < n:
        h = (_rotl((h + data[pos] * _P5) & _M32, 11) * _P1) & _M32
        pos += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


def message_set_to_batch(message_set: bytes | memoryview) -> bytes | memoryview:
    """Convert a produced legacy message set into one record batch v2.

    Bytes that already start with a v2 batch are returned as they are.

    Offsets are 0..n-1 (the broker stamps the base offset); timestamps are
    the v1 messages' (a LogAppendTime wrapper's for its inner ones), -1 for
    v0; the batch keeps the codec of the first wrapper (none if there is none).

    :raises CorruptBatchError: empty set, partial message, bad CRC or layout.
    :raises CompressionError: a wrapper does not decompress.
    """
    if message_set_magic(message_set) == MAGIC:
        return message_set  # Kafka takes v2 batches at Produce v0-2 too
    builder: BatchBuilder | None = None
    for _magic, message, codec, _log_append in iter_messages(message_set):
        if builder is None:
            builder = BatchBuilder(compression=Compression(codec))
        builder.append(message.value, message.key, timestamp_ms=message.timestamp)
    if builder is None:
        raise CorruptBatchError("legacy message set holds no message")
    return builder.build()


def encode_message(magic: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None,
                   *, log_append_time: bool = False, codec: int = 0) -> bytes:
    """One legacy message (offset and size included) with its CRC-32."""
    parts = [bytes((magic, codec | (_ATTR_LOG_APPEND_TIME if magic == 1 and log_append_time else 0)))]
    if magic == 1:
        parts.append(_I64.pack(timestamp))
    for field in (key, value):
        if field is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I32.pack(len(field)))
            parts.append(field)
    body = b"".join(parts)
    crc = zlib.crc32(body)
    return struct.pack(">qiI", offset, len(body) + 4, crc) + body



def down_convert(batches: bytes | memoryview, magic: int, first_offset: int, max_bytes: int,
                 *, at_least_one: bool = True) -> bytes:
    """Convert the v2 batches of ``batches`` into uncompressed messages of ``magic`` (0 or 1).

    Records below ``first_offset`` are dropped, control batches skipped and
    headers dropped; v1 messages carry the record's timestamp (LogAppendTime
    flagged), v0 none. Whole messages up to ``max_bytes``, and the first one
    even if larger when ``at_least_one``. A partial trailing batch is ignored.

    :raises CorruptBatchError, CompressionError: a stored batch does not decode.
    """
    if magic not in _MIN_SIZE:
        raise ValueError(f"legacy magic must be 0 or 1, not {magic}")
    out: list[bytes] = []
    size = 0
    for pos, header in iter_batches(batches):
        if header.magic != MAGIC:
            raise CorruptBatchError(f"stored batch with magic {header.magic}")
        if header.is_control or header.next_offset <= first_offset:
            continue
        log_append = header.log_append_time
        fixed_ts = header.max_timestamp if log_append else None
        records = decode_records(records_section(batches, pos, header), header.records_count, header.base_offset,
                                 header.base_timestamp, fixed_ts, start=first_offset)
        for record in records:
            message = encode_message(magic, record.offset, record.timestamp, record.key, record.value,
                                     log_append_time=log_append)
            if size + len(message) > max_bytes and (size or not at_least_one):
                return b"".join(out)
            out.append(message)
            size += len(message)
    return b"".join(out)
