"""Codecs for the old API versions kio 0.6.5 has no schema for (Kafka 4 dropped them, KIP-896).

Produce v0-2, Fetch v0-3, ListOffsets v0, OffsetCommit v0-1 and OffsetFetch v0
are decoded into the kio request class of the lowest version kio has
(:data:`STAND_IN`), so the handlers take the shapes they already know;
``Request.api_version`` keeps the real version. Layouts, from Kafka's
``clients/src/main/resources/common/message/*.json`` (all non-flexible,
request header v1, response header v0)::

    ProduceRequest v0-2   acks i16, timeout_ms i32,
                          [name str, [index i32, records bytes]]
    ProduceResponse v0    [name, [index i32, error i16, base_offset i64
                          (v2: , log_append_time_ms i64)]] (v1+: , throttle_time_ms i32)
    FetchRequest v0-3     replica_id i32, max_wait_ms i32, min_bytes i32,
                          (v3: max_bytes i32,) [topic str, [partition i32,
                          fetch_offset i64, partition_max_bytes i32]]
    FetchResponse v0-3    (v1+: throttle_time_ms i32,) [topic, [partition i32,
                          error i16, high_watermark i64, records bytes]]
    ListOffsetsRequest v0 replica_id i32, [name, [partition i32, timestamp i64,
                          max_num_offsets i32]]
    ListOffsetsResponse v0 [name, [partition i32, error i16, old_style_offsets [i64]]]
    OffsetCommitRequest v0 group_id str, [name, [partition i32, offset i64, metadata str?]]
    OffsetCommitRequest v1 group_id, generation_id i32, member_id str,
                          [name, [partition, offset, commit_timestamp i64, metadata]]
    OffsetCommitResponse v0-1 = v2;  OffsetFetchRequest/Response v0 = v1

Produce and Fetch answers are written here from the fast path's plain
values (:class:`~.fastpath.ProducePartition`, :class:`~.fastpath.FetchPartition`);
the records in a Fetch answer must already be a legacy message set.
ListOffsets v0 is written from the handler's v1 body: ``old_style_offsets``
is the one offset found (none on an error or offset -1); clients ask for
``max_num_offsets`` 1, and logbroker has no per-segment offset list.
OffsetCommit v0-1 and OffsetFetch v0 answers have the stand-in's layout.

A missing Fetch ``max_bytes`` (v0-2) is Kafka's default, 2**31-1; OffsetCommit
v0 commits as generation -1 with no member (a simple commit); v1's
per-partition commit timestamp is ignored, as Kafka 4's coordinator does.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from kio.index import load_payload_module
from kio.schema.errors import ErrorCode
from kio.static.constants import EntityType

from logbroker.errors import LocalProtocolError, ProtocolError

from .fastpath import Encoded, FetchPartition, ProducePartition
from .versions import ApiKey

__all__ = [
    "LEGACY_VERSIONS",
    "STAND_IN",
    "decode_legacy_body",
    "encode_legacy_fetch_response",
    "encode_legacy_produce_response",
    "encode_list_offsets_v0",
    "is_legacy",
]

STAND_IN: Final[Mapping[ApiKey, int]] = MappingProxyType(
    {
        ApiKey.PRODUCE: 3,
        ApiKey.FETCH: 4,
        ApiKey.LIST_OFFSETS: 1,
        ApiKey.OFFSET_COMMIT: 2,
        ApiKey.OFFSET_FETCH: 1,
    }
)
"""The kio version whose classes stand in for an old version of each key."""

LEGACY_VERSIONS: Final[Mapping[ApiKey, range]] = MappingProxyType(
    {key: range(stand_in) for key, stand_in in STAND_IN.items()}
)
"""The versions decoded here, per key."""

_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_SIZE_AND_ID: Final = struct.Struct(">ii")
_MAX_FRAME: Final = 2**31 - 1
_DEFAULT_FETCH_MAX_BYTES: Final = 2**31 - 1


def is_legacy(api_key: int, api_version: int) -> bool:
    """True when (key, version) is decoded and answered by this module."""
    versions = LEGACY_VERSIONS.get(api_key)  # type: ignore[call-overload]  # an int finds its ApiKey (IntEnum hashes as int)
    return versions is not None and api_version in versions


# -- reading -----------------------------------------------------------------------


class _Cursor:
    """Reads big-endian fields from a request payload; raises ProtocolError past its end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def _take(self, layout: struct.Struct) -> int:
        try:
            (value,) = layout.unpack_from(self.buf, self.pos)
        except struct.error as exc:
            raise ProtocolError(f"request ends inside a field at byte {self.pos}") from exc
        self.pos += layout.size
        return int(value)

    def i16(self) -> int:
        return self._take(_I16)

    def i32(self) -> int:
        return self._take(_I32)

    def i64(self) -> int:
        return self._take(_I64)

    def _raw(self, length: int) -> bytes | memoryview:
        end = self.pos + length
        if length < 0 or end > len(self.buf):
            raise ProtocolError(f"a field of {length} bytes overruns the request at byte {self.pos}")
        data = self.buf[self.pos : end]
        self.pos = end
        return data

    def nullable_string(self) -> str | None:
        length = self.i16()
        if length == -1:
            return None
        try:
            return bytes(self._raw(length)).decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("a string is not UTF-8") from exc

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise ProtocolError("null where a string is required")
        return value

    def nullable_bytes(self) -> bytes | memoryview | None:
        length = self.i32()
        return None if length == -1 else self._raw(length)

    def array(self, read: Callable[[], Any]) -> tuple[Any, ...]:
        count = self.i32()
        if count < 0 or count > len(self.buf) - self.pos:  # every element takes at least a byte
            raise ProtocolError(f"array of {count} elements at byte {self.pos}")
        return tuple(read() for _ in range(count))


