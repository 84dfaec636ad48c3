"""Helpers shared by the records tests: hand-editing batches."""

from __future__ import annotations

import struct

import crc32c


def recrc(buf: bytearray, pos: int = 0) -> bytearray:
    """Recompute the CRC of the batch at ``pos`` after editing it; returns ``buf``."""
    size = struct.unpack_from(">i", buf, pos + 8)[0] + 12
    struct.pack_into(">I", buf, pos + 17, crc32c.crc32c(bytes(buf[pos + 21 : pos + size])))
    return buf


def replace_records(batch: bytes, records: bytes, count: int | None = None) -> bytearray:
    """The batch with its records section replaced (length, count and CRC fixed)."""
    buf = bytearray(batch[:61]) + records
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    if count is not None:
        struct.pack_into(">i", buf, 57, count)
    return recrc(buf)


def set_field(batch: bytes, offset: int, fmt: str, value: int, *, fix_crc: bool = True) -> bytearray:
    """The batch with one header field rewritten, the CRC fixed unless told not to."""
    buf = bytearray(batch)
    struct.pack_into(fmt, buf, offset, value)
    return recrc(buf) if fix_crc else buf
