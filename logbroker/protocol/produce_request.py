"""A hand-written reader of Produce request bodies (v3-v9) that never copies records.

kio's reader returns each partition's records as a new ``bytes``: one copy
of every produced byte before the broker has looked at it. This reader
returns them as read-only memoryview slices of the request frame, which the
log writes to disk with ``pwritev`` as they are. Everything else matches
kio's objects where the broker reads them (the same attribute names;
``acks`` an int, ``timeout`` a timedelta); ``tests/protocol/test_produce_request.py``
proves the fields equal kio's for every version served.

Bytes that do not fit the schema raise :class:`~logbroker.errors.ProtocolError`
(the adapter's one boundary translates it as for kio's own errors).
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from typing import Final

from logbroker.errors import ProtocolError

__all__ = ["PRODUCE_REQUEST_VERSIONS", "ProducePartitionData", "ProduceRequestBody", "ProduceTopicData",
           "read_produce_request"]

PRODUCE_REQUEST_VERSIONS: Final = range(3, 10)
_FIRST_FLEXIBLE: Final = 9
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_ACKS_TIMEOUT: Final = struct.Struct(">hi")


@dataclass(frozen=True, slots=True)
class ProducePartitionData:
    index: int
    records: memoryview | None
    """The partition's record batches: a read-only slice of the request frame."""


@dataclass(frozen=True, slots=True)
class ProduceTopicData:
    name: str
    partition_data: tuple[ProducePartitionData, ...]


@dataclass(frozen=True, slots=True)
class ProduceRequestBody:
    transactional_id: str | None
    acks: int
    timeout: datetime.timedelta
    topic_data: tuple[ProduceTopicData, ...]


class _Reader:
    __slots__ = ("view", "pos", "end")

    def __init__(self, view: memoryview, pos: int) -> None:
        self.view, self.pos, self.end = view, pos, len(view)

    def take(self, n: int) -> int:
        """Start of the next ``n`` bytes, which are consumed."""
        start = self.pos
        if n < 0 or start + n > self.end:
            raise ProtocolError(f"Produce request truncated: {n} bytes wanted at {start} of {self.end}")
        self.pos = start + n
        return start

    def i32(self) -> int:
        value: int = _I32.unpack_from(self.view, self.take(4))[0]
        return value

    def uvarint(self) -> int:
        view, pos, end = self.view, self.pos, self.end
        value = shift = 0
        while True:
            if pos >= end or shift > 28:
                raise ProtocolError("Produce request: bad unsigned varint")
            byte = view[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7

    def length(self, flexible: bool, nullable: bool, wide: bool) -> int:
        """A string, bytes or array length: compact (``n + 1``) or int16/int32; -1 is null."""
        if flexible:
            n = self.uvarint() - 1
        elif wide:
            n = self.i32()
        else:
            n = _I16.unpack_from(self.view, self.take(2))[0]
        if n < -1 or (n == -1 and not nullable):
            raise ProtocolError(f"Produce request: length {n} where none may be null")
        return n

    def string(self, flexible: bool, nullable: bool) -> str | None:
        n = self.length(flexible, nullable, wide=False)
        if n < 0:
            return None
        start = self.take(n)
        try:
            return str(self.view[start : start + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"Produce request: a string is not UTF-8 ({exc})") from exc

    def array_length(self, flexible: bool, smallest: int) -> int:
        n = self.length(flexible, nullable=False, wide=True)
        if n * smallest > self.end - self.pos:  # no allocation beyond what the bytes can hold
            raise ProtocolError(f"Produce request: an array of {n} cannot fit in {self.end - self.pos} bytes")
        return n

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def read_produce_request(buffer: bytes | memoryview, offset: int, version: int) -> ProduceRequestBody:
    """The Produce request body of ``version`` starting at ``offset`` of ``buffer``.

    :raises ProtocolError: the bytes do not fit the schema.
    """
    if version not in PRODUCE_REQUEST_VERSIONS:
        raise ValueError(f"Produce v{version} is not read here")
    flexible = version >= _FIRST_FLEXIBLE
    view = memoryview(buffer)
    if not view.readonly:
        view = view.toreadonly()
    r = _Reader(view, offset)
    transactional_id = r.string(flexible, nullable=True)
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(view, r.take(6))
    topics = []
    for _ in range(r.array_length(flexible, 2)):
        name = r.string(flexible, nullable=False)
        assert name is not None
        partitions = []
        for _ in range(r.array_length(flexible, 5)):
            index = r.i32()
            n = r.length(flexible, nullable=True, wide=True)
            records = None if n < 0 else view[r.take(n) : r.pos]
            if flexible:
                r.skip_tags()
            partitions.append(ProducePartitionData(index, records))
        if flexible:
            r.skip_tags()
        topics.append(ProduceTopicData(name, tuple(partitions)))
    if flexible:
        r.skip_tags()
    return ProduceRequestBody(transactional_id, acks, datetime.timedelta(milliseconds=timeout_ms), tuple(topics))
