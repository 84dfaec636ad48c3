"""The ``__share_group_state`` record format: round trips, tombstones, and
what an older broker does with records it does not know."""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest

from logbroker.broker.share.partition import ARCHIVED, AVAILABLE, RUN_DTYPE
from logbroker.broker.share.state_log_format import (
    ConfigKey, ConfigValue, GroupKey, GroupValue, PartitionKey, PartitionValue, RecordFormatError,
    decode_key, decode_value, encode_key, encode_value,
)


def runs(*rows):
    return np.array(list(rows), RUN_DTYPE)


@pytest.mark.parametrize("key", [PartitionKey("g", "t", 3), GroupKey("g"), ConfigKey("grüppe")])
def test_keys_round_trip(key):
    assert decode_key(encode_key(key)) == key


def test_partition_values_round_trip():
    topic_id = uuid.uuid4()
    for snapshot in (True, False):
        value = PartitionValue(snapshot, topic_id, 42, runs((42, 50, ARCHIVED, 1), (51, 51, AVAILABLE, 3)))
        raw = encode_value(value)
        assert len(raw) == 2 + 1 + 16 + 8 + 4 + 2 * 19
        back = decode_value(PartitionKey("g", "t", 0), raw)
        assert (back.snapshot, back.topic_id, back.start_offset) == (snapshot, topic_id, 42)
        assert back.runs.tolist() == value.runs.tolist()


def test_group_and_config_values_round_trip():
    assert decode_value(GroupKey("g"), encode_value(GroupValue(7, 123))) == GroupValue(7, 123)
    configs = ConfigValue((("errors.deadletterqueue.topic.name", "dlq"), ("share.auto.offset.reset", "earliest")))
    assert decode_value(ConfigKey("g"), encode_value(configs)) == configs


def test_tombstones_and_unknown_versions_decode_to_none():
    assert encode_value(None) is None
    assert decode_value(GroupKey("g"), None) is None
    assert decode_value(GroupKey("g"), struct.pack(">hiq", 9, 1, 2)) is None
    assert decode_key(struct.pack(">h", 99) + b"whatever") is None


def test_truncated_records_raise_a_format_error():
    raw = encode_value(PartitionValue(True, uuid.uuid4(), 0, runs((0, 1, ARCHIVED, 1))))
    with pytest.raises(RecordFormatError):
        decode_value(PartitionKey("g", "t", 0), raw[:-3])
    with pytest.raises(RecordFormatError):
        decode_key(encode_key(PartitionKey("g", "t", 0))[:-2])
