"""Encode many records of one batch v2 at once, with numpy: the producer's records section.

The producer never encodes records one Python call at a time: an open
batch keeps its records as columns (values, keys, headers, timestamps) and
this module turns a run of them into the records section in a few numpy
operations (layout in :mod:`logbroker.records.builder`)::

    length varint | attributes 0 | timestampDelta varlong | offsetDelta varint
    | keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value | headers

Two paths give identical bytes:

* *rows*: every key and value has the same width (or every key is null) and
  the headers are the same for each record (the common case: fixed-size
  values, no key). Records whose varints have the same lengths have the same
  layout, so each such run is one 2-D array filled column by column.
* *scatter*: anything else (nulls, varying widths): each field is written
  at per-record positions with fancy indexing.

Pure functions of their arguments; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from logbroker.records.varint import encode_zigzag

__all__ = ["Column", "as_bytes", "encode_headers", "encode_records"]

_U8 = np.uint8
_NO_HEADERS = b"\x00"
_LIMITS = [np.uint64(1 << bits) for bits in range(7, 64, 7)]


def as_bytes(obj: Any, what: str) -> bytes:
    """``obj`` as bytes: str is UTF-8 encoded, bytes-likes copied; TypeError for anything else."""
    if obj.__class__ is bytes:
        return obj
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"record {what} must be bytes, str or None, not {type(obj).__name__}")


def encode_headers(headers: Any) -> bytes:
    """headerCount followed by each ``(name, value)``: names str (UTF-8) or bytes, values bytes-like or None."""
    if not headers:
        return _NO_HEADERS
    items = headers if isinstance(headers, (list, tuple)) else tuple(headers)
    parts = [encode_zigzag(len(items))]
    for item in items:
        name, value = item
        name = as_bytes(name, "header key")
        parts.append(encode_zigzag(len(name)))
        parts.append(name)
        if value is None:
            parts.append(b"\x01")
        else:
            value = as_bytes(value, "header value")
            parts.append(encode_zigzag(len(value)))
            parts.append(value)
    return b"".join(parts)


class Column:
    """``count`` byte strings, some possibly null, in one of two layouts.

    ``rows`` is a ``(count, width)`` uint8 array when every item is non-null
    and has the same width; otherwise ``rows`` is None and ``data`` holds the
    non-null items back to back with ``lengths`` (-1 for null) per item.
    """

    __slots__ = ("count", "rows", "data", "lengths", "items", "_starts_cache")

    def __init__(self, count: int, rows: np.ndarray | None, data: np.ndarray | None = None,
                 lengths: np.ndarray | None = None) -> None:
        self.count = count
        self.rows = rows
        self.data = data
        self.lengths = lengths
        self.items: Sequence[bytes | None] | None = None  # the items as given, when made from them
        self._starts_cache: np.ndarray | None = None

    def __repr__(self) -> str:
        layout = f"rows of {self.rows.shape[1]}" if self.rows is not None else "variable"
        return f"<Column {self.count} items, {layout}>"

    def __len__(self) -> int:
        return self.count

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> Column:
        """A column of the rows of a 2-D uint8 array."""
        return cls(rows.shape[0], np.ascontiguousarray(rows))

    @classmethod
    def from_items(cls, items: Sequence[Any], what: str) -> Column:
        """A column of bytes-like items (str is UTF-8 encoded, None is null).

        :raises TypeError: an item of another type (the message names its index).
        """
        count = len(items)
        try:
            joined = b"".join(items)
        except TypeError:
            items = cls._normalized(items, what)
            joined = b"".join(item for item in items if item is not None)
            lengths = np.fromiter((-1 if item is None else len(item) for item in items), np.int64, count)
        else:
            sizes = list(map(len, items))
            if count and sizes.count(sizes[0]) == count:
                column = cls(count, np.frombuffer(joined, _U8).reshape(count, sizes[0]))
                column.items = items
                return column
            lengths = np.array(sizes, np.int64)
        column = cls(count, None, np.frombuffer(joined, _U8), lengths)
        column.items = items
        return column

    @staticmethod
    def _normalized(items: Sequence[Any], what: str) -> list[bytes | None]:
        out: list[bytes | None] = []
        for index, item in enumerate(items):
            if item is None:
                out.append(None)
                continue
            try:
                out.append(as_bytes(item, what))
            except TypeError as exc:
                raise TypeError(f"{what}s[{index}]: {exc}") from None
        return out

    @property
    def width(self) -> int:
        """The width of every item in the rows layout, else -1."""
        return self.rows.shape[1] if self.rows is not None else -1

    def sizes(self) -> np.ndarray:
        """Bytes of each item (0 for null), int64."""
        if self.rows is not None:
            return np.full(self.count, self.rows.shape[1], np.int64)
        assert self.lengths is not None
        return np.maximum(self.lengths, 0)

    def _starts(self) -> np.ndarray:
        if self._starts_cache is None:
            assert self.lengths is not None
            sizes = np.maximum(self.lengths, 0)
            self._starts_cache = np.cumsum(sizes) - sizes
        return self._starts_cache

    def slice(self, start: int, stop: int) -> Column:
        """Items ``[start, stop)``."""
        if self.rows is not None:
            column = Column(stop - start, self.rows[start:stop])
        else:
            assert self.data is not None and self.lengths is not None
            starts = self._starts()
            begin = int(starts[start]) if start < self.count else int(self.data.shape[0])
            end = int(starts[stop]) if stop < self.count else int(self.data.shape[0])
            column = Column(stop - start, None, self.data[begin:end], self.lengths[start:stop])
        if self.items is not None:
            column.items = self.items[start:stop]
        return column

    def take(self, indexes: np.ndarray) -> Column:
        """The items at ``indexes`` (an int array), in that order."""
        if self.rows is not None:
            return Column(len(indexes), self.rows[indexes])
        assert self.data is not None and self.lengths is not None
        lengths = self.lengths[indexes]
        sizes = np.maximum(lengths, 0)
        total = int(sizes.sum())
        starts = self._starts()[indexes]
        gather = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(total)
        return Column(len(indexes), None, self.data[gather], lengths)


def _zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64, copy=False)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def _varint_lengths(u: np.ndarray) -> np.ndarray:
    lengths = np.ones(u.shape, np.int64)
    if u.size:
        top = u.max()
        for limit in _LIMITS:
            if top < limit:
                break
            lengths += u >= limit
    return lengths


def _varint_matrix(u: np.ndarray, width: int) -> np.ndarray:
    """The varints of ``u`` (all ``width`` bytes long) as a ``(len(u), width)`` array."""
    out = np.empty((u.shape[0], width), _U8)
    for j in range(width):
        byte = (u >> np.uint64(7 * j)) & np.uint64(0x7F)
        out[:, j] = byte | np.uint64(0x80) if j < width - 1 else byte
    return out


def encode_records(first_offset: int, ts_deltas: np.ndarray, keys: Column | None, values: Column,
                   headers: Column | bytes = _NO_HEADERS) -> np.ndarray:
    """The records section of ``len(values)`` records, as a uint8 array.

    Record ``i`` has offsetDelta ``first_offset + i``, timestampDelta
    ``ts_deltas[i]``, key ``keys[i]`` (all null when ``keys`` is None), value
    ``values[i]`` and headers ``headers`` (encoded by :func:`encode_headers`;
    one bytes for every record, or a column of them).
    """
    n = values.count
    zz_ts = _zigzag(ts_deltas)
    zz_off = _zigzag(np.arange(first_offset, first_offset + n, dtype=np.int64))
    kt = _varint_lengths(zz_ts)
    ko = _varint_lengths(zz_off)
    fixed = (values.rows is not None and (keys is None or keys.rows is not None)
             and (isinstance(headers, bytes) or headers.rows is not None))
    if fixed:
        layout = kt * 16 + ko
        cuts = np.flatnonzero(layout[1:] != layout[:-1]) + 1
        if len(cuts) <= max(8, n // 64):
            return _encode_rows(zz_ts, zz_off, kt, ko, cuts, keys, values, headers)
    return _encode_scatter(zz_ts, zz_off, kt, ko, keys, values, headers)


def _encode_rows(zz_ts: np.ndarray, zz_off: np.ndarray, kt: np.ndarray, ko: np.ndarray, cuts: np.ndarray,
                 keys: Column | None, values: Column, headers: Column | bytes) -> np.ndarray:
    assert values.rows is not None
    n = values.count
    key_width = -1 if keys is None else keys.width
    key_len = encode_zigzag(key_width)
    value_width = values.width
    value_len = encode_zigzag(value_width)
    if isinstance(headers, bytes):
        header_width, header_const = len(headers), np.frombuffer(headers, _U8)
    else:
        header_width, header_const = headers.width, None
    fixed_body = 1 + len(key_len) + max(key_width, 0) + len(value_len) + value_width + header_width
    bounds = [0, *cuts.tolist(), n]
    sizes = []
    for a in bounds[:-1]:
        body = fixed_body + int(kt[a]) + int(ko[a])
        sizes.append(len(encode_zigzag(body)) + body)
    total = sum(size * (b - a) for size, a, b in zip(sizes, bounds, bounds[1:]))
    out = np.empty(total, _U8)
    pos = 0
    for size, a, b in zip(sizes, bounds, bounds[1:]):
        t, o = int(kt[a]), int(ko[a])
        length = encode_zigzag(fixed_body + t + o)
        view = out[pos:pos + size * (b - a)].reshape(b - a, size)
        pos += size * (b - a)
        c = len(length)
        view[:, :c] = np.frombuffer(length, _U8)
        view[:, c] = 0  # attributes
        c += 1
        view[:, c:c + t] = _varint_matrix(zz_ts[a:b], t)
        c += t
        view[:, c:c + o] = _varint_matrix(zz_off[a:b], o)
        c += o
        view[:, c:c + len(key_len)] = np.frombuffer(key_len, _U8)
        c += len(key_len)
        if key_width > 0:
            assert keys is not None and keys.rows is not None
            view[:, c:c + key_width] = keys.rows[a:b]
            c += key_width
        view[:, c:c + len(value_len)] = np.frombuffer(value_len, _U8)
        c += len(value_len)
        view[:, c:c + value_width] = values.rows[a:b]
        c += value_width
        if header_const is not None:
            view[:, c:] = header_const
        else:
            assert not isinstance(headers, bytes) and headers.rows is not None
            view[:, c:] = headers.rows[a:b]
    return out


def _column_parts(column: Column | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zigzag lengths, byte sizes, flat data) of a column; a None column is all null."""
    if column is None:
        lengths = np.full(n, -1, np.int64)
        return _zigzag(lengths), np.zeros(n, np.int64), np.empty(0, _U8)
    if column.rows is not None:
        width = column.rows.shape[1]
        lengths = np.full(n, width, np.int64)
        return _zigzag(lengths), lengths, column.rows.reshape(-1)
    assert column.lengths is not None and column.data is not None
    return _zigzag(column.lengths), np.maximum(column.lengths, 0), column.data


