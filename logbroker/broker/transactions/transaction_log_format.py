"""The record format of the internal topic ``__transaction_state``, byte for
byte Kafka's (``TransactionLogKey`` v0 and ``TransactionLogValue`` v0/v1),
so a log written here reads like one written by a Kafka coordinator.

One record per transactional id: the key names it, the value is its latest
metadata, a null value (tombstone) deletes it. All integers are big-endian.

Key::

    version int16 (= 0, the coordinator record type) | transactional_id string (int16 length)

Value, version 0 (not flexible)::

    version int16 = 0 | producer_id int64 | producer_epoch int16 | timeout_ms int32
    | status int8 | partitions: int32 count (-1 = null) x (topic string (int16 length)
      | int32 count x partition int32) | last_update_ms int64 | start_ms int64

Value, version 1 (flexible): the same fields in the same order, but arrays
and strings carry an unsigned varint of length + 1 (0 = null), each
partitions entry ends with an empty tagged-field section, and the value ends
with tagged fields, written only when not at their default:

    tag 0 previous_producer_id int64 (-1) | tag 1 next_producer_id int64 (-1)
    | tag 2 client_transaction_version int16 (0)

Kafka writes version 0 at transaction.version 0 and version 1 from 1 on;
the partitions are null in the Empty state. Unknown tags (a later Kafka adds
tag 3, the next producer epoch) are skipped. The last producer epoch is not
stored (it reads back as -1), as in Kafka.
"""

from __future__ import annotations

import struct

from logbroker.broker.internal_topic import RecordFormatError as RecordFormatError, encode_str, read_str
from logbroker.broker.transactions.state import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TransactionState,
    TransactionVersion,
    TxnMetadata,
)

KEY_VERSION = 0
VALUE_VERSIONS = (0, 1)

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_HEAD = struct.Struct(">hqhib")  # version, producer_id, producer_epoch, timeout_ms, status
_TAIL = struct.Struct(">qq")  # last_update_ms, start_ms
_TAG_PREVIOUS_PRODUCER_ID, _TAG_NEXT_PRODUCER_ID, _TAG_CLIENT_VERSION = 0, 1, 2


def encode_key(transactional_id: str) -> bytes:
    return _I16.pack(KEY_VERSION) + encode_str(transactional_id)


def decode_key(raw: bytes) -> str | None:
    """The transactional id, or None for a key version this broker does not know.

    Raises RecordFormatError for a version-0 key that does not parse.
    """
    try:
        (version,) = _I16.unpack_from(raw, 0)
        if version != KEY_VERSION:
            return None
        transactional_id, _ = read_str(raw, 2)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"bad key: {exc}") from exc
    if transactional_id is None:
        raise RecordFormatError("null transactional id in a key")
    return transactional_id


def encode_value(meta: TxnMetadata | None, version: int = 1) -> bytes | None:
    """The value bytes of ``meta`` in value ``version`` (0 or 1); None stays None (a tombstone)."""
    if meta is None:
        return None
    if version not in VALUE_VERSIONS:
        raise ValueError(f"no transaction log value version {version}")
    if meta.state is TransactionState.EMPTY and meta.partitions:
        raise ValueError(f"{meta.transactional_id}: an Empty transaction has no partitions")
    topics = None if meta.state is TransactionState.EMPTY else meta.topics()
    parts = [_HEAD.pack(version, meta.producer_id, meta.producer_epoch, meta.timeout_ms, meta.state.code)]
    if version == 0:
        if topics is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(topics)))
            for topic, partitions in topics:
                parts += (encode_str(topic), _I32.pack(len(partitions)))
                parts += (_I32.pack(p) for p in partitions)
        parts.append(_TAIL.pack(meta.last_update_ms, meta.start_ms))
        return b"".join(parts)
    if topics is None:
        parts.append(_uvarint(0))
    else:
        parts.append(_uvarint(len(topics) + 1))
        for topic, partitions in topics:
            parts += (_compact_str(topic), _uvarint(len(partitions) + 1))
            parts += (_I32.pack(p) for p in partitions)
            parts.append(_uvarint(0))  # the entry's tagged fields
    parts.append(_TAIL.pack(meta.last_update_ms, meta.start_ms))
    tags = []
    if meta.prev_producer_id != NO_PRODUCER_ID:
        tags.append((_TAG_PREVIOUS_PRODUCER_ID, _I64.pack(meta.prev_producer_id)))
    if meta.next_producer_id != NO_PRODUCER_ID:
        tags.append((_TAG_NEXT_PRODUCER_ID, _I64.pack(meta.next_producer_id)))
    if meta.client_version != TransactionVersion.TV_0:
        tags.append((_TAG_CLIENT_VERSION, _I16.pack(meta.client_version)))
    parts.append(_uvarint(len(tags)))
    for tag, data in tags:
        parts += (_uvarint(tag), _uvarint(len(data)), data)
    return b"".join(parts)


