"""Hand-written encoders for the hottest responses: Produce and Fetch, and
Metadata, which lists every partition of every topic.

kio's generic writers call a Python function per field; at one record per
request (``linger.ms=0``) that is a fifth of the broker's time. These
encoders write the same bytes from plain values with one precompiled
``struct`` per partition::

    frame = encode_produce_response(version, correlation_id, [
        ("orders", [ProducePartition(0, ErrorCode.none, base_offset=41)]),
    ])
    frame = encode_fetch_response(version, correlation_id, [
        ("orders", [FetchPartition(0, ErrorCode.none, 42, 42, 0, view)]),
    ])

Each returns an :class:`Encoded` frame (4-byte size, response header, body):
exactly the buffers :func:`~logbroker.protocol.encode_response` would return
for the equivalent kio object, which it passes through unchanged.
``tests/protocol/test_fastpath.py`` proves the equality for every version
served (Produce v3-v9, Fetch v4-v12, flexible ones included).

What they always write, because logbroker does not support the rest:
``preferred_read_replica`` -1 (Fetch v11+), and no tagged fields (Fetch v12's
``diverging_epoch``, ``current_leader`` and ``snapshot_id`` at their defaults).
"""

from __future__ import annotations

import functools
import struct
import uuid

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from typing import NamedTuple

from logbroker.errors import LocalProtocolError

__all__ = [
    "FETCH_VERSIONS",
    "METADATA_VERSIONS",
    "MetadataBroker",
    "MetadataTopic",
    "PRODUCE_VERSIONS",
    "Encoded",
    "FetchPartition",
    "ProducePartition",
    "encode_fetch_response",
    "encode_metadata_response",
    "encode_produce_response",
]

PRODUCE_VERSIONS: Final = range(3, 10)
"""Produce response versions :func:`encode_produce_response` writes."""
FETCH_VERSIONS: Final = range(4, 13)
"""Fetch response versions :func:`encode_fetch_response` writes."""
METADATA_VERSIONS: Final = range(0, 13)
"""Metadata response versions :func:`encode_metadata_response` writes."""

_ZERO_COPY_MIN: Final = 4096  # == adapter.ZERO_COPY_MIN (not imported: no cycle)
_MAX_FRAME: Final = 2**31 - 1
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_SIZE_AND_ID: Final = struct.Struct(">ii")  # frame size, correlation id (header v0)
_SIZE_ID_TAGS: Final = struct.Struct(">iiB")  # ... plus no tagged fields (header v1)
_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(128))


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response frame already encoded: size, header and body, in order.

    ``buffers`` are as :func:`~logbroker.protocol.encode_response` returns
    them: small pieces joined, records of at least ``ZERO_COPY_MIN`` bytes
    kept as the very objects given (memoryviews must stay valid until sent).
    """

    buffers: list[bytes | memoryview]

    def __repr__(self) -> str:
        return f"<Encoded {sum(map(len, self.buffers))} bytes in {len(self.buffers)} buffers>"


class ProducePartition(NamedTuple):
    """One partition of a ProduceResponse; -1 means unknown / not applicable."""

    index: int  # type: ignore[assignment]  # shadows tuple.index: the partition index, Kafka's name
    error_code: int
    base_offset: int = -1
    log_append_time: int = -1
    """Epoch ms of a LogAppendTime topic's append, else -1."""
    log_start_offset: int = -1
    error_message: str | None = None
    """Sent from v8 on; dropped for older versions."""
    record_errors: tuple[tuple[int, str | None], ...] = ()
    """KIP-467 ``(batch_index, message)`` of each refused record; sent from v8 on."""


class FetchPartition(NamedTuple):
    """One partition of a FetchResponse."""

    index: int  # type: ignore[assignment]  # shadows tuple.index: the partition index, Kafka's name
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes | memoryview | None
    """Whole record batches, or None. A 1-D byte memoryview of at least
    ``ZERO_COPY_MIN`` bytes is sent uncopied (it must stay valid until sent)."""
    aborted_transactions: Sequence[tuple[int, int]] | None = None
    """``(producer id, first offset)`` pairs (read_committed fetches), or None (null)."""


def _uvarint(value: int) -> bytes:
    if value < 128:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: str, flexible: bool) -> bytes:
    """A non-nullable string: compact (flexible) or int16-length (legacy)."""
    data = value.encode()
    if flexible:
        return _uvarint(len(data) + 1) + data
    if len(data) > 32767:
        raise LocalProtocolError(f"string of {len(data)} bytes does not fit an int16 length")
    return _I16.pack(len(data)) + data