def _module(api_key: ApiKey) -> Any:
    return load_payload_module(api_key, STAND_IN[api_key], EntityType.request)


def _produce(c: _Cursor, version: int) -> Any:
    m = _module(ApiKey.PRODUCE)
    acks = c.i16()
    timeout = c.i32()

    def partition() -> Any:
        index = c.i32()
        return m.PartitionProduceData(index=index, records=c.nullable_bytes())

    def topic() -> Any:
        name = c.string()
        return m.TopicProduceData(name=name, partition_data=c.array(partition))

    return m.ProduceRequest(
        transactional_id=None,
        acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout),
        topic_data=c.array(topic),
    )


def _fetch(c: _Cursor, version: int) -> Any:
    m = _module(ApiKey.FETCH)
    replica_id = c.i32()
    max_wait = c.i32()
    min_bytes = c.i32()
    max_bytes = c.i32() if version >= 3 else _DEFAULT_FETCH_MAX_BYTES

    def partition() -> Any:
        index = c.i32()
        offset = c.i64()
        return m.FetchPartition(partition=index, fetch_offset=offset, partition_max_bytes=c.i32())

    def topic() -> Any:
        name = c.string()
        return m.FetchTopic(topic=name, partitions=c.array(partition))

    return m.FetchRequest(
        replica_id=replica_id,
        max_wait=datetime.timedelta(milliseconds=max_wait),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        topics=c.array(topic),
    )


def _list_offsets(c: _Cursor, version: int) -> Any:
    m = _module(ApiKey.LIST_OFFSETS)
    replica_id = c.i32()

    def partition() -> Any:
        index = c.i32()
        timestamp = c.i64()
        c.i32()  # max_num_offsets: one offset is answered (see the module docstring)
        return m.ListOffsetsPartition(partition_index=index, timestamp=timestamp)

    def topic() -> Any:
        name = c.string()
        return m.ListOffsetsTopic(name=name, partitions=c.array(partition))

    return m.ListOffsetsRequest(replica_id=replica_id, topics=c.array(topic))


def _offset_commit(c: _Cursor, version: int) -> Any:
    m = _module(ApiKey.OFFSET_COMMIT)
    group_id = c.string()
    generation, member_id = (c.i32(), c.string()) if version >= 1 else (-1, "")

    def partition() -> Any:
        index = c.i32()
        offset = c.i64()
        if version >= 1:
            c.i64()  # commit_timestamp
        return m.OffsetCommitRequestPartition(
            partition_index=index, committed_offset=offset, committed_metadata=c.nullable_string()
        )

    def topic() -> Any:
        name = c.string()
        return m.OffsetCommitRequestTopic(name=name, partitions=c.array(partition))

    return m.OffsetCommitRequest(
        group_id=group_id,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        retention_time=datetime.timedelta(milliseconds=-1),
        topics=c.array(topic),
    )


def _offset_fetch(c: _Cursor, version: int) -> Any:
    m = _module(ApiKey.OFFSET_FETCH)
    group_id = c.string()

    def topic() -> Any:
        name = c.string()
        return m.OffsetFetchRequestTopic(name=name, partition_indexes=c.array(c.i32))

    return m.OffsetFetchRequest(group_id=group_id, topics=c.array(topic))


_DECODERS: Final[Mapping[ApiKey, Callable[[_Cursor, int], Any]]] = MappingProxyType(
    {
        ApiKey.PRODUCE: _produce,
        ApiKey.FETCH: _fetch,
        ApiKey.LIST_OFFSETS: _list_offsets,
        ApiKey.OFFSET_COMMIT: _offset_commit,
        ApiKey.OFFSET_FETCH: _offset_fetch,
    }
)


