"""The internal topic's record format: exact bytes, round trips, and what an older broker skips."""

import pytest

from logbroker.broker.groups.offsets_log_format import (
    GroupKey,
    GroupValue,
    OffsetKey,
    OffsetValue,
    RecordFormatError,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)


def test_offset_key_and_value_bytes():
    key = OffsetKey("g", "t", 3)
    assert encode_key(key) == b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    value = OffsetValue(42, 7, None, 1000, -1)
    raw = encode_value(value)
    assert raw == (b"\x00\x00" + (42).to_bytes(8, "big") + (7).to_bytes(4, "big") + b"\xff\xff"
                   + (1000).to_bytes(8, "big") + b"\xff" * 8)
    assert decode_key(encode_key(key)) == key
    assert decode_value(key, raw) == value


@pytest.mark.parametrize("value", [
    GroupValue("consumer", 5, "range", "member-1", 123, 2),
    GroupValue(None, 0, None, None, -1, 0),
    GroupValue("consumer", 1, "ränge", "ü", 1, 0),
])
def test_group_round_trip(value):
    key = GroupKey("grüppe")
    assert encode_key(key)[:2] == b"\x00\x02"
    assert decode_key(encode_key(key)) == key
    assert decode_value(key, encode_value(value)) == value


def test_tombstones_unknown_types_and_versions():
    key = OffsetKey("g", "t", 0)
    assert encode_value(None) is None and decode_value(key, None) is None
    assert decode_key(b"\x00\x09whatever") is None  # a key type from a newer broker
    assert decode_value(key, b"\x00\x05" + b"\x00" * 30) is None  # a newer value version


@pytest.mark.parametrize("raw", [b"\x00\x01\x00\x05ab", b"\x00", b"\x00\x02\xff\xff", b"\x00\x01\x00\x01g\x00\x01t"])
def test_truncated_keys_raise(raw):
    with pytest.raises(RecordFormatError):
        decode_key(raw)


def test_truncated_value_raises():
    with pytest.raises(RecordFormatError):
        decode_value(OffsetKey("g", "t", 0), b"\x00\x00\x00\x00")