def _nullable_string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else b"\xff\xff"
    return _string(value, flexible)


def _array_length(count: int, flexible: bool) -> bytes:
    return _uvarint(count + 1) if flexible else _I32.pack(count)


def _frame(pieces: list, correlation_id: int, flexible: bool, zero_copy: bool) -> Encoded:
    """Prepend size and header to the body ``pieces[1:]`` (pieces[0] is a slot for them)."""
    body = sum(map(len, pieces))
    if flexible:
        size = body + 5
        pieces[0] = _SIZE_ID_TAGS.pack(size, correlation_id, 0)
    else:
        size = body + 4
        pieces[0] = _SIZE_AND_ID.pack(size, correlation_id)
    if size > _MAX_FRAME:
        raise LocalProtocolError(f"frame of {size} bytes exceeds the int32 size")
    if not zero_copy:
        return Encoded([b"".join(pieces)])
    buffers: list[bytes | memoryview] = []
    start = 0
    for i, piece in enumerate(pieces):
        if len(piece) >= _ZERO_COPY_MIN:
            if start < i:
                buffers.append(b"".join(pieces[start:i]))
            buffers.append(piece)
            start = i + 1
    if start < len(pieces):
        buffers.append(b"".join(pieces[start:]))
    return Encoded(buffers)


# -- Produce ---------------------------------------------------------------------


# Produce partition layouts: v3-v4, v5-v7 (+ log_start_offset), v8 (+ legacy
# record_errors and error_message), v9 (flexible).
_PRODUCE_V3, _PRODUCE_V5, _PRODUCE_V8, _PRODUCE_V9 = range(4)
_PRODUCE_LAYOUTS: Final = {
    _PRODUCE_V3: struct.Struct(">ihqq"),
    _PRODUCE_V5: struct.Struct(">ihqqq"),
    _PRODUCE_V8: struct.Struct(">ihqqq"),
    _PRODUCE_V9: struct.Struct(">ihqqq"),
}


def _produce_layout(version: int) -> int:
    if version >= 9:
        return _PRODUCE_V9
    if version >= 8:
        return _PRODUCE_V8
    return _PRODUCE_V5 if version >= 5 else _PRODUCE_V3


def _record_errors(errors: Sequence[tuple[int, str | None]], flexible: bool) -> bytes:
    """A record_errors array: each entry batch_index (int32), then its message
    (flexible: with no tagged fields)."""
    tail = b"\x00" if flexible else b""
    return _array_length(len(errors), flexible) + b"".join(
        _I32.pack(batch_index) + _nullable_string(message, flexible) + tail for batch_index, message in errors
    )


def encode_produce_response(
    version: int,
    correlation_id: int,
    topics: Sequence[tuple[str, Sequence[ProducePartition]]],
    *,
    throttle_ms: int = 0,
) -> Encoded:
    """Encode a ProduceResponse of ``version`` answering ``correlation_id``.

    ``topics``: ``(name, partitions)`` in response order.

    :raises LocalProtocolError: ``version`` is not in :data:`PRODUCE_VERSIONS`,
        or a value does not fit its field.
    """
    if version not in PRODUCE_VERSIONS:
        raise LocalProtocolError(f"no fast Produce encoder for v{version}")
    layout = _produce_layout(version)
    pack = _PRODUCE_LAYOUTS[layout].pack
    flexible = layout == _PRODUCE_V9
    pieces: list = [b"", _array_length(len(topics), flexible)]
    append = pieces.append
    try:
        for name, partitions in topics:
            append(_string(name, flexible))
            append(_array_length(len(partitions), flexible))
            for index, error, base, append_time, log_start, message, record_errors in partitions:
                if layout == _PRODUCE_V9:
                    # then: compact record_errors, error_message, no tagged fields
                    append(
                        pack(index, error, base, append_time, log_start)
                        + (_record_errors(record_errors, True) if record_errors else b"\x01")
                        + _nullable_string(message, True)
                        + b"\x00"
                    )
                elif layout == _PRODUCE_V8:
                    append(pack(index, error, base, append_time, log_start))
                    append(_record_errors(record_errors, False))
                    append(_nullable_string(message, False))
                elif layout == _PRODUCE_V5:
                    append(pack(index, error, base, append_time, log_start))
                else:
                    append(pack(index, error, base, append_time))
            if flexible:
                append(b"\x00")
        append(_I32.pack(throttle_ms) + b"\x00" if flexible else _I32.pack(throttle_ms))
    except (struct.error, ValueError) as exc:  # out of range; a str that is not UTF-8
        raise LocalProtocolError(f"cannot encode ProduceResponse v{version}: {exc}") from exc
    return _frame(pieces, correlation_id, flexible, False)