def decode_legacy_body(api_key: int, api_version: int, buf: bytes | memoryview, pos: int) -> Any:
    """Decode the body at ``buf[pos:]`` of an old request into its stand-in kio class.

    Trailing bytes are ignored, as for every request.

    :raises ProtocolError: the bytes do not fit the layout.
    :raises LocalProtocolError: (key, version) is not one of :data:`LEGACY_VERSIONS`.
    """
    if not is_legacy(api_key, api_version):
        raise LocalProtocolError(f"no legacy codec for API key {api_key} v{api_version}")
    return _DECODERS[ApiKey(api_key)](_Cursor(buf, pos), api_version)


# -- writing -----------------------------------------------------------------------


def _string(value: str) -> bytes:
    data = value.encode()
    if len(data) > 32767:
        raise LocalProtocolError(f"string of {len(data)} bytes does not fit an int16 length")
    return _I16.pack(len(data)) + data


def _frame(correlation_id: int, pieces: list[bytes | memoryview]) -> list[bytes | memoryview]:
    size = 4 + sum(map(len, pieces))
    if size > _MAX_FRAME:
        raise LocalProtocolError(f"frame of {size} bytes exceeds the int32 size")
    return [_SIZE_AND_ID.pack(size, correlation_id), *pieces]


def encode_legacy_produce_response(
    version: int,
    correlation_id: int,
    topics: Sequence[tuple[str, Sequence[ProducePartition]]],
    *,
    throttle_ms: int = 0,
) -> Encoded:
    """Encode a ProduceResponse v0-2 (fields a version lacks are dropped).

    :raises LocalProtocolError: ``version`` is not 0-2 or a value does not fit.
    """
    if version not in LEGACY_VERSIONS[ApiKey.PRODUCE]:
        raise LocalProtocolError(f"no legacy Produce encoder for v{version}")
    layout = struct.Struct(">ihqq" if version >= 2 else ">ihq")
    pieces: list[bytes | memoryview] = [_I32.pack(len(topics))]
    try:
        for name, partitions in topics:
            pieces.append(_string(name) + _I32.pack(len(partitions)))
            for p in partitions:
                values = (p.index, p.error_code, p.base_offset) + ((p.log_append_time,) if version >= 2 else ())
                pieces.append(layout.pack(*values))
        if version >= 1:
            pieces.append(_I32.pack(throttle_ms))
    except (struct.error, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode ProduceResponse v{version}: {exc}") from exc
    return Encoded([b"".join(_frame(correlation_id, pieces))])


_FETCH_PARTITION: Final = struct.Struct(">ihqi")  # index, error, high watermark, records length


def encode_legacy_fetch_response(
    version: int,
    correlation_id: int,
    topics: Sequence[tuple[str, Sequence[FetchPartition]]],
    *,
    throttle_ms: int = 0,
) -> Encoded:
    """Encode a FetchResponse v0-3; ``records`` must be legacy messages of the
    version's magic (v0-1: magic 0, v2-3: magic 1) or empty.

    :raises LocalProtocolError: ``version`` is not 0-3 or a value does not fit.
    """
    if version not in LEGACY_VERSIONS[ApiKey.FETCH]:
        raise LocalProtocolError(f"no legacy Fetch encoder for v{version}")
    head = _I32.pack(throttle_ms) if version >= 1 else b""
    pieces: list[bytes | memoryview] = [head + _I32.pack(len(topics))]
    try:
        for name, partitions in topics:
            pieces.append(_string(name) + _I32.pack(len(partitions)))
            for p in partitions:
                records = p.records if p.records is not None else b""
                pieces.append(_FETCH_PARTITION.pack(p.index, p.error_code, p.high_watermark, len(records)))
                if records:
                    pieces.append(records)
    except (struct.error, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode FetchResponse v{version}: {exc}") from exc
    return Encoded([b"".join(_frame(correlation_id, pieces))])  # records are fresh (converted) bytes


def encode_list_offsets_v0(correlation_id: int, body: Any) -> list[bytes | memoryview]:
    """Encode a ListOffsetsResponse v0 from the handler's v1 ``body`` (see the module docstring).

    :raises LocalProtocolError: a value does not fit.
    """
    pieces: list[bytes | memoryview] = [_I32.pack(len(body.topics))]
    try:
        for topic in body.topics:
            pieces.append(_string(topic.name) + _I32.pack(len(topic.partitions)))
            for p in topic.partitions:
                found = p.error_code == ErrorCode.none and p.offset >= 0
                offsets = _I32.pack(1) + _I64.pack(p.offset) if found else _I32.pack(0)
                pieces.append(_I32.pack(p.partition_index) + _I16.pack(p.error_code) + offsets)
    except (struct.error, ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode ListOffsetsResponse v0: {exc}") from exc
    return [b"".join(_frame(correlation_id, pieces))]
