"""Decode a fetched partition's batches: into columns, and from columns into :class:`ConsumerRecord` tuples.

:func:`decode_chunk` picks the batches a consumer returns and decodes them
with :func:`logbroker.records.decoder.decode_columns` (whole batches at once,
numpy arrays of offsets, timestamps and key/value positions).
:func:`records_from_columns` turns columns into the final named tuples in C
loops (``map``/``zip``), with no Python code run per record. Batches wholly
before ``start`` and control batches are skipped before their CRC is checked
or their records decompressed.

read_committed (``aborted`` given): the broker returns only batches below the
last stable offset and lists the aborted transactions that overlap them as
(producer id, first offset). As the Java client does, walking the batches in
order, a producer becomes *aborted* once the walk reaches the first offset of
one of its aborted transactions; its transactional batches are then dropped
until its abort marker (a control batch whose record key says ABORT).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import chain, repeat

import numpy as np

from logbroker.records import ATTR_CONTROL, ATTR_TRANSACTIONAL, BatchHeader, decode_batch, iter_batches
from logbroker.records.decoder import RecordColumns, decode_columns

from .types import ConsumerRecord

__all__ = ["decode_chunk", "decode_for_consumer", "is_abort_marker", "records_from_columns", "slices"]

_new = tuple.__new__

_MARKER_KEY = struct.Struct(">hh")  # version, type (0 abort, 1 commit)


def is_abort_marker(data: bytes, pos: int) -> bool:
    """True if the control batch at ``data[pos]`` is an abort marker (reads its one record's key)."""
    records = decode_batch(data, pos).records
    key = records[0].key if records else None
    return key is not None and len(key) >= _MARKER_KEY.size and _MARKER_KEY.unpack_from(key)[1] == 0


def returned_batches(data: bytes, start: int,
                     aborted: Iterable[tuple[int, int]] | None = None) -> list[tuple[int, BatchHeader]]:
    """(position, header) of the complete batches of ``data`` a consumer returns records of:
    not control batches, not wholly before ``start``, not of an aborted transaction."""
    kept = []
    pending = sorted(aborted, key=lambda a: a[1], reverse=True) if aborted else None
    aborting: set[int] = set()
    for pos, header in iter_batches(data):
        attributes = header.attributes
        if pending is not None and attributes & ATTR_TRANSACTIONAL:
            while pending and pending[-1][1] <= header.base_offset + header.last_offset_delta:
                aborting.add(pending.pop()[0])
            if header.producer_id in aborting:
                if not attributes & ATTR_CONTROL:
                    continue  # data of an aborted transaction
                if is_abort_marker(data, pos):
                    aborting.discard(header.producer_id)
        if attributes & ATTR_CONTROL or header.base_offset + header.last_offset_delta < start:
            continue
        kept.append((pos, header))
    return kept


def decode_chunk(data: bytes, start: int, aborted: Iterable[tuple[int, int]] | None = None) -> RecordColumns:
    """The records at offset >= ``start`` of the batches a consumer returns (see
    :func:`returned_batches`), as columns.

    :raises CorruptBatchError: a bad CRC, length or record encoding.
    :raises CompressionError: records that do not decompress.
    """
    return decode_columns(data, returned_batches(data, start, aborted), start=start)


def slices(buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> list[bytes | None]:
    """``buffer[start : start + length]`` for each pair; None where the length is -1.

    Values of one size that lie evenly spaced (records of one size in a batch)
    are cut a run at a time by :func:`_cut_run` (``struct``), others one slice each.
    """
    n = len(starts)
    if not n:
        return []
    high = int(lengths.max())
    if high < 0:
        return [None] * n
    low = int(lengths.min())
    if low == high and n >= 2 * _UNROLL:
        steps = np.diff(starts)
        breaks = (np.flatnonzero(steps[1:] != steps[:-1]) + 1).tolist()
        if len(breaks) <= n // (4 * _UNROLL):
            out: list[bytes | None] = []
            bounds = [0, *breaks, n]
            for a, b in zip(bounds, bounds[1:]):
                out += _cut_run(buffer, int(starts[a]), int(steps[a]) if b - a > 1 else high, high, b - a)
            return out
    out = list(map(buffer.__getitem__, map(slice, starts.tolist(), (starts + np.maximum(lengths, 0)).tolist())))
    if low < 0:
        for i in np.flatnonzero(lengths < 0).tolist():
            out[i] = None
    return out


_UNROLL = 8  # values per struct unpack


def _cut_run(buffer: bytes, start: int, step: int, size: int, count: int) -> list[bytes | None]:
    """``count`` values of ``size`` bytes from ``buffer[start]`` on, ``step`` bytes apart."""
    whole = (count - 1) // _UNROLL * _UNROLL  # the last value's padding may run past the buffer
    out: list[bytes | None] = []
    if whole and step >= size:
        layout = struct.Struct(f"{size}s{step - size}x" * _UNROLL)
        out = list(chain.from_iterable(layout.iter_unpack(memoryview(buffer)[start: start + whole * step])))
    else:
        whole = 0
    out += [buffer[p: p + size] for p in range(start + whole * step, start + count * step, step)]
    return out


def records_from_columns(columns: RecordColumns, topic: str, partition: int) -> list[ConsumerRecord]:
    """One :class:`ConsumerRecord` per row of ``columns``, made in C loops."""
    n = columns.count
    buffer = columns.buffer
    rows = zip(repeat(topic, n), repeat(partition), columns.offsets.tolist(), columns.timestamps.tolist(),
               slices(buffer, columns.key_starts, columns.key_lengths),
               slices(buffer, columns.value_starts, columns.value_lengths),
               columns.headers if columns.headers is not None else repeat(()))
    return list(map(_new, repeat(ConsumerRecord), rows))


def decode_for_consumer(data: bytes, topic: str, partition: int, start: int,
                        aborted: Iterable[tuple[int, int]] | None = None) -> list[ConsumerRecord]:
    """Every record at offset >= ``start`` in the complete batches of ``data``.

    Control batches are skipped; a partial trailing batch is ignored. With
    ``aborted`` (read_committed: the fetch answer's (producer id, first
    offset) pairs), the batches of those aborted transactions are skipped too.

    :raises CorruptBatchError: a bad CRC, length or record encoding.
    :raises CompressionError: records that do not decompress.
    """
    return records_from_columns(decode_chunk(data, start, aborted), topic, partition)
