"""Cross-checks with kafka-python's independent implementation of batch v2.

Our batches must decode with ``kafka.record.default_records.DefaultRecordBatch``
and kafka-python's ``DefaultRecordBatchBuilder`` output must decode with ours,
for every codec. kafka-python needs python-snappy, lz4 and zstandard for the
compressed codecs; a codec it cannot handle is skipped, never passed silently.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbroker.records import (
    BatchBuilder,
    Compression,
    build_batch,
    compress,
    decode_batch,
    decompress,
    parse_header,
    stamp_batch,
)

kafka_records = pytest.importorskip("kafka.record.default_records")
kafka_codec = pytest.importorskip("kafka.codec")
DefaultRecordBatch = kafka_records.DefaultRecordBatch
DefaultRecordBatchBuilder = kafka_records.DefaultRecordBatchBuilder

_HAS = {
    Compression.NONE: lambda: True,
    Compression.GZIP: kafka_codec.has_gzip,
    Compression.SNAPPY: kafka_codec.has_snappy,
    Compression.LZ4: kafka_codec.has_lz4,
    Compression.ZSTD: kafka_codec.has_zstd,
}


def _need(codec: Compression) -> None:
    if not _HAS[codec]():
        pytest.skip(f"kafka-python lacks the {codec.label} library (python-snappy / lz4 / zstandard)")


CODECS = list(Compression)

# Compressible enough that kafka-python's builder keeps its compression.
SAMPLE = [
    (b"key-%d" % i if i % 3 else None, (b"value %d " % i) * 8 if i % 5 else None, headers, 1_700_000_000_000 + ts)
    for i, (headers, ts) in enumerate(
        [
            ([], 0),
            ([("trace", b"abc"), ("empty", b"")], 5),
            ([("null", None)], -3),
            ([], 70_000),
            ([("ünïcode", b"\x00\xff")], 12),
        ]
        * 30
    )
]


def _kafka_python_batch(records, codec, *, producer=(-1, -1, -1), transactional=False) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=transactional,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
        batch_size=1 << 30,
    )
    for offset, (key, value, headers, ts) in enumerate(records):
        assert builder.append(offset, ts, key, value, list(headers)) is not None
    return bytes(builder.build())


def _kafka_python_decode(batch) -> list:
    parsed = DefaultRecordBatch(batch)
    assert parsed.validate_crc()
    return list(parsed)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_decodes_our_batches(codec):
    _need(codec)
    batch = bytearray(build_batch(SAMPLE, compression=codec, producer_id=77, producer_epoch=3, base_sequence=40))
    stamp_batch(batch, 5_000, 0)
    parsed = DefaultRecordBatch(bytes(batch))
    assert parsed.validate_crc()
    assert parsed.compression_type == codec
    assert parsed.base_offset == 5_000
    assert parsed.records_count == len(SAMPLE)
    assert parsed.last_offset_delta == len(SAMPLE) - 1
    assert (parsed.producer_id, parsed.producer_epoch, parsed.base_sequence) == (77, 3, 40)
    assert parsed.first_timestamp == SAMPLE[0][3]
    assert parsed.max_timestamp == max(r[3] for r in SAMPLE)
    records = list(parsed)
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in records] == [
        (5_000 + i, ts, key, value, list(headers)) for i, (key, value, headers, ts) in enumerate(SAMPLE)
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_we_decode_kafka_python_batches(codec):
    _need(codec)
    batch = bytearray(_kafka_python_batch(SAMPLE, codec, producer=(9, 1, 100), transactional=True))
    stamp_batch(batch, 123, 4)
    decoded = decode_batch(batch)
    header = decoded.header
    assert header.compression == codec  # SAMPLE compresses, so kafka-python kept the codec
    assert header.is_transactional and header.partition_leader_epoch == 4
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (9, 1, 100)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decoded.records] == [
        (123 + i, ts, key, value, tuple(headers)) for i, (key, value, headers, ts) in enumerate(SAMPLE)
    ]


def test_uncompressed_batches_are_byte_identical():
    """Without a codec (whose output may legitimately differ) both builders write the same bytes."""
    ours = BatchBuilder(partition_leader_epoch=0)  # kafka-python writes epoch 0
    for key, value, headers, ts in SAMPLE:
        ours.append(value, key, headers, ts)
    assert ours.build() == _kafka_python_batch(SAMPLE, Compression.NONE)


def test_kafka_python_reads_our_control_and_log_append_time_batches():
    key, value = struct.pack(">hh", 0, 0), struct.pack(">hi", 0, 12)
    control = build_batch([(key, value, (), 5)], control=True, transactional=True, producer_id=1, producer_epoch=0)
    (marker,) = _kafka_python_decode(control)
    assert DefaultRecordBatch(control).is_control_batch
    assert marker.abort and marker.version == 0

    lat = build_batch([(None, b"a", (), 10), (None, b"b", (), 40)], log_append_time=True)
    parsed = _kafka_python_decode(lat)
    assert [r.timestamp for r in parsed] == [r.timestamp for r in decode_batch(lat).records] == [40, 40]
    assert {r.timestamp_type for r in parsed} == {1}


@pytest.mark.parametrize("codec", [c for c in CODECS if c])
def test_codec_payloads_cross_decode(codec):
    """Raw codec payloads, independently of batches (kafka.codec vs ours)."""
    _need(codec)
    data = b"".join(b"payload %d; " % i for i in range(20_000))
    encode, decode = {
        Compression.GZIP: (kafka_codec.gzip_encode, kafka_codec.gzip_decode),
        Compression.SNAPPY: (kafka_codec.snappy_encode, kafka_codec.snappy_decode),
        Compression.LZ4: (kafka_codec.lz4_encode, kafka_codec.lz4_decode),
        Compression.ZSTD: (kafka_codec.zstd_encode, kafka_codec.zstd_decode),
    }[codec]
    assert decompress(codec, encode(data)) == data
    assert decode(compress(codec, data)) == data


def test_raw_snappy_as_librdkafka_writes_it():
    _need(Compression.SNAPPY)
    data = b"".join(b"payload %d; " % i for i in range(5_000))
    raw = kafka_codec.snappy_encode(data, xerial_compatible=False)
    assert raw[:8] != b"\x82SNAPPY\x00"
    assert decompress(Compression.SNAPPY, raw) == data


_bytes_or_none = st.none() | st.binary(max_size=200)
_records = st.lists(
    st.tuples(
        _bytes_or_none,
        _bytes_or_none,
        st.lists(st.tuples(st.text(max_size=10), _bytes_or_none), max_size=3),
        st.integers(min_value=0, max_value=1 << 50),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records, codec=st.sampled_from(CODECS), base_offset=st.integers(min_value=0, max_value=1 << 50))
def test_cross_decode_property(records, codec, base_offset):
    if not _HAS[codec]():
        codec = Compression.NONE
    expected = [
        (base_offset + i, ts, key, value, tuple(headers)) for i, (key, value, headers, ts) in enumerate(records)
    ]

    ours = bytearray(build_batch(records, compression=codec))
    stamp_batch(ours, base_offset)
    theirs_view = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in _kafka_python_decode(bytes(ours))]
    assert theirs_view == expected

    theirs = bytearray(_kafka_python_batch(records, codec))
    stamp_batch(theirs, base_offset)
    assert parse_header(theirs).records_count == len(records)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decode_batch(theirs).records] == expected
