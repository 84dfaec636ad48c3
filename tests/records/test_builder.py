"""BatchBuilder / build_batch and decode_batch / decode_batches, against each other."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbroker.errors import CompressionError, CorruptBatchError
from logbroker.records import (
    HEADER_SIZE,
    BatchBuilder,
    Compression,
    DecodedBatch,
    Record,
    build_batch,
    check_batch,
    compress,
    decode_batch,
    decode_batches,
    parse_header,
    stamp_batch,
    validate_produced_batch,
)

from ._util import replace_records, set_field

CODECS = list(Compression)


def test_append_and_decode_one_record():
    builder = BatchBuilder()
    builder.append(b"value", b"key", [("h1", b"x"), ("h2", None)], 1234)
    batch = builder.build()
    decoded = decode_batch(batch)
    assert isinstance(decoded, DecodedBatch)
    assert decoded.header == parse_header(batch)
    assert decoded.records == [Record(0, 1234, b"key", b"value", (("h1", b"x"), ("h2", None)))]


def test_record_is_frozen():
    record = decode_batch(build_batch([(b"k", b"v", (), 5)])).records[0]
    with pytest.raises(AttributeError):
        record.value = b"other"  # type: ignore[misc]
    assert record == Record(offset=0, timestamp=5, key=b"k", value=b"v", headers=())
    assert hash(record) == hash(Record(0, 5, b"k", b"v", ()))


def test_header_fields_from_builder():
    builder = BatchBuilder(
        compression=Compression.GZIP,
        base_offset=50,
        producer_id=9,
        producer_epoch=3,
        base_sequence=17,
        transactional=True,
        partition_leader_epoch=2,
    )
    for ts in (100, 90, 130, 120):
        builder.append(b"v", timestamp_ms=ts)
    header = check_batch(builder.build())
    assert header.base_offset == 50
    assert header.partition_leader_epoch == 2
    assert header.compression == Compression.GZIP
    assert header.is_transactional and not header.is_control and not header.log_append_time
    assert header.records_count == 4 and header.last_offset_delta == 3
    assert header.base_timestamp == 100 and header.max_timestamp == 130
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (9, 3, 17)


def test_len_and_estimated_size():
    builder = BatchBuilder()
    assert len(builder) == 0
    assert builder.estimated_size() == HEADER_SIZE
    sizes = []
    for i in range(5):
        builder.append(b"x" * 100, b"k%d" % i, [("a", b"b")], 1000 + i)
        sizes.append(builder.estimated_size())
    assert len(builder) == 5
    assert sizes == sorted(sizes)
    assert builder.estimated_size() == len(builder.build())
    compressed = BatchBuilder(compression=Compression.ZSTD)
    for i in range(5):
        compressed.append(b"x" * 100, b"k%d" % i, [("a", b"b")], 1000 + i)
    assert compressed.estimated_size() == sizes[-1]
    assert len(compressed.build()) < compressed.estimated_size()


def test_build_twice_and_append_after_build():
    builder = BatchBuilder()
    builder.append(b"a", timestamp_ms=1)
    first = builder.build()
    assert builder.build() == first
    builder.append(b"b", timestamp_ms=2)
    assert [r.value for r in decode_batch(builder.build()).records] == [b"a", b"b"]


def test_empty_builder_refuses_to_build():
    with pytest.raises(ValueError):
        BatchBuilder().build()


def test_default_timestamp_is_now():
    before = time.time_ns() // 1_000_000
    builder = BatchBuilder()
    builder.append(b"v")
    builder.append(b"w")
    after = time.time_ns() // 1_000_000
    records = decode_batch(builder.build()).records
    assert all(before <= r.timestamp <= after for r in records)


def test_type_errors():
    builder = BatchBuilder()
    with pytest.raises(TypeError):
        builder.append("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        builder.append(b"v", key=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        builder.append(b"v", headers=[("h", "text")])
    with pytest.raises(TypeError):
        builder.append(b"v", headers=[(3, b"x")])
    assert len(builder) == 0
    builder.append(b"ok", timestamp_ms=10)
    with pytest.raises(TypeError):
        builder.append("late", timestamp_ms=99)  # type: ignore[arg-type]
    assert len(builder) == 1 and builder.estimated_size() == len(builder.build())
    assert parse_header(builder.build()).max_timestamp == 10


def test_headers_may_be_any_iterable():
    batch = build_batch([(None, b"v", iter([("a", b"1")]), 1), (None, b"w", (h for h in ()), 2)])
    assert [r.headers for r in decode_batch(batch).records] == [(("a", b"1"),), ()]


def test_unknown_codec_in_builder():
    with pytest.raises(CompressionError):
        BatchBuilder(compression=9)


def test_bytes_like_inputs_are_copied():
    value, key, header = bytearray(b"value"), bytearray(b"key"), bytearray(b"hv")
    builder = BatchBuilder()
    builder.append(value, memoryview(key), [(b"raw-name", header)], 7)
    value[0] = key[0] = header[0] = ord("X")
    (record,) = decode_batch(builder.build()).records
    assert (record.key, record.value, record.headers) == (b"key", b"value", (("raw-name", b"hv"),))


def test_empty_and_null_keys_values_differ():
    batch = build_batch([(None, None), (b"", b""), (None, b""), (b"", None)])
    assert [(r.key, r.value) for r in decode_batch(batch).records] == [
        (None, None),
        (b"", b""),
        (None, b""),
        (b"", None),
    ]


def test_build_batch_tuple_shapes():
    batch = build_batch(
        [(b"k1", b"v1"), (b"k2", b"v2", [("h", b"1")]), (None, b"v3", (), 77)],
        compression=Compression.SNAPPY,
        base_offset=10,
    )
    records = decode_batch(batch).records
    assert [(r.offset, r.key, r.value, r.headers) for r in records] == [
        (10, b"k1", b"v1", ()),
        (11, b"k2", b"v2", (("h", b"1"),)),
        (12, None, b"v3", ()),
    ]
    assert records[2].timestamp == 77


def test_large_values_offsets_and_timestamp_deltas():
    big = bytes(range(256)) * 300  # 76,800 bytes: length varint beyond the table
    records = [(b"k" * 20_000, big, [("n" * 200, big[:20_000])], 10**12)]
    records += [(None, b"%d" % i, (), 10**12 + (i % 7) * 10**9 - 3 * 10**9) for i in range(1, 20_000)]
    records.append((None, b"last", (), 0))  # negative delta far beyond int32
    for codec in (Compression.NONE, Compression.LZ4):
        batch = build_batch(records, compression=codec)
        decoded = decode_batch(batch).records
        assert len(decoded) == len(records)
        assert [(r.key, r.value, list(r.headers), r.timestamp) for r in decoded] == [
            (k, v, list(h), t) for k, v, h, t in records
        ]
        assert decoded[-1].offset == len(records) - 1
        header = parse_header(batch)
        assert header.max_timestamp == max(t for *_, t in records)
        assert header.base_timestamp == 10**12


def test_unicode_header_names():
    batch = build_batch([(None, b"v", [("名前", b"1"), ("", None), ("emoji-🙂", b"")], 1)])
    assert decode_batch(batch).records[0].headers == (("名前", b"1"), ("", None), ("emoji-🙂", b""))


def test_invalid_utf8_header_name_is_replaced():
    batch = build_batch([(None, b"v", [(b"\xff\xfe", b"1")], 1)])
    assert decode_batch(batch).records[0].headers == (("\ufffd\ufffd", b"1"),)


def test_log_append_time_batch_reports_max_timestamp():
    batch = build_batch([(None, b"a", (), 10), (None, b"b", (), 30), (None, b"c", (), 20)], log_append_time=True)
    header = parse_header(batch)
    assert header.log_append_time
    assert [r.timestamp for r in decode_batch(batch).records] == [30, 30, 30]


def test_control_batch_decodes():
    key = struct.pack(">hh", 0, 1)  # version 0, COMMIT
    value = struct.pack(">hi", 0, 5)  # version 0, coordinator epoch 5
    batch = build_batch(
        [(key, value, (), 99)], control=True, transactional=True, producer_id=4, producer_epoch=1, base_offset=3
    )
    decoded = decode_batch(batch)
    assert decoded.header.is_control and decoded.header.is_transactional
    assert decoded.records == [Record(3, 99, key, value, ())]


@pytest.mark.parametrize("codec", CODECS)
def test_decode_batches_stops_at_partial_tail(codec):
    log = bytearray()
    for i in range(3):
        batch = bytearray(build_batch([(None, b"v%d-%d" % (i, j), (), j) for j in range(i + 1)], compression=codec))
        stamp_batch(batch, i * 10)
        log += batch
    full = list(decode_batches(log))
    assert [[r.offset for r in b.records] for b in full] == [[0], [10, 11], [20, 21, 22]]
    assert [b.header.base_offset for b in decode_batches(log[:-1])] == [0, 10]
    assert list(decode_batches(b"")) == []
    assert [b.header.base_offset for b in decode_batches(memoryview(log)[: len(log) - 70])] == [0, 10]


def test_decode_at_position():
    a, b = build_batch([(None, b"a")]), build_batch([(None, b"b")])
    assert decode_batch(a + b, len(a)).records[0].value == b"b"


def test_decode_checks_crc_and_length():
    batch = bytearray(build_batch([(None, b"value")]))
    batch[-1] ^= 1
    with pytest.raises(CorruptBatchError, match="CRC"):
        decode_batch(batch)
    with pytest.raises(CorruptBatchError, match="truncated"):
        decode_batch(build_batch([(None, b"value")])[:-1])


def _records_section(batch: bytes) -> bytes:
    return batch[HEADER_SIZE:]


def test_decode_count_mismatch():
    batch = build_batch([(None, b"a"), (None, b"b")])
    with pytest.raises(CorruptBatchError, match="truncated"):
        decode_batch(set_field(batch, 57, ">i", 3))
    with pytest.raises(CorruptBatchError, match="left after"):
        decode_batch(set_field(batch, 57, ">i", 1))
    with pytest.raises(CorruptBatchError, match="negative"):
        decode_batch(set_field(batch, 57, ">i", -1))


def test_decode_malformed_records():
    batch = build_batch([(b"key", b"value", [("h", b"v")], 1)])
    records = _records_section(batch)
    with pytest.raises(CorruptBatchError):  # record cut short
        decode_batch(replace_records(batch, records[:-2]))
    with pytest.raises(CorruptBatchError):  # length says one byte more than the record has
        decode_batch(replace_records(batch, bytes([records[0] + 2]) + records[1:] + b"\x00"))
    with pytest.raises(CorruptBatchError, match="key length"):  # key length -2
        decode_batch(replace_records(batch, records[:4] + b"\x03" + records[5:]))
    with pytest.raises(CorruptBatchError):
        decode_batch(replace_records(batch, b"\xff" * 12))


def test_decode_unknown_codec_and_bad_payload():
    batch = build_batch([(None, b"v")])
    with pytest.raises(CompressionError, match="unknown"):
        decode_batch(set_field(batch, 21, ">h", 6))
    with pytest.raises(CompressionError):
        decode_batch(set_field(batch, 21, ">h", int(Compression.ZSTD)))


def test_validate_produced_batch_accepts_builder_output():
    batch = build_batch([(b"k", b"v")] * 3, producer_id=1, producer_epoch=0, base_sequence=0)
    assert validate_produced_batch(batch).records_count == 3


# -- properties -------------------------------------------------------------

_bytes_or_none = st.none() | st.binary(max_size=300)
_headers = st.lists(st.tuples(st.text(max_size=20), _bytes_or_none), max_size=4)
_timestamps = st.integers(min_value=0, max_value=(1 << 62))
_records = st.lists(st.tuples(_bytes_or_none, _bytes_or_none, _headers, _timestamps), min_size=1, max_size=40)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=_records,
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(min_value=0, max_value=(1 << 62)),
    producer=st.sampled_from([(-1, -1, -1), (5, 0, 0), (1 << 40, 32767, (1 << 31) - 1)]),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_round_trip_property(records, codec, base_offset, producer, flags):
    transactional, log_append_time = flags
    producer_id, producer_epoch, base_sequence = producer
    batch = build_batch(
        records,
        compression=codec,
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
        log_append_time=log_append_time,
    )
    decoded = decode_batch(batch)
    header = decoded.header
    assert header.compression == codec and header.size == len(batch)
    assert header.records_count == len(records) and header.last_offset_delta == len(records) - 1
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == producer
    assert header.base_timestamp == records[0][3]
    assert header.max_timestamp == max(r[3] for r in records)
    expected = [
        Record(
            base_offset + i,
            header.max_timestamp if log_append_time else ts,
            key,
            value,
            tuple(headers),
        )
        for i, (key, value, headers, ts) in enumerate(records)
    ]
    assert decoded.records == expected


@settings(max_examples=150, deadline=None)
@given(noise=st.binary(max_size=200), count=st.integers(min_value=-2, max_value=50))
def test_decoding_garbage_records_raises_only_corrupt(noise, count):
    batch = replace_records(build_batch([(None, b"v")]), noise, count)
    try:
        decode_batch(batch)
    except CorruptBatchError:
        pass


@settings(max_examples=150, deadline=None)
@given(data=st.data(), codec=st.sampled_from(CODECS))
def test_flipping_record_bytes_raises_only_records_errors(data, codec):
    batch = build_batch([(b"key", b"value" * 20, [("h", b"x")], 5), (None, None, (), 6)], compression=codec)
    records = bytearray(_records_section(batch))
    index = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    records[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decode_batch(replace_records(batch, bytes(records)))
    except (CorruptBatchError, CompressionError):
        pass


def test_compressed_section_is_the_codec_output():
    records = [(None, b"v%d" % i, (), 1) for i in range(10)]
    plain = build_batch(records)
    for codec in (Compression.GZIP, Compression.ZSTD):
        batch = build_batch(records, compression=codec)
        assert _records_section(batch) == compress(codec, _records_section(plain))