def _put_varints(out: np.ndarray, at: np.ndarray, u: np.ndarray, widths: np.ndarray) -> None:
    top = int(widths.max()) if widths.size else 0
    for j in range(top):
        byte = ((u >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(_U8)
        more = widths > j + 1
        byte[more] |= 0x80
        if j == 0:
            out[at] = byte
        else:
            present = widths > j
            out[at[present] + j] = byte[present]


def _put_bytes(out: np.ndarray, at: np.ndarray, data: np.ndarray, sizes: np.ndarray) -> None:
    total = int(data.shape[0])
    if not total:
        return
    starts = np.cumsum(sizes) - sizes
    out[np.repeat(at - starts, sizes) + np.arange(total)] = data


def _encode_scatter(zz_ts: np.ndarray, zz_off: np.ndarray, kt: np.ndarray, ko: np.ndarray,
                    keys: Column | None, values: Column, headers: Column | bytes) -> np.ndarray:
    n = values.count
    zz_klen, ksize, kdata = _column_parts(keys, n)
    zz_vlen, vsize, vdata = _column_parts(values, n)
    kk = _varint_lengths(zz_klen)
    kv = _varint_lengths(zz_vlen)
    if isinstance(headers, bytes):
        hsize = np.full(n, len(headers), np.int64)
        hdata = np.tile(np.frombuffer(headers, _U8), n) if headers != _NO_HEADERS else None
    else:
        _, hsize, hdata = _column_parts(headers, n)
    body = 1 + kt + ko + kk + ksize + kv + vsize + hsize
    zz_body = _zigzag(body)
    kl = _varint_lengths(zz_body)
    size = kl + body
    total = int(size.sum())
    out = np.zeros(total, _U8)
    at = np.cumsum(size) - size
    _put_varints(out, at, zz_body, kl)
    at = at + kl + 1  # the attributes byte stays 0
    _put_varints(out, at, zz_ts, kt)
    at += kt
    _put_varints(out, at, zz_off, ko)
    at += ko
    _put_varints(out, at, zz_klen, kk)
    at += kk
    _put_bytes(out, at, kdata, ksize)
    at += ksize
    _put_varints(out, at, zz_vlen, kv)
    at += kv
    _put_bytes(out, at, vdata, vsize)
    at += vsize
    if hdata is not None:
        _put_bytes(out, at, hdata, hsize)
    return out
