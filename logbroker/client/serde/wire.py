"""Confluent's wire format for values that name their schema.

Byte layout::

    0        magic byte, 0
    1..4     schema id, unsigned 32-bit big-endian
    5..      Protobuf only: the message-index list, the path of the message
             type in its .proto file (top-level index, then nested indexes),
             as zigzag varints: the count, then each index; the common
             ``[0]`` (the file's first message) is the single byte 0
    ...      the payload: Avro binary, UTF-8 JSON, or the Protobuf message

Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from logbroker.errors import ClientError

__all__ = ["MAGIC", "SerializationError", "frame", "read_header", "read_message_indexes", "message_indexes_bytes"]

MAGIC = 0
_MAX_INDEXES = 100_000  # Confluent's bound on the index count: a wild count is garbage, not a deep path


class SerializationError(ClientError):
    """A value that does not fit its schema, or bytes that are not a value in
    Confluent's wire format (or do not decode with the schema they name)."""


def _zigzag_varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def message_indexes_bytes(indexes: Sequence[int]) -> bytes:
    """The message-index list as Confluent writes it (``[0]`` -> ``b"\\x00"``)."""
    if not indexes:
        raise ValueError("a message-index list names at least the top-level message")
    if list(indexes) == [0]:
        return b"\x00"
    return _zigzag_varint(len(indexes)) + b"".join(_zigzag_varint(i) for i in indexes)


def frame(schema_id: int, payload: bytes, message_indexes: Sequence[int] | None = None) -> bytes:
    """``payload`` in the wire format, naming ``schema_id`` (and, for Protobuf,
    the message type by ``message_indexes``)."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
    head = bytes((MAGIC,)) + schema_id.to_bytes(4, "big")
    if message_indexes is not None:
        head += message_indexes_bytes(message_indexes)
    return head + payload


def read_header(data: bytes | bytearray | memoryview) -> int:
    """The schema id ``data`` names; the rest starts at byte 5.

    :raises SerializationError: too short, or not magic byte 0.
    """
    if len(data) < 5:
        raise SerializationError(f"{len(data)} bytes are too short for Confluent's wire format "
                                 "(magic byte 0 and a 4-byte schema id)")
    if data[0] != MAGIC:
        hint = " (magic byte 1: a schema GUID, which this client does not read)" if data[0] == 1 else ""
        raise SerializationError(f"not in Confluent's wire format: the first byte is 0x{data[0]:02x}, not 0{hint}")
    return int.from_bytes(data[1:5], "big")


def _read_varint(data: bytes | bytearray | memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise SerializationError("the message-index list ends in the middle of a number")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), offset
        if shift > 63:
            raise SerializationError("a message index is longer than 10 bytes")


def read_message_indexes(data: bytes | bytearray | memoryview, offset: int = 5) -> tuple[list[int], int]:
    """The Protobuf message-index list at ``offset`` and where the payload starts.

    :raises SerializationError: a truncated or absurd list.
    """
    count, offset = _read_varint(data, offset)
    if count == 0:
        return [0], offset
    if not 0 < count <= _MAX_INDEXES:
        raise SerializationError(f"the message-index list says it has {count} entries")
    indexes = []
    for _ in range(count):
        index, offset = _read_varint(data, offset)
        indexes.append(index)
    return indexes, offset
