"""The record format of the internal topic ``__share_group_state``.

Each record's key names what it describes and its value the latest state of
that thing (or, for a share-partition delta, a change to it); a null value
(tombstone) deletes it. Replaying the records in offset order rebuilds every
share group's in-flight state. All integers are big-endian; a string is an
int16 byte length (-1 = null) and UTF-8 bytes.

Key (first field ``key_type`` int16)::

    1 PARTITION  key_type | group string | topic string | partition int32
    2 GROUP      key_type | group string
    3 CONFIG     key_type | group string

Value of a PARTITION key (``version`` int16 = 0)::

    version | kind int8 (0 snapshot, 1 delta) | topic_id 16 bytes | start_offset int64
    | run_count int32 | run_count x (first int64 | last int64 | state int8 | delivery_count int16)

A snapshot replaces the share-partition's window; a delta patches the runs it
lists and moves the start offset. Runs list non-trivial offsets only: an
offset in the window that no run names is available with delivery count 0.
Acquired records are written as available with their delivery count (locks
do not survive a restart).

Value of a GROUP key (``version`` int16 = 0)::

    version | group_epoch int32 | created_timestamp int64

Value of a CONFIG key (``version`` int16 = 0)::

    version | count int32 | count x (name string | value string)

Unknown key types and value versions decode to None, so a newer format can be
read by an older broker without failing to start.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

import numpy as np

from logbroker.broker.internal_topic import RecordFormatError as RecordFormatError, encode_str, read_str
from logbroker.broker.share.partition import RUN_DTYPE

KEY_PARTITION = 1
KEY_GROUP = 2
KEY_CONFIG = 3
VALUE_VERSION = 0
KIND_SNAPSHOT = 0
KIND_DELTA = 1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_PARTITION_HEAD = struct.Struct(">hb16sqi")  # version, kind, topic_id, start_offset, run_count
_GROUP_VALUE = struct.Struct(">hiq")  # version, group_epoch, created_timestamp



@dataclass(frozen=True, slots=True)
class PartitionKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class ConfigKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class PartitionValue:
    """A snapshot or delta of one share-partition; ``runs`` has :data:`RUN_DTYPE`."""

    snapshot: bool
    topic_id: uuid.UUID
    start_offset: int
    runs: np.ndarray


@dataclass(frozen=True, slots=True)
class GroupValue:
    group_epoch: int
    created_timestamp: int


@dataclass(frozen=True, slots=True)
class ConfigValue:
    configs: tuple[tuple[str, str], ...]


Key = PartitionKey | GroupKey | ConfigKey
Value = PartitionValue | GroupValue | ConfigValue


def encode_key(key: Key) -> bytes:
    if isinstance(key, PartitionKey):
        return _I16.pack(KEY_PARTITION) + encode_str(key.group_id) + encode_str(key.topic) + _I32.pack(key.partition)
    if isinstance(key, GroupKey):
        return _I16.pack(KEY_GROUP) + encode_str(key.group_id)
    return _I16.pack(KEY_CONFIG) + encode_str(key.group_id)


def encode_value(value: Value | None) -> bytes | None:
    """The value bytes; None stays None (a tombstone)."""
    if value is None:
        return None
    if isinstance(value, PartitionValue):
        runs = np.asarray(value.runs, RUN_DTYPE)
        kind = KIND_SNAPSHOT if value.snapshot else KIND_DELTA
        head = _PARTITION_HEAD.pack(VALUE_VERSION, kind, value.topic_id.bytes, value.start_offset, len(runs))
        return head + runs.tobytes()
    if isinstance(value, GroupValue):
        return _GROUP_VALUE.pack(VALUE_VERSION, value.group_epoch, value.created_timestamp)
    parts = [_I16.pack(VALUE_VERSION), _I32.pack(len(value.configs))]
    for name, text in value.configs:
        parts += (encode_str(name), encode_str(text))
    return b"".join(parts)


def decode_key(raw: bytes) -> Key | None:
    """The key, or None for a key type this version does not know.

    Raises RecordFormatError for a known type that does not parse.
    """
    try:
        (key_type,) = _I16.unpack_from(raw, 0)
        if key_type not in (KEY_PARTITION, KEY_GROUP, KEY_CONFIG):
            return None
        group, pos = read_str(raw, 2)
        if group is None:
            raise RecordFormatError("null group id in a key")
        if key_type == KEY_GROUP:
            return GroupKey(group)
        if key_type == KEY_CONFIG:
            return ConfigKey(group)
        topic, pos = read_str(raw, pos)
        (partition,) = _I32.unpack_from(raw, pos)
        if topic is None:
            raise RecordFormatError("null topic in a partition key")
        return PartitionKey(group, topic, partition)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"bad key: {exc}") from exc


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
        if isinstance(key, PartitionKey):
            _, kind, topic_id, start, count = _PARTITION_HEAD.unpack_from(raw, 0)
            body = raw[_PARTITION_HEAD.size :]
            if len(body) != count * RUN_DTYPE.itemsize or kind not in (KIND_SNAPSHOT, KIND_DELTA):
                raise RecordFormatError("partition value of the wrong length or kind")
            runs = np.frombuffer(bytes(body), RUN_DTYPE)
            return PartitionValue(kind == KIND_SNAPSHOT, uuid.UUID(bytes=topic_id), start, runs)
        if isinstance(key, GroupKey):
            _, epoch, created = _GROUP_VALUE.unpack_from(raw, 0)
            return GroupValue(epoch, created)
        (count,) = _I32.unpack_from(raw, 2)
        pos = 6
        configs = []
        for _ in range(count):
            name, pos = read_str(raw, pos)
            text, pos = read_str(raw, pos)
            if name is None or text is None:
                raise RecordFormatError("null config name or value")
            configs.append((name, text))
        return ConfigValue(tuple(configs))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"bad value: {exc}") from exc
