"""Zigzag varints: tables against the slow path, bounds, corrupt input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import CorruptBatchError
from logbroker.records.varint import DECODED, ENCODED, TABLE_SIZE, decode_zigzag, encode_zigzag, zigzag_size

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (-1, b"\x01"),
        (1, b"\x02"),
        (63, b"\x7e"),
        (-64, b"\x7f"),
        (64, b"\x80\x01"),
        (300, b"\xd8\x04"),
        ((1 << 31) - 1, b"\xfe\xff\xff\xff\x0f"),
        (-(1 << 31), b"\xff\xff\xff\xff\x0f"),
        ((1 << 63) - 1, b"\xfe" + b"\xff" * 8 + b"\x01"),
        (-(1 << 63), b"\xff" * 9 + b"\x01"),
    ],
)
def test_known_encodings(value, encoded):
    assert encode_zigzag(value) == encoded
    assert decode_zigzag(encoded, 0) == (value, len(encoded))
    assert zigzag_size(value) == len(encoded)


@given(INT64)
def test_round_trip(value):
    encoded = encode_zigzag(value)
    assert decode_zigzag(b"junk" + encoded + b"more", 4) == (value, 4 + len(encoded))


def test_encode_table_matches_slow_path():
    assert len(ENCODED) == TABLE_SIZE
    for n in (0, 1, 63, 64, 8191, 8192, TABLE_SIZE - 1):
        assert decode_zigzag(ENCODED[n], 0) == (n, len(ENCODED[n]))
    assert encode_zigzag(TABLE_SIZE) == b"\x80\x80\x02"


@given(st.binary(min_size=2, max_size=2))
def test_decode_table_matches_slow_path(pair):
    b, c = pair
    if b < 0x80:
        assert DECODED[b] == decode_zigzag(pair, 0)[0]
    elif c < 0x80:
        assert DECODED[(b & 0x7F) | (c << 7)] == decode_zigzag(pair, 0)[0]


def test_encode_out_of_range():
    with pytest.raises(ValueError):
        encode_zigzag(1 << 63)
    with pytest.raises(ValueError):
        encode_zigzag(-(1 << 63) - 1)


def test_decode_truncated_and_too_long():
    with pytest.raises(CorruptBatchError, match="truncated"):
        decode_zigzag(b"\x80\x80", 0)
    with pytest.raises(CorruptBatchError, match="truncated"):
        decode_zigzag(b"", 0)
    with pytest.raises(CorruptBatchError, match="10 bytes"):
        decode_zigzag(b"\xff" * 11, 0)