# -- Fetch -----------------------------------------------------------------------


class _FetchPlan(NamedTuple):
    flexible: bool
    top: struct.Struct  # throttle_time_ms [, error_code, session_id]
    partition: struct.Struct  # fixed fields up to the records length (legacy)
    has_log_start: bool


def _fetch_plan(version: int) -> _FetchPlan:
    flexible = version >= 12
    has_log_start = version >= 5
    top = ">ihi" if version >= 7 else ">i"
    layout = ">ihqq" + ("q" if has_log_start else "")
    if not flexible:
        layout += "i"  # aborted_transactions: count, -1 for null
        if version >= 11:
            layout += "i"  # preferred_read_replica: -1
        layout += "i"  # records length (-1 for null)
    return _FetchPlan(flexible, struct.Struct(top), struct.Struct(layout), has_log_start)


_ABORTED: Final = struct.Struct(">qq")  # producer_id, first_offset


def _aborted_entries(aborted: Sequence[tuple[int, int]], flexible: bool) -> bytes:
    """The entries of an aborted_transactions array (flexible: each with no tagged fields)."""
    if flexible:
        return b"".join(_ABORTED.pack(pid, first) + b"\x00" for pid, first in aborted)
    return b"".join(_ABORTED.pack(pid, first) for pid, first in aborted)


_FETCH_PLANS: Final = {v: _fetch_plan(v) for v in FETCH_VERSIONS}
# Flexible partition, after log_start_offset: null compact aborted_transactions,
# preferred_read_replica -1.
_FLEX_PARTITION_MIDDLE: Final = b"\x00" + _I32.pack(-1)


def encode_fetch_response(
    version: int,
    correlation_id: int,
    topics: Sequence[tuple[str, Sequence[FetchPartition]]],
    *,
    error_code: int = 0,
    session_id: int = 0,
    throttle_ms: int = 0,
) -> Encoded:
    """Encode a FetchResponse of ``version`` answering ``correlation_id``.

    ``topics``: ``(name, partitions)`` in response order. ``records`` of at
    least ``ZERO_COPY_MIN`` bytes become buffers of their own, uncopied.

    :raises LocalProtocolError: ``version`` is not in :data:`FETCH_VERSIONS`,
        or a value does not fit its field.
    """
    plan = _FETCH_PLANS.get(version)
    if plan is None:
        raise LocalProtocolError(f"no fast Fetch encoder for v{version}")
    flexible, top, partition, has_log_start = plan
    pack = partition.pack
    legacy_v11 = not flexible and version >= 11
    zero_copy = False
    try:
        head = top.pack(throttle_ms, error_code, session_id) if version >= 7 else top.pack(throttle_ms)
        pieces: list = [b"", head + _array_length(len(topics), flexible)]
        append = pieces.append
        for name, partitions in topics:
            append(_string(name, flexible))
            append(_array_length(len(partitions), flexible))
            for index, error, high_watermark, last_stable, log_start, records, aborted in partitions:
                if flexible:
                    fixed = pack(index, error, high_watermark, last_stable, log_start)
                    if aborted is None:
                        middle = _FLEX_PARTITION_MIDDLE
                    else:
                        middle = _uvarint(len(aborted) + 1) + _aborted_entries(aborted, True) + _I32.pack(-1)
                    if records is None:
                        append(fixed + middle + b"\x00\x00")
                        continue
                    append(fixed + middle + _uvarint(len(records) + 1))
                else:
                    size = -1 if records is None else len(records)
                    count = -1 if aborted is None else len(aborted)
                    if aborted:
                        # The array sits between the fixed fields: write them in two parts.
                        head = pack(index, error, high_watermark, last_stable, *((log_start,) if has_log_start else ()),
                                    count, *((-1,) if legacy_v11 else ()), size)
                        cut = 4 + 2 + 8 + 8 + (8 if has_log_start else 0) + 4  # up to the array's count
                        append(head[:cut] + _aborted_entries(aborted, False) + head[cut:])
                    elif has_log_start:
                        if legacy_v11:
                            append(pack(index, error, high_watermark, last_stable, log_start, count, -1, size))
                        else:
                            append(pack(index, error, high_watermark, last_stable, log_start, count, size))
                    else:
                        append(pack(index, error, high_watermark, last_stable, count, size))
                    if records is None:
                        continue
                if len(records) >= _ZERO_COPY_MIN:
                    zero_copy = True
                append(records)
                if flexible:
                    append(b"\x00")  # no tagged fields
            if flexible:
                append(b"\x00")
        if flexible:
            append(b"\x00")
    except (struct.error, ValueError) as exc:  # out of range; a str that is not UTF-8
        raise LocalProtocolError(f"cannot encode FetchResponse v{version}: {exc}") from exc
    return _frame(pieces, correlation_id, flexible, zero_copy)


