"""A producer batch, and the delivery handles derived from it.

The producer pays per *batch*, not per record: one :class:`ProducerBatch`
keeps its records as columns while open (values, stamps and, only if any
record has them, keys and headers: a fire-and-forget keyless record costs two
list appends), encodes them with numpy when it closes
(:mod:`~logbroker.client._encode`), and carries one completion event and one
outcome. A :class:`Delivery` is a three-slot handle (batch, index, timestamp)
whose :class:`~logbroker.client.types.RecordMetadata` is only made when
someone asks for it; a :class:`BulkDelivery` is the one handle of a
``send_many`` call, whatever its number of records.

The 61-byte header (producer id, epoch, base sequence and the CRC over
them) is written when the batch is first sent (:meth:`ProducerBatch.stamp`),
so it carries the sender's sequence numbers without a rewrite;
:func:`restamp` rewrites it in the rare case a retry needs new ones (a new
producer id after an error, sequence numbers moved down after a batch the
broker refused). A batch refused as too large is split into pieces
(:meth:`ProducerBatch.split`); its records' handles then answer from their piece.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np
import trio

from logbroker.records import (
    ATTR_TRANSACTIONAL,
    CRC_AT,
    CRC_START,
    CRC_STRUCT,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    PRODUCER_ID_AT,
    Compression,
    compress,
    decompress,
)
from logbroker.records.varint import decode_zigzag, encode_zigzag

from ._encode import Column, encode_records
from .types import RecordMetadata

__all__ = ["BulkDelivery", "Delivery", "PartitionRange", "ProducerBatch", "SendManyResult", "restamp"]

_IDS = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence: adjacent from PRODUCER_ID_AT
# The header split where the CRC's coverage starts: baseOffset .. crc, then attributes .. recordsCount.
_PREFIX = struct.Struct(HEADER_STRUCT.format[:6])
_TAIL = struct.Struct(">" + HEADER_STRUCT.format[6:])
assert _PREFIX.size == CRC_START and _PREFIX.size + _TAIL.size == HEADER_SIZE
_RECORD_OVERHEAD = 24  # an upper bound of a small record's varints and attributes
_NO_HEADERS = b"\x00"
_time_ns = time.time_ns


def restamp(data: bytes, producer_id: int, producer_epoch: int, base_sequence: int) -> bytes:
    """Return ``data`` (one batch) with new producer id, epoch and base sequence, and a valid CRC."""
    buf = bytearray(data)
    _IDS.pack_into(buf, PRODUCER_ID_AT, producer_id, producer_epoch, base_sequence)
    CRC_STRUCT.pack_into(buf, CRC_AT, crc32c.crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


def _milliseconds(stamps: list[int]) -> np.ndarray:
    """Stamps in ns (Python ints) as int64 ms."""
    try:
        return np.array(stamps, np.int64) // 1_000_000
    except OverflowError:  # an explicit timestamp_ms beyond int64 ns (after the year 2262)
        return np.array([s // 1_000_000 for s in stamps], np.int64)


class ProducerBatch:
    """Records for one partition, sent (and retried) as one unit.

    Life: *open* (records are added) -> *closed* (``records`` holds the
    encoded, compressed records section) -> *stamped* on first send (``data``
    holds the whole batch) -> *done* (``base_offset`` set) or *failed*
    (``error`` set). ``order`` says where the batch stands among the producer's
    batches (a creation counter, as a one-item tuple): retries are re-queued in
    that order so a partition's batches keep their sequence order.

    A batch the broker refused as too large can be *split* (:meth:`split`) into
    pieces that take its place in the queue (their ``order`` extends the
    batch's, so they sort where it stood); the batch is done once every piece
    is (:meth:`finish_split`), and each record's outcome is its piece's
    (:meth:`locate`, :meth:`segments`).

    ``room`` is the estimate of bytes that still fit (``capacity`` minus an
    upper bound of each record's size); callers check it before adding.
    ``plain`` is True while every record is keyless and headerless: only such
    a batch takes :meth:`add`, the fire-and-forget fast path.
    """

    __slots__ = (
        "topic",
        "partition",
        "order",
        "created",
        "deadline",
        "capacity",
        "room",
        "accounted",
        "plain",
        "records",
        "data",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "attempts",
        "retry_at",
        "base_offset",
        "log_append_time",
        "error",
        "observed",
        "sent_sequence",
        "pieces",
        "parent",
        "parent_index",
        "_open",
        "_attributes",
        "_codec",
        "_values",
        "_stamps",
        "_keys",
        "_headers",
        "_add_value",
        "_add_stamp",
        "_parts",
        "_encoded",
        "_base_ts",
        "_max_ts",
        "_event",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        *,
        order: tuple[int, ...],
        created: float,
        deadline: float,
        capacity: int = 0,
        codec: Compression = Compression.NONE,
        transactional: bool = False,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.order = order
        self.created = created
        self.deadline = deadline
        self.capacity = capacity
        self.room = capacity  # bytes (estimated) that still fit
        self.accounted = 0  # bytes counted in the accumulator's buffer once closed
        self.plain = True
        self.records: Any = None  # the records section (bytes-like) once closed, until stamped
        self.data: bytes | None = None  # the whole batch once stamped
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self.attempts = 0
        self.retry_at = 0.0
        self.base_offset = -1
        self.log_append_time = -1
        self.error: BaseException | None = None
        self.observed = False
        self.sent_sequence = -1  # the base sequence the last send carried (-1: never sent)
        self.pieces: list[ProducerBatch] | None = None  # once split: the pieces, in record order
        self.parent: ProducerBatch | None = None  # for a piece: the batch it was split from
        self.parent_index = 0  # for a piece: the index of its first record in the parent
        self._open = True
        self._codec = codec
        self._attributes = int(codec) | (ATTR_TRANSACTIONAL if transactional else 0)
        self._values: list[bytes | None] = []
        self._stamps: list[int] = []  # ns
        self._add_value = self._values.append
        self._add_stamp = self._stamps.append
        self._keys: list[bytes | None] | None = None  # only once a record has a key
        self._headers: list[bytes] | None = None  # encoded; only once a record has headers
        self._parts: list[Any] = []  # encoded runs of records, in order
        self._encoded = 0  # records in _parts
        self._base_ts = -1
        self._max_ts = -1
        self._event: trio.Event | None = None

    def __repr__(self) -> str:
        state = "open" if self._open else "failed" if self.error else ("done" if self.done else "closed")
        return (
            f"<ProducerBatch {self.topic}[{self.partition}] {state} records={self.count} "
            f"seq={self.base_sequence} attempts={self.attempts} offset={self.base_offset}>"
        )

    @property
    def count(self) -> int:
        """Records in the batch."""
        return self._encoded + len(self._values)

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def done(self) -> bool:
        return self._event is not None and self._event.is_set()

    @property
    def buffered(self) -> int:
        """Estimated bytes of the records added so far."""
        return self.capacity - self.room

    # -- adding (open) -------------------------------------------------------------------

    def add(self, value: bytes) -> bool:
        """The fast path: a keyless, headerless record stamped now, if it fits
        (False if not). Only for a :attr:`plain` batch; ``value`` must be bytes."""
        room = self.room - _RECORD_OVERHEAD - len(value)
        if room < 0:
            return False
        self.room = room
        self._add_value(value)
        self._add_stamp(_time_ns())
        return True

    def add_record(self, value: bytes | None, key: bytes | None, headers: bytes, timestamp_ms: int,
                   size: int) -> int:
        """Add one record (``headers`` encoded, ``size`` its estimate); return its index.

        The caller checked that it fits (``room >= size``).
        """
        index = self._encoded + len(self._values)
        if key is not None or self._keys is not None:
            if self._keys is None:
                self._keys = [None] * len(self._values)
            self._keys.append(key)
            self.plain = False
        if headers != _NO_HEADERS or self._headers is not None:
            if self._headers is None:
                self._headers = [_NO_HEADERS] * len(self._values)
            self._headers.append(headers)
            self.plain = False
        self._add_value(value)
        self._add_stamp(timestamp_ms * 1_000_000)
        self.room -= size
        return index

    def add_many(self, keys: Column | None, values: Column, headers: bytes, timestamp_ms: int, size: int) -> int:
        """Add ``len(values)`` records at once, all stamped ``timestamp_ms``; return the first one's index.

        The caller checked that they fit (``room >= size``).
        """
        self._flush()
        first = self._encoded
        n = values.count
        if first == 0:
            self._base_ts = self._max_ts = timestamp_ms
        elif timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms
        deltas = np.full(n, timestamp_ms - self._base_ts, np.int64)
        self._parts.append(encode_records(first, deltas, keys, values, headers))
        self._encoded = first + n
        self.room -= size
        if keys is not None or headers != _NO_HEADERS:
            self.plain = False
        return first

    def _flush(self) -> None:
        """Encode the records added one at a time so far."""
        n = len(self._values)
        if not n:
            return
        ms = _milliseconds(self._stamps)
        if not self._encoded:
            self._base_ts = self._max_ts = int(ms[0])
        self._max_ts = max(self._max_ts, int(ms.max()))
        keys = Column.from_items(self._keys, "key") if self._keys is not None else None
        headers = Column.from_items(self._headers, "header") if self._headers is not None else _NO_HEADERS
        self._parts.append(encode_records(self._encoded, ms - self._base_ts, keys,
                                          Column.from_items(self._values, "value"), headers))
        self._encoded += n
        self._values = []
        self._stamps = []
        self._add_value = self._values.append
        self._add_stamp = self._stamps.append
        self._keys = None
        self._headers = None

    # -- closing and sending ---------------------------------------------------------------

    def close(self) -> None:
        """Encode the batch's records (compressing them); no more records may be added."""
        if not self._open:
            return
        self._flush()
        self._open = False
        parts, self._parts = self._parts, []
        records = parts[0] if len(parts) == 1 else b"".join(parts)
        self.records = compress(self._codec, records) if self._codec else records

    def stamp(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        """Give the closed batch these ids: write its header on the first call, rewrite it
        later only if they changed."""
        if self.data is None:
            count = self._encoded
            tail = _TAIL.pack(self._attributes, count - 1, self._base_ts, self._max_ts,
                              producer_id, producer_epoch, base_sequence, count)
            records = self.records
            crc = crc32c.crc32c(records, crc32c.crc32c(tail))
            prefix = _PREFIX.pack(0, HEADER_SIZE - LOG_OVERHEAD + len(records), -1, MAGIC, crc)
            self.data = b"".join((prefix, tail, records))
            self.records = None
        elif (producer_id, producer_epoch, base_sequence) != (self.producer_id, self.producer_epoch,
                                                               self.base_sequence):
            self.data = restamp(self.data, producer_id, producer_epoch, base_sequence)
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence

    @property
    def size(self) -> int:
        """Bytes on the wire once stamped (estimated before)."""
        if self.data is not None:
            return len(self.data)
        if self.records is not None:
            return HEADER_SIZE + len(self.records)
        return HEADER_SIZE + self.buffered

    # -- splitting (a batch the broker refused as too large) ------------------------------

    def split(self) -> list[ProducerBatch]:
        """Split this closed batch of two or more records into pieces of at most half
        its records' bytes each (one record at least), in record order, and return them.

        Each piece is closed (compressed as this batch is) and not stamped; its
        ``order`` extends this batch's, so it sorts where this batch stood. This
        batch becomes their parent: it is done once every piece is
        (:meth:`finish_split`), and each record's outcome is its piece's.

        Records are not decoded: each keeps its bytes; only its offsetDelta is
        renumbered (timestampDeltas stay relative to this batch's base timestamp).
        """
        assert not self._open and self._encoded > 1 and self.pieces is None
        section: Any = memoryview(self.data)[HEADER_SIZE:] if self.data is not None else self.records
        raw = decompress(self._codec, bytes(section)) if self._codec else bytes(section)
        parsed: list[tuple[int, int, bytes, int]] = []  # attributes, timestampDelta, the rest, bytes
        pos = 0
        for _ in range(self._encoded):
            length, start = decode_zigzag(raw, pos)
            end = start + length
            ts_delta, at = decode_zigzag(raw, start + 1)
            _, rest = decode_zigzag(raw, at)
            parsed.append((raw[start], ts_delta, raw[rest:end], end - pos))
            pos = end
        target = pos // 2
        groups: list[list[tuple[int, int, bytes, int]]] = [[]]
        size = 0
        for record in parsed:
            if groups[-1] and size + record[3] > target:
                groups.append([])
                size = 0
            groups[-1].append(record)
            size += record[3]
        pieces: list[ProducerBatch] = []
        first = 0
        transactional = bool(self._attributes & ATTR_TRANSACTIONAL)
        for i, group in enumerate(groups):
            encoded: list[bytes] = []
            for delta, (attributes, stamp_delta, tail, _) in enumerate(group):
                body = b"".join((bytes((attributes,)), encode_zigzag(stamp_delta), encode_zigzag(delta), tail))
                encoded.append(encode_zigzag(len(body)))
                encoded.append(body)
            piece = ProducerBatch(self.topic, self.partition, order=(*self.order, i), created=self.created,
                                  deadline=self.deadline, codec=self._codec, transactional=transactional)
            piece.load(b"".join(encoded), len(group), self._base_ts,
                       self._base_ts + max(record[1] for record in group))
            piece.parent = self
            piece.parent_index = first
            first += len(group)
            pieces.append(piece)
        self.pieces = pieces
        return pieces

    def load(self, records: bytes, count: int, base_ts: int, max_ts: int) -> None:
        """Fill this new, empty batch with ``count`` encoded records (offsetDeltas from 0,
        timestampDeltas from ``base_ts``, the largest timestamp ``max_ts``) and close it."""
        assert self._open and not self.count
        self._parts = [records]
        self._encoded = count
        self._base_ts = base_ts
        self._max_ts = max_ts
        self.plain = False
        self.close()

    def locate(self, index: int) -> tuple[ProducerBatch, int]:
        """The batch that holds record ``index`` of this one, and the record's index there:
        this batch itself unless it was split."""
        batch = self
        while batch.pieces is not None:
            for piece in batch.pieces:
                if index < piece.parent_index + piece.count:
                    index -= piece.parent_index
                    batch = piece
                    break
        return batch, index

    def segments(self, first: int, count: int) -> list[tuple[ProducerBatch, int, int]]:
        """Records ``first`` .. ``first + count - 1`` of this batch as (batch, first index, count)
        runs of the batches that hold them, in order: one run unless the batch was split."""
        if self.pieces is None:
            return [(self, first, count)]
        runs: list[tuple[ProducerBatch, int, int]] = []
        end = first + count
        for piece in self.pieces:
            lo = max(first, piece.parent_index)
            hi = min(end, piece.parent_index + piece.count)
            if lo < hi:
                runs.extend(piece.segments(lo - piece.parent_index, hi - lo))
        return runs

    def finish_split(self) -> bool:
        """A piece of this split batch is done: if every piece is, this batch is done too
        (its ``error`` the first failed piece's, if any); return whether it is."""
        assert self.pieces is not None
        if not all(piece.done for piece in self.pieces):
            return False
        self.error = next((piece.error for piece in self.pieces if piece.error is not None), None)
        self._drop()
        self._finish()
        return True

    # -- outcome -----------------------------------------------------------------------------

    def complete(self, base_offset: int, log_append_time: int = -1) -> None:
        self.base_offset = base_offset
        self.log_append_time = log_append_time
        self._drop()
        self._finish()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._drop()
        self._finish()

    def _drop(self) -> None:
        if self._open:
            self._encoded += len(self._values)  # keep the count for statistics
            self._open = False
        self.data = None
        self.records = None
        self._values = []
        self._stamps = []
        self._keys = None
        self._headers = None
        self._parts = []

    def _finish(self) -> None:
        if self._event is None:
            self._event = trio.Event()
        self._event.set()

    async def wait(self) -> None:
        """Return once the batch is done or failed (never raises its error)."""
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


class Delivery:
    """The outcome of one ``send``: ``await delivery`` returns its RecordMetadata.

    :meth:`done`, :meth:`result` and :meth:`exception` look without waiting.
    Awaiting (or :meth:`result`/:meth:`exception`) marks a failure as seen,
    so :meth:`Producer.flush` does not report it again.

    Awaiting raises the batch's error: a :class:`~logbroker.errors.KafkaError`
    (KafkaTimeoutError when ``delivery_timeout_ms`` passed) or
    :class:`~logbroker.errors.ClientClosedError`. Cancelling the await leaves
    the send itself untouched.
    """

    __slots__ = ("_batch", "_index", "_timestamp")

    def __init__(self, batch: ProducerBatch, index: int, timestamp: int) -> None:
        self._batch = batch
        self._index = index
        self._timestamp = timestamp

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.wait().__await__()

    def move(self, batch: ProducerBatch, index: int) -> None:
        """The record left the batch it was held in for ``batch`` (at ``index``)."""
        self._batch = batch
        self._index = index

    @property
    def topic(self) -> str:
        return self._batch.topic

    @property
    def partition(self) -> int:
        """The partition, chosen when the record was queued."""
        return self._batch.partition

    async def wait(self) -> RecordMetadata:
        while not self._batch.done:  # a record held for metadata moves to its real batch once routed
            await self._batch.wait()
        return self.result()

    def done(self) -> bool:
        return self._batch.done

    def result(self) -> RecordMetadata:
        """The record's metadata; raises its error, or RuntimeError if not done yet."""
        batch = self._batch
        if not batch.done:
            raise RuntimeError("the record is not delivered yet")
        index = self._index
        if batch.pieces is not None:  # split: the record's piece says
            batch, index = batch.locate(index)
        if batch.error is not None:
            batch.observed = True
            raise batch.error
        offset = batch.base_offset + index if batch.base_offset >= 0 else -1
        timestamp = batch.log_append_time if batch.log_append_time >= 0 else self._timestamp
        return RecordMetadata(batch.topic, batch.partition, offset, timestamp)

    def exception(self) -> BaseException | None:
        """The error if delivery failed, None if it succeeded; RuntimeError if not done."""
        batch = self._batch
        if not batch.done:
            raise RuntimeError("the record is not delivered yet")
        if batch.pieces is not None:
            batch = batch.locate(self._index)[0]
        batch.observed = True
        return batch.error

    def __repr__(self) -> str:
        b, index = self._batch.locate(self._index)
        state = "pending" if not b.done else ("failed" if b.error else f"offset={b.base_offset + index}")
        return f"<Delivery {b.topic}[{b.partition}] #{self._index} {state}>"


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """``count`` consecutive records of one ``send_many`` call in ``partition`` from
    ``first_offset`` (-1 with ``acks=0``)."""

    partition: int
    first_offset: int
    count: int


@dataclass(frozen=True, slots=True)
class SendManyResult:
    """Where the records of one ``send_many`` call landed: ``ranges`` in the order
    they were appended (the call's records of one partition keep their order)."""

    topic: str
    count: int
    ranges: tuple[PartitionRange, ...]
    timestamp: int

    def offsets(self, partition: int) -> list[int]:
        """The offsets of the call's records in ``partition``, in call order."""
        out: list[int] = []
        for r in self.ranges:
            if r.partition == partition:
                out.extend(range(r.first_offset, r.first_offset + r.count))
        return out


class BulkDelivery:
    """The outcome of one ``send_many``: ``await bulk`` returns a :class:`SendManyResult`.

    One handle for the whole call: it lists the (batch, first index, count)
    chunks the records went to (a chunk of a split batch counts by its
    pieces). Awaiting raises the first failed chunk's error (and marks every
    chunk's failure as seen); :meth:`done`, :meth:`result` and
    :meth:`exception` look without waiting, as for :class:`Delivery`.
    """

    __slots__ = ("topic", "count", "timestamp", "_chunks")

    def __init__(self, topic: str, timestamp: int) -> None:
        self.topic = topic
        self.count = 0
        self.timestamp = timestamp
        self._chunks: list[tuple[ProducerBatch, int, int]] = []

    def add(self, batch: ProducerBatch, first: int, count: int) -> None:
        """``count`` records of the call went to ``batch`` from index ``first``."""
        self._chunks.append((batch, first, count))
        self.count += count

    def __await__(self) -> Generator[Any, None, SendManyResult]:
        return self.wait().__await__()

    async def wait(self) -> SendManyResult:
        for batch, _, _ in self._chunks:
            await batch.wait()
        return self.result()

    def done(self) -> bool:
        return all(batch.done for batch, _, _ in self._chunks)

    def exception(self) -> BaseException | None:
        """The first error if a chunk failed, None if all succeeded; RuntimeError if not done."""
        if not self.done():
            raise RuntimeError("the records are not delivered yet")
        first: BaseException | None = None
        for batch, _, _ in self._runs():
            if batch.error is not None:
                batch.observed = True
                first = first or batch.error
        return first

    def _runs(self) -> list[tuple[ProducerBatch, int, int]]:
        """The chunks, those of split batches as the runs of their pieces."""
        runs: list[tuple[ProducerBatch, int, int]] = []
        for batch, first, count in self._chunks:
            if batch.pieces is None:
                runs.append((batch, first, count))
            else:
                runs.extend(batch.segments(first, count))
        return runs

    def result(self) -> SendManyResult:
        """Where the records landed; raises the first error, or RuntimeError if not done yet."""
        error = self.exception()
        if error is not None:
            raise error
        ranges: list[PartitionRange] = []
        for batch, first, count in self._runs():
            offset = batch.base_offset + first if batch.base_offset >= 0 else -1
            last = ranges[-1] if ranges else None
            if (last is not None and last.partition == batch.partition and offset >= 0
                    and last.first_offset + last.count == offset):
                ranges[-1] = PartitionRange(batch.partition, last.first_offset, last.count + count)
            else:
                ranges.append(PartitionRange(batch.partition, offset, count))
        return SendManyResult(self.topic, self.count, tuple(ranges), self.timestamp)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<BulkDelivery {self.topic} records={self.count} chunks={len(self._chunks)} {state}>"
