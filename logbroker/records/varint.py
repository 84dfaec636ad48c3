"""Zigzag varints (Kafka's ``varint``/``varlong``) with table fast paths.

A signed value ``n`` is zigzag-mapped to ``u = (n << 1) ^ (n >> 63)`` and
written 7 bits at a time, least significant group first, the high bit set on
every byte but the last. ``varint`` fields hold int32 values (at most 5 bytes),
``varlong`` fields int64 (at most 10 bytes); one codec serves both.

Hot paths index the tables directly instead of calling these functions:

* ``ENCODED[n]`` is the encoding of ``n`` for ``0 <= n < TABLE_SIZE``
  (never index it with a negative number: Python would wrap around).
* ``DECODED[u]`` is the signed value of the raw 14-bit group ``u`` of a
  one- or two-byte varint: for a first byte ``b < 0x80`` it is ``DECODED[b]``,
  for ``b >= 0x80`` followed by ``c < 0x80`` it is ``DECODED[(b & 0x7F) | (c << 7)]``.
"""

from __future__ import annotations

from logbroker.errors import CorruptBatchError

TABLE_SIZE = 1 << 14
NULL = b"\x01"  # zigzag(-1): the length of a null key, value or header value
ZERO = b"\x00"

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def encode_zigzag(n: int) -> bytes:
    """Encoding of the signed int64 ``n``. Raises ValueError outside int64."""
    if 0 <= n < TABLE_SIZE:
        return ENCODED[n]
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"{n} does not fit a varlong")
    u = (n << 1) ^ (n >> 63)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def decode_zigzag(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode the varint at ``data[pos]``; return ``(value, next position)``.

    ``data`` is bytes (or anything indexable to ints). Raises CorruptBatchError
    if the varint runs past the end of ``data`` or past 10 bytes.
    """
    u = 0
    shift = 0
    try:
        while True:
            b = data[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            if b < 0x80:
                return (u >> 1) ^ -(u & 1), pos
            shift += 7
            if shift > 63:
                raise CorruptBatchError("varint longer than 10 bytes")
    except IndexError:
        raise CorruptBatchError("varint truncated") from None


def zigzag_size(n: int) -> int:
    """Number of bytes the encoding of ``n`` takes."""
    return len(encode_zigzag(n))


def _build_encoded() -> list[bytes]:
    table = []
    for n in range(TABLE_SIZE):
        u = n << 1
        out = bytearray()
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
        table.append(bytes(out))
    return table


ENCODED: list[bytes] = _build_encoded()
DECODED: list[int] = [(u >> 1) ^ -(u & 1) for u in range(1 << 14)]
