"""Record-batch compression codecs (attribute bits 0-2), all backed by cramjam.

Wire formats, as Kafka clients write and read them:

* ``GZIP``: an RFC 1952 gzip stream (several members are accepted on read).
* ``SNAPPY``: written in the xerial framing the Java client uses: the 16-byte
  header ``\\x82SNAPPY\\x00`` + int32 version 1 + int32 compat 1, then
  ``[int32 length, raw snappy block]*`` with at most 32 KiB of input per block.
  Read: xerial framing or one raw snappy block (what librdkafka writes).
* ``LZ4``: the LZ4 *frame* format with independent 64 KiB blocks (KIP-57),
  the only LZ4 flavour magic-2 batches use. Any valid frame is accepted on read.
* ``ZSTD``: a zstd frame (several frames and frames without a content size are
  accepted on read).

Every failure of a codec surfaces as :class:`~logbroker.errors.CompressionError`;
no cramjam exception escapes this module. All functions are thread-safe.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import cramjam

from logbroker.errors import CompressionError

_Bytes = bytes | bytearray | memoryview

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_HEADER_SIZE = 16
_XERIAL_BLOCK = 32 * 1024  # uncompressed bytes per block, xerial's default
_BLOCK_LEN = struct.Struct(">i")

_GZIP_LEVEL = 6  # Kafka's default (java.util.zip Deflater.DEFAULT_COMPRESSION)
_ZSTD_LEVEL = 3  # Kafka's default
_LZ4_LEVEL = 0  # lz4's fast mode; cramjam's own default is a slow high-compression level


class Compression(IntEnum):
    """The codec named by bits 0-2 of a batch's attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def from_name(cls, name: str) -> Compression:
        """Codec for a ``compression.type`` value: ``"none"``/``"uncompressed"``,
        ``"gzip"``, ``"snappy"``, ``"lz4"``, ``"zstd"`` (any case).

        Raises CompressionError for any other name (``"producer"`` is a topic
        policy, not a codec, so it is refused too).
        """
        key = name.strip().lower()
        if key == "uncompressed":
            return cls.NONE
        try:
            return cls[key.upper()]
        except KeyError:
            raise CompressionError(f"unknown compression codec {name!r}") from None

    @property
    def label(self) -> str:
        """The lower-case name Kafka configs use (``"gzip"``...)."""
        return self.name.lower()


def compress(codec: Compression, data: _Bytes, *, level: int | None = None) -> bytes:
    """Compress the bytes-like ``data`` with ``codec`` in its Kafka wire format.

    ``level`` overrides the codec's default level (gzip 6, lz4 0 = fast,
    zstd 3; snappy has none). ``Compression.NONE`` returns ``bytes(data)``. Raises
    CompressionError for an unknown codec or a codec failure.
    """
    try:
        if codec == Compression.NONE:
            return bytes(data)
        if codec == Compression.GZIP:
            return bytes(cramjam.gzip.compress(data, level=_GZIP_LEVEL if level is None else level))
        if codec == Compression.SNAPPY:
            return _xerial_compress(data)
        if codec == Compression.LZ4:
            return _lz4_frame_compress(data, _LZ4_LEVEL if level is None else level)
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL if level is None else level))
    except CompressionError:
        raise
    except Exception as exc:  # cramjam raises its own types, ValueError, TypeError...
        raise CompressionError(f"{_label(codec)} compression failed: {exc}") from exc
    raise CompressionError(f"unknown compression codec {codec!r}")


def decompress(codec: Compression, data: _Bytes) -> bytes:
    """Decompress the bytes-like ``data`` written by any Kafka client with ``codec``.

    Returns the uncompressed bytes (``bytes(data)`` for ``NONE``). Raises
    CompressionError for an unknown codec or a payload that does not decode.
    """
    try:
        if codec == Compression.NONE:
            return bytes(data)
        if codec == Compression.GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == Compression.SNAPPY:
            return _snappy_decompress(data)
        if codec == Compression.LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except CompressionError:
        raise
    except Exception as exc:  # cramjam.DecompressionError, ValueError, TypeError...
        raise CompressionError(f"{_label(codec)} payload does not decompress: {exc}") from exc
    raise CompressionError(f"unknown compression codec {codec!r}")


def _label(codec: object) -> str:
    try:
        return Compression(codec).label  # type: ignore[arg-type]  # any value: ValueError names it below
    except ValueError:
        return f"codec {codec!r}"


def _lz4_frame_compress(data: _Bytes, level: int) -> bytes:
    # block_linked=False: Java's KafkaLZ4BlockInputStream decodes each block alone.
    compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
    compressor.compress(data if data.__class__ is bytes else bytes(data))  # it takes bytes only
    return bytes(compressor.finish())


def _xerial_compress(data: _Bytes) -> bytes:
    view = memoryview(data).cast("B")
    parts = [_XERIAL_HEADER]
    pack = _BLOCK_LEN.pack
    raw = cramjam.snappy.compress_raw
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(raw(view[start : start + _XERIAL_BLOCK]))
        parts.append(pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: _Bytes) -> bytes:
    view = memoryview(data).cast("B")
    if bytes(view[:8]) != _XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(view))
    if len(view) < _XERIAL_HEADER_SIZE:
        raise CompressionError("snappy: truncated xerial header")
    parts = []
    pos = _XERIAL_HEADER_SIZE
    end = len(view)
    unpack = _BLOCK_LEN.unpack_from
    raw = cramjam.snappy.decompress_raw
    while pos < end:
        if end - pos < 4:
            raise CompressionError("snappy: truncated xerial block length")
        (size,) = unpack(view, pos)
        pos += 4
        if size < 0 or pos + size > end:
            raise CompressionError(f"snappy: xerial block of {size} bytes overruns the payload")
        parts.append(raw(view[pos : pos + size]))
        pos += size
    return b"".join(parts)
