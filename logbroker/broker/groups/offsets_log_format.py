"""The record format of the internal topic ``__consumer_offsets``.

Each record's key names what it describes and its value the latest state of
that thing; a null value (tombstone) deletes it. Replaying the records in
offset order rebuilds every group's offsets and metadata. All integers are
big-endian; a string is an int16 byte length (-1 = null) and UTF-8 bytes.

Key (first field ``key_type`` int16)::

    1 OFFSET  key_type | group string | topic string | partition int32
    2 GROUP   key_type | group string
    3 CONSUMER_GROUP  key_type | group string   (a KIP-848 consumer group)

Value of an OFFSET key (``version`` int16 = 0)::

    version | offset int64 | leader_epoch int32 | metadata string (nullable)
    | commit_timestamp int64 | expire_timestamp int64 (-1 = none)

Value of a GROUP key (``version`` int16 = 0)::

    version | protocol_type string (nullable) | generation int32
    | protocol_name string (nullable) | leader string (nullable)
    | state_timestamp int64 | member_count int32

Value of a CONSUMER_GROUP key (``version`` int16 = 0)::

    version | group_epoch int32 | state_timestamp int64

A group has a GROUP or a CONSUMER_GROUP record, never both: converting a
group from one kind to the other writes the new record and a tombstone for
the old one.

Members are not persisted (``member_count`` is informational): after a
restart every group is Empty. Unknown key types and value versions are
skipped by :func:`decode_key` / :func:`decode_value` returning None, so a
newer format can be read by an older broker without failing to start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from logbroker.broker.internal_topic import RecordFormatError as RecordFormatError, encode_str, read_str

KEY_OFFSET = 1
KEY_GROUP = 2
KEY_CONSUMER_GROUP = 3
VALUE_VERSION = 0

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_OFFSET_HEAD = struct.Struct(">hqi")  # version, offset, leader_epoch
_OFFSET_TAIL = struct.Struct(">qq")  # commit_timestamp, expire_timestamp
_GROUP_MID = struct.Struct(">i")  # generation
_GROUP_TAIL = struct.Struct(">qi")  # state_timestamp, member_count
_CONSUMER_GROUP = struct.Struct(">hiq")  # version, group_epoch, state_timestamp



@dataclass(frozen=True, slots=True)
class OffsetKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupValue:
    """What survives a restart of a KIP-848 consumer group: its epoch (members rejoin)."""

    group_epoch: int
    state_timestamp: int


@dataclass(frozen=True, slots=True)
class OffsetValue:
    """One committed offset; ``expire_timestamp`` -1 means "retention decides"."""

    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class GroupValue:
    """What survives a restart of a group: its generation and protocol."""

    protocol_type: str | None
    generation: int
    protocol_name: str | None
    leader: str | None
    state_timestamp: int
    member_count: int


Key = OffsetKey | GroupKey | ConsumerGroupKey
Value = OffsetValue | GroupValue | ConsumerGroupValue


def encode_key(key: Key) -> bytes:
    if isinstance(key, OffsetKey):
        return _I16.pack(KEY_OFFSET) + encode_str(key.group_id) + encode_str(key.topic) + _I32.pack(key.partition)
    if isinstance(key, ConsumerGroupKey):
        return _I16.pack(KEY_CONSUMER_GROUP) + encode_str(key.group_id)
    return _I16.pack(KEY_GROUP) + encode_str(key.group_id)


def encode_value(value: Value | None) -> bytes | None:
    """The value bytes; None stays None (a tombstone)."""
    if value is None:
        return None
    if isinstance(value, ConsumerGroupValue):
        return _CONSUMER_GROUP.pack(VALUE_VERSION, value.group_epoch, value.state_timestamp)
    if isinstance(value, OffsetValue):
        return b"".join((
            _OFFSET_HEAD.pack(VALUE_VERSION, value.offset, value.leader_epoch),
            encode_str(value.metadata),
            _OFFSET_TAIL.pack(value.commit_timestamp, value.expire_timestamp),
        ))
    return b"".join((
        _I16.pack(VALUE_VERSION),
        encode_str(value.protocol_type),
        _GROUP_MID.pack(value.generation),
        encode_str(value.protocol_name),
        encode_str(value.leader),
        _GROUP_TAIL.pack(value.state_timestamp, value.member_count),
    ))


def decode_key(raw: bytes) -> Key | None:
    """The key, or None for a key type this version does not know.

    Raises RecordFormatError for a known type that does not parse.
    """
    try:
        (key_type,) = _I16.unpack_from(raw, 0)
        if key_type == KEY_OFFSET:
            group, pos = read_str(raw, 2)
            topic, pos = read_str(raw, pos)
            (partition,) = _I32.unpack_from(raw, pos)
            if group is None or topic is None:
                raise RecordFormatError("null group or topic in an offset key")
            return OffsetKey(group, topic, partition)
        if key_type in (KEY_GROUP, KEY_CONSUMER_GROUP):
            group, _ = read_str(raw, 2)
            if group is None:
                raise RecordFormatError("null group in a group key")
            return GroupKey(group) if key_type == KEY_GROUP else ConsumerGroupKey(group)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"bad key: {exc}") from exc
    return None


def decode_value(key: Key, raw: bytes | None) -> Value | None:
    """The value for ``key``; None for a tombstone or an unknown value version.

    Raises RecordFormatError for a known version that does not parse.
    """
    if raw is None:
        return None
    try:
        (version,) = _I16.unpack_from(raw, 0)
        if version != VALUE_VERSION:
            return None
        if isinstance(key, OffsetKey):
            _, offset, epoch = _OFFSET_HEAD.unpack_from(raw, 0)
            metadata, pos = read_str(raw, _OFFSET_HEAD.size)
            commit_ts, expire_ts = _OFFSET_TAIL.unpack_from(raw, pos)
            return OffsetValue(offset, epoch, metadata, commit_ts, expire_ts)
        if isinstance(key, ConsumerGroupKey):
            _, group_epoch, state_ts = _CONSUMER_GROUP.unpack_from(raw, 0)
            return ConsumerGroupValue(group_epoch, state_ts)
        protocol_type, pos = read_str(raw, 2)
        (generation,) = _GROUP_MID.unpack_from(raw, pos)
        protocol_name, pos = read_str(raw, pos + _GROUP_MID.size)
        leader, pos = read_str(raw, pos)
        state_ts, member_count = _GROUP_TAIL.unpack_from(raw, pos)
        return GroupValue(protocol_type, generation, protocol_name, leader, state_ts, member_count)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"bad value: {exc}") from exc
