"""records/legacy.py: legacy message sets (magic 0/1) <-> record batches v2.

kafka-python's ``LegacyRecordBatchBuilder``/``LegacyRecordBatch`` (its own
implementation of Kafka's LegacyRecord, CRC-32 and wrapper messages) writes
the sets we up-convert and reads the ones we down-convert.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records import (
    BatchBuilder,
    Compression,
    build_batch,
    decode_batch,
    down_convert,
    message_set_to_batch,
)
from logbroker.records.legacy import _xxh32, encode_message

KEYS = st.none() | st.binary(max_size=16)
VALUES = st.none() | st.binary(max_size=64)
CODECS = st.sampled_from([0, 1, 2, 3])  # none, gzip, snappy, lz4: what magic 0/1 had


def legacy_set(magic: int, codec: int, records: list[tuple[int, bytes | None, bytes | None]]) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, codec, 1 << 22)
    for i, (ts, key, value) in enumerate(records):
        builder.append(i, ts if magic else None, key, value)
    return bytes(builder.build())


def read_legacy(buf: bytes) -> list[tuple]:
    """(offset, timestamp, timestamp_type, key, value) of every message, via kafka-python."""
    records = MemoryRecords(buf)
    out = []
    while records.has_next():
        batch = records.next_batch()
        for r in batch:
            assert r.validate_crc()
            out.append((r.offset, r.timestamp, r.timestamp_type, r.key, r.value))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    magic=st.sampled_from([0, 1]), codec=CODECS,
    records=st.lists(st.tuples(st.integers(0, 2**41), KEYS, VALUES), min_size=1, max_size=20),
)
def test_up_then_down_keeps_every_record(magic: int, codec: int, records: list) -> None:
    batch = message_set_to_batch(legacy_set(magic, codec, records))
    decoded = decode_batch(batch)
    assert decoded.header.compression == codec  # the producer's codec is kept
    assert decoded.header.producer_id == -1
    # v1 timestamps are kept; v0 messages have none.
    assert [(r.offset, r.timestamp, r.key, r.value) for r in decoded.records] == [
        (i, ts if magic else -1, k, v) for i, (ts, k, v) in enumerate(records)
    ]
    back = read_legacy(down_convert(batch, magic, 0, 1 << 30))
    assert [(o, k, v) for o, _ts, _tt, k, v in back] == [(i, k, v) for i, (_ts, k, v) in enumerate(records)]
    if magic:
        assert [ts for _o, ts, _tt, _k, _v in back] == [ts for ts, _k, _v in records]
    else:
        assert all(ts is None for _o, ts, _tt, _k, _v in back)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    magic=st.sampled_from([0, 1]),
    codec=st.sampled_from(list(Compression)),
    base=st.integers(0, 2**40),
    records=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=15),
    first=st.integers(0, 20),
)
def test_down_convert_drops_records_below_the_fetch_offset_and_headers(
    magic: int, codec: Compression, base: int, records: list, first: int
) -> None:
    builder = BatchBuilder(compression=codec, base_offset=base)
    for i, (key, value) in enumerate(records):
        builder.append(value, key, headers=[("h", b"dropped")], timestamp_ms=1_700_000_000_000 + i)
    out = read_legacy(down_convert(builder.build(), magic, base + first, 1 << 30))
    expected = [(base + i, k, v) for i, (k, v) in enumerate(records) if i >= first]
    assert [(o, k, v) for o, _ts, _tt, k, v in out] == expected


def test_control_batches_are_skipped_and_log_append_time_flagged() -> None:
    first = BatchBuilder(base_offset=0, producer_id=7, producer_epoch=0, base_sequence=0, transactional=True)
    first.append(b"aborted-but-read-uncommitted", timestamp_ms=10)
    marker = BatchBuilder(base_offset=1, producer_id=7, producer_epoch=0, control=True, transactional=True)
    marker.append(b"\x00\x00\x00\x00\x00\x00", b"\x00\x00\x00\x00", timestamp_ms=11)  # an ABORT marker
    after = BatchBuilder(base_offset=2, log_append_time=True)
    after.append(b"later", timestamp_ms=99)
    stored = first.build() + marker.build() + after.build()
    out = read_legacy(down_convert(stored, 1, 0, 1 << 30))
    # As Kafka's RecordsUtil.downConvert: control batches go, transactional data stays (old clients
    # read uncommitted); a LogAppendTime batch's messages carry its max timestamp and the flag.
    assert [(o, ts, tt, v) for o, ts, tt, _k, v in out] == [
        (0, 10, 0, b"aborted-but-read-uncommitted"),
        (2, 99, 1, b"later"),
    ]


def test_max_bytes_cuts_at_whole_messages_but_gives_at_least_one() -> None:
    stored = build_batch([(None, b"x" * 100)] * 5)
    one = len(encode_message(1, 0, 0, None, b"x" * 100))
    assert len(down_convert(stored, 1, 0, 3 * one)) == 3 * one
    assert len(down_convert(stored, 1, 0, 3 * one - 1)) == 2 * one
    assert len(down_convert(stored, 1, 0, 1)) == one  # the first even if larger
    assert down_convert(stored, 1, 0, 1, at_least_one=False) == b""
    assert down_convert(stored[:-1], 1, 0, 1 << 20) == b""  # a partial trailing batch is left out


def test_v2_batches_pass_through_unchanged() -> None:
    batch = build_batch([(b"k", b"v")])
    assert message_set_to_batch(batch) is batch


def _v0(key: bytes | None, value: bytes | None, attributes: int = 0) -> bytes:
    return encode_message(0, 0, -1, key, value, codec=attributes)


@pytest.mark.parametrize(("data", "error"), [
    (b"", CorruptBatchError),
    (_v0(b"k", b"v")[:-1], CorruptBatchError),  # partial message
    (_v0(b"k", b"v") + b"\x00" * 5, CorruptBatchError),  # trailing partial header
    (bytearray(_v0(b"k", b"v"))[:-1] + b"w", CorruptBatchError),  # CRC mismatch
    (_v0(b"k", b"not gzip", attributes=1), CompressionError),
    (_v0(b"k", None, attributes=1), CorruptBatchError),  # a wrapper with no value
    (_v0(b"k", b"x", attributes=5), CompressionError),  # codec 5 does not exist
    (_v0(b"k", bytes(cramjam.zstd.compress(_v0(None, b"v"))), attributes=4), CompressionError),
])
def test_bad_message_sets_are_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        message_set_to_batch(bytes(data))


def test_wrapper_inside_wrapper_and_mixed_magic_are_refused() -> None:
    inner = legacy_set(0, 1, [(0, None, b"v")])  # already a gzip wrapper
    nested = encode_message(0, 0, -1, None, zlib.compress(inner, wbits=31), codec=1)
    with pytest.raises(CorruptBatchError):
        message_set_to_batch(nested)
    v1_inner = encode_message(1, 0, 5, None, b"v")
    wrapper = encode_message(0, 0, -1, None, zlib.compress(v1_inner, wbits=31), codec=1)
    with pytest.raises(CorruptBatchError):
        message_set_to_batch(wrapper)


def test_message_layout_matches_kafkas_legacy_record() -> None:
    # offset, size, crc, magic, attributes, timestamp, key (-1 = null), value; the CRC-32 covers magic on.
    message = encode_message(1, 5, 1234, None, b"abc", log_append_time=True)
    offset, size, crc, magic, attributes, ts, key_len, value_len = struct.unpack_from(">qiIbbqii", message)
    assert (offset, size, magic, attributes, ts, key_len, value_len) == (5, len(message) - 12, 1, 8, 1234, -1, 3)
    assert crc == zlib.crc32(message[16:])
    assert message.endswith(b"abc")


def test_xxh32_known_vectors() -> None:
    assert _xxh32(b"") == 0x02CC5D05
    assert _xxh32(b"a") == 0x550D7456
    assert _xxh32(b"abc") == 0x32D153FF
    assert _xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F  # 39 bytes: the 16-byte stripes


@pytest.mark.parametrize("size", [0, 5, 70_000])
def test_lz4_header_checksum_matches_the_frames_lz4_writes(size: int) -> None:
    # The descriptor's checksum byte is (xxh32(descriptor) >> 8) & 0xFF: the byte repaired for magic 0.
    frame = bytes(cramjam.lz4.compress(b"p" * size))
    flags = frame[4]
    end = 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)
    assert frame[end] == (_xxh32(frame[4:end]) >> 8) & 0xFF