# -- Metadata --------------------------------------------------------------------


class MetadataTopic(NamedTuple):
    """One topic of a MetadataResponse. Its partitions are ``0..partitions-1``,
    each led by the one broker with no error; a topic with an error has none."""

    error_code: int
    name: str | None
    """None only for a topic asked for by an unknown id (v12+; earlier versions get "")."""
    topic_id: uuid.UUID | None = None
    is_internal: bool = False
    partitions: int = 0
    authorized_operations: int = -(2**31)


class MetadataBroker(NamedTuple):
    node_id: int
    host: str
    port: int
    rack: str | None = None


_NULL_UUID: Final = bytes(16)


@functools.lru_cache(maxsize=512)
def _metadata_partitions(version: int, node_id: int, count: int) -> bytes:
    """The partitions array of a topic of ``count`` partitions led by ``node_id``.

    Cached: every topic with as many partitions shares the bytes, so a Metadata
    answer for 100,000 partitions costs a join, not a struct per partition.
    """
    flexible = version >= 9
    nodes = _array_length(1, flexible) + _I32.pack(node_id)  # replicas, then ISR
    tail = nodes + nodes
    if version >= 5:
        tail += _array_length(0, flexible)  # offline_replicas
    if flexible:
        tail += b"\x00"
    if version >= 7:
        head = struct.Struct(">hiii")  # error, index, leader, leader_epoch 0
        entries = (head.pack(0, index, node_id, 0) + tail for index in range(count))
    else:
        head = struct.Struct(">hii")
        entries = (head.pack(0, index, node_id) + tail for index in range(count))
    return _array_length(count, flexible) + b"".join(entries)


def encode_metadata_response(
    version: int,
    correlation_id: int,
    brokers: Sequence[MetadataBroker],
    topics: Sequence[MetadataTopic],
    *,
    cluster_id: str | None,
    controller_id: int,
    cluster_authorized_operations: int = -(2**31),
    throttle_ms: int = 0,
) -> Encoded:
    """Encode a MetadataResponse (v0-v12) answering ``correlation_id``.

    :raises LocalProtocolError: ``version`` is out of range, or a value does not fit its field.
    """
    if version not in METADATA_VERSIONS:
        raise LocalProtocolError(f"no fast Metadata encoder for v{version}")
    flexible = version >= 9
    tags = b"\x00" if flexible else b""
    try:
        pieces: list = [b""]
        append = pieces.append
        if version >= 3:
            append(_I32.pack(throttle_ms))
        append(_array_length(len(brokers), flexible))
        for node_id, host, port, rack in brokers:
            append(_I32.pack(node_id) + _string(host, flexible) + _I32.pack(port))
            if version >= 1:
                append(_nullable_string(rack, flexible))
            append(tags)
        if version >= 2:
            append(_nullable_string(cluster_id, flexible))
        if version >= 1:
            append(_I32.pack(controller_id))
        append(_array_length(len(topics), flexible))
        for error_code, name, topic_id, is_internal, partitions, operations in topics:
            append(_I16.pack(error_code))
            if version >= 12:
                append(_nullable_string(name, flexible))
            else:
                append(_string(name or "", flexible))
            if version >= 10:
                append(_NULL_UUID if topic_id is None else topic_id.bytes)
            if version >= 1:
                append(b"\x01" if is_internal else b"\x00")
            append(_metadata_partitions(version, controller_id, partitions) if partitions
                   else _array_length(0, flexible))
            if version >= 8:
                append(_I32.pack(operations))
            append(tags)
        if 8 <= version <= 10:
            append(_I32.pack(cluster_authorized_operations))
        append(tags)
    except (struct.error, ValueError) as exc:  # out of range; a str that is not UTF-8
        raise LocalProtocolError(f"cannot encode MetadataResponse v{version}: {exc}") from exc
    return _frame(pieces, correlation_id, flexible, False)