def decode_value(transactional_id: str, raw: bytes | None) -> TxnMetadata | None:
    """The metadata in ``raw``; None for a tombstone or a value version this broker does not know.

    Raises RecordFormatError for a known version that does not parse.
    """
    if raw is None:
        return None
    try:
        (version,) = _I16.unpack_from(raw, 0)
        if version not in VALUE_VERSIONS:
            return None
        _, producer_id, epoch, timeout_ms, status = _HEAD.unpack_from(raw, 0)
        state = TransactionState.from_code(status)
        pos = _HEAD.size
        partitions: set[tuple[str, int]] = set()
        if version == 0:
            (count,) = _I32.unpack_from(raw, pos)
            pos += 4
            for _ in range(max(count, 0)):
                topic, pos = read_str(raw, pos)
                (n,) = _I32.unpack_from(raw, pos)
                pos += 4
                if topic is None or n < 0:
                    raise RecordFormatError("null topic or partition list")
                partitions.update((topic, p) for p in struct.unpack_from(f">{n}i", raw, pos))
                pos += 4 * n
        else:
            count, pos = _read_uvarint(raw, pos)
            for _ in range(max(count - 1, 0)):
                topic, pos = _read_compact_str(raw, pos)
                n, pos = _read_uvarint(raw, pos)
                if topic is None or n == 0:
                    raise RecordFormatError("null topic or partition list")
                partitions.update((topic, p) for p in struct.unpack_from(f">{n - 1}i", raw, pos))
                pos = _skip_tags(raw, pos + 4 * (n - 1))
        last_update_ms, start_ms = _TAIL.unpack_from(raw, pos)
        pos += _TAIL.size
        prev_id, next_id, client_version = NO_PRODUCER_ID, NO_PRODUCER_ID, TransactionVersion.TV_0
        if version >= 1:
            n_tags, pos = _read_uvarint(raw, pos)
            for _ in range(n_tags):
                tag, pos = _read_uvarint(raw, pos)
                size, pos = _read_uvarint(raw, pos)
                if pos + size > len(raw):
                    raise RecordFormatError("tagged field runs past the end of the value")
                if tag == _TAG_PREVIOUS_PRODUCER_ID:
                    (prev_id,) = _I64.unpack_from(raw, pos)
                elif tag == _TAG_NEXT_PRODUCER_ID:
                    (next_id,) = _I64.unpack_from(raw, pos)
                elif tag == _TAG_CLIENT_VERSION:
                    (client_version,) = _I16.unpack_from(raw, pos)
                pos += size
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise RecordFormatError(f"bad value: {exc}") from exc
    if state is TransactionState.EMPTY:
        partitions.clear()
    return TxnMetadata(
        transactional_id=transactional_id, producer_id=producer_id, timeout_ms=timeout_ms, state=state,
        last_update_ms=last_update_ms, prev_producer_id=prev_id, next_producer_id=next_id,
        producer_epoch=epoch, last_producer_epoch=NO_PRODUCER_EPOCH, partitions=frozenset(partitions),
        start_ms=start_ms, client_version=client_version,
    )


# -- flexible-version primitives ----------------------------------------------------


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 28:
            raise RecordFormatError("truncated or oversized varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _compact_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _uvarint(len(raw) + 1) + raw


def _read_compact_str(buf: bytes, pos: int) -> tuple[str | None, int]:
    n, pos = _read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = pos + n - 1
    if end > len(buf):
        raise RecordFormatError("string runs past the end of the value")
    return bytes(buf[pos:end]).decode("utf-8"), end


def _skip_tags(buf: bytes, pos: int) -> int:
    n, pos = _read_uvarint(buf, pos)
    for _ in range(n):
        _, pos = _read_uvarint(buf, pos)
        size, pos = _read_uvarint(buf, pos)
        pos += size
    return pos
