"""Codecs: round trips, the Kafka wire variants, garbage -> CompressionError."""

from __future__ import annotations

import gzip
import os
import struct

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbroker.errors import CompressionError
from logbroker.records import Compression, compress, decompress

CODECS = list(Compression)
COMPRESSED = [c for c in Compression if c]
TEXT = b"".join(b"record %d of a fairly compressible stream; " % i for i in range(4000))  # ~180 KB
RANDOM = os.urandom(100_000)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("data", [b"", b"x", TEXT, RANDOM], ids=["empty", "one", "text", "random"])
def test_round_trip(codec, data):
    packed = compress(codec, data)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    if codec and data is TEXT:
        assert len(packed) < len(data) // 2


@settings(max_examples=60, deadline=None)
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=5000))
def test_round_trip_property(codec, data):
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", CODECS)
def test_accepts_any_bytes_like(codec):
    packed = compress(codec, bytearray(TEXT))
    assert compress(codec, memoryview(TEXT)) == packed
    assert decompress(codec, bytearray(packed)) == TEXT
    assert decompress(codec, memoryview(b"zz" + packed)[2:]) == TEXT


@pytest.mark.parametrize("codec", COMPRESSED)
@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"\x00" * 64, bytes(range(256)) * 4, b"\xff"],
    ids=["word", "zeros", "ramp", "ff"],
)
def test_garbage_raises_compression_error(codec, garbage):
    with pytest.raises(CompressionError) as info:
        decompress(codec, garbage)
    assert info.value.reason == "compression"


@pytest.mark.parametrize("codec", COMPRESSED)
def test_truncated_payload_raises_compression_error(codec):
    packed = compress(codec, RANDOM)
    with pytest.raises(CompressionError):
        decompress(codec, packed[: len(packed) // 2])


@settings(max_examples=200, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=300))
def test_random_bytes_never_leak_foreign_exceptions(codec, data):
    try:
        decompress(codec, data)
    except CompressionError:
        pass


def test_unknown_codec():
    with pytest.raises(CompressionError):
        compress(5, b"x")
    with pytest.raises(CompressionError):
        decompress(7, b"x")


def test_wrong_input_type_is_compression_error():
    with pytest.raises(CompressionError):
        compress(Compression.ZSTD, "text")


def test_from_name():
    assert Compression.from_name("gzip") is Compression.GZIP
    assert Compression.from_name("ZSTD") is Compression.ZSTD
    assert Compression.from_name(" lz4 ") is Compression.LZ4
    assert Compression.from_name("snappy") is Compression.SNAPPY
    assert Compression.from_name("none") is Compression.NONE
    assert Compression.from_name("uncompressed") is Compression.NONE
    for bad in ("producer", "brotli", ""):
        with pytest.raises(CompressionError):
            Compression.from_name(bad)
    assert [c.label for c in Compression] == ["none", "gzip", "snappy", "lz4", "zstd"]


def test_snappy_writes_xerial_framing():
    packed = compress(Compression.SNAPPY, TEXT)
    assert packed[:8] == b"\x82SNAPPY\x00"
    assert struct.unpack(">ii", packed[8:16]) == (1, 1)
    pos, blocks, out = 16, 0, []
    while pos < len(packed):
        (size,) = struct.unpack_from(">i", packed, pos)
        block = bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + size]))
        assert len(block) <= 32 * 1024
        out.append(block)
        pos += 4 + size
        blocks += 1
    assert pos == len(packed)
    assert blocks == -(-len(TEXT) // (32 * 1024))
    assert b"".join(out) == TEXT


def test_snappy_reads_raw_blocks():
    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(TEXT))) == TEXT


def test_snappy_xerial_errors():
    packed = compress(Compression.SNAPPY, TEXT)
    for broken in (packed[:12], packed[:18], packed[:-1], packed[:16] + struct.pack(">i", -3) + packed[20:]):
        with pytest.raises(CompressionError):
            decompress(Compression.SNAPPY, broken)
    assert decompress(Compression.SNAPPY, packed[:16]) == b""


def test_lz4_writes_frames_with_independent_blocks():
    packed = compress(Compression.LZ4, TEXT)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # frame magic, little-endian 0x184D2204
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 1  # version 01
    assert flg & 0x20  # block independence
    assert (bd >> 4) & 0x07 == 4  # 64 KiB max block size


def test_lz4_reads_linked_blocks_and_several_frames():
    compressor = cramjam.lz4.Compressor(level=None, content_checksum=True, block_linked=True)
    compressor.compress(TEXT)
    linked = bytes(compressor.finish())
    assert decompress(Compression.LZ4, linked) == TEXT
    assert decompress(Compression.LZ4, linked + linked) == TEXT + TEXT


def test_gzip_reads_several_members_and_stdlib_output():
    assert decompress(Compression.GZIP, gzip.compress(TEXT) + gzip.compress(b"tail")) == TEXT + b"tail"
    assert gzip.decompress(compress(Compression.GZIP, TEXT)) == TEXT


def test_zstd_reads_several_frames():
    a, b = compress(Compression.ZSTD, b"first "), compress(Compression.ZSTD, b"second")
    assert decompress(Compression.ZSTD, a + b) == b"first second"


def test_levels():
    fast = compress(Compression.GZIP, TEXT, level=1)
    assert decompress(Compression.GZIP, fast) == TEXT
    assert decompress(Compression.ZSTD, compress(Compression.ZSTD, TEXT, level=19)) == TEXT
    assert decompress(Compression.LZ4, compress(Compression.LZ4, TEXT, level=9)) == TEXT
