"""A producer batch and the per-record delivery handle derived from it.

The producer pays per *batch*, not per record: one :class:`ProducerBatch`
carries one :class:`~logbroker.records.BatchBuilder`, one completion event
and one outcome; a :class:`Delivery` is a three-slot handle (batch, index,
timestamp) whose :class:`~logbroker.client.types.RecordMetadata` is only made
when someone asks for it.

Idempotence stamps the producer id, epoch and base sequence into the batch
header. They are guessed when the batch is opened and checked when it is
first sent; :func:`restamp` rewrites them (and the CRC, which covers them)
in the rare case the guess was wrong (a new producer id after an error).
"""

from __future__ import annotations

import struct

import crc32c
import trio

from logbroker.records import BatchBuilder

from .types import RecordMetadata

__all__ = ["Delivery", "ProducerBatch", "restamp"]

_IDS = struct.Struct(">qhi")  # producerId @43, producerEpoch @51, baseSequence @53
_CRC = struct.Struct(">I")  # @17, over bytes [21, end)


def restamp(data: bytes, producer_id: int, producer_epoch: int, base_sequence: int) -> bytes:
    """Return ``data`` (one batch) with new producer id, epoch and base sequence, and a valid CRC."""
    buf = bytearray(data)
    _IDS.pack_into(buf, 43, producer_id, producer_epoch, base_sequence)
    _CRC.pack_into(buf, 17, crc32c.crc32c(memoryview(buf)[21:]))
    return bytes(buf)


class ProducerBatch:
    """Records for one partition, sent (and retried) as one unit.

    Life: *open* (``builder`` accepts records) -> *closed* (``data`` holds
    the encoded batch) -> *in flight* -> *done* (``base_offset`` set) or
    *failed* (``error`` set). ``order`` is a per-producer creation counter:
    retries are re-queued in that order so a partition's batches keep their
    sequence order.
    """

    __slots__ = (
        "topic",
        "partition",
        "builder",
        "order",
        "created",
        "deadline",
        "append",
        "capacity",
        "room",
        "accounted",
        "count",
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
        "_event",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        builder: BatchBuilder,
        *,
        order: int,
        created: float,
        deadline: float,
        capacity: int = 0,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.builder: BatchBuilder | None = builder
        self.order = order
        self.created = created
        self.deadline = deadline
        self.append = builder.append if builder is not None else None  # the hot path calls it directly
        self.capacity = capacity
        self.room = capacity  # bytes (estimated) that still fit
        self.accounted = 0  # bytes counted in the producer's buffer once closed
        self.count = 0
        self.data: bytes | None = None
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.attempts = 0
        self.retry_at = 0.0
        self.base_offset = -1
        self.log_append_time = -1
        self.error: BaseException | None = None
        self.observed = False
        self._event: trio.Event | None = None

    def __repr__(self) -> str:
        state = "open" if self.builder is not None else "failed" if self.error else (
            "done" if self.done else "closed")
        return (
            f"<ProducerBatch {self.topic}[{self.partition}] {state} records={self.count} "
            f"seq={self.base_sequence} attempts={self.attempts} offset={self.base_offset}>"
        )

    @property
    def done(self) -> bool:
        return self._event is not None and self._event.is_set()

    @property
    def buffered(self) -> int:
        """Estimated bytes of the records added so far."""
        return self.capacity - self.room

    def close(self) -> None:
        """Encode the batch (compressing it); no more records may be added."""
        builder = self.builder
        if builder is not None:
            self.data = builder.build()
            self.builder = None
            self.append = None

    def stamp(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        """Give the closed batch these ids, rewriting the header only if they changed."""
        if (producer_id, producer_epoch, base_sequence) != (self.producer_id, self.producer_epoch, self.base_sequence):
            self.data = restamp(self.data, producer_id, producer_epoch, base_sequence)  # type: ignore[arg-type]
            self.producer_id = producer_id
            self.producer_epoch = producer_epoch
            self.base_sequence = base_sequence

    def complete(self, base_offset: int, log_append_time: int = -1) -> None:
        self.base_offset = base_offset
        self.log_append_time = log_append_time
        self.data = None
        self._finish()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.data = None
        self.builder = None
        self.append = None
        self._finish()

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

    def __await__(self):
        return self.wait().__await__()

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
        if batch.error is not None:
            batch.observed = True
            raise batch.error
        offset = batch.base_offset + self._index if batch.base_offset >= 0 else -1
        timestamp = batch.log_append_time if batch.log_append_time >= 0 else self._timestamp
        return RecordMetadata(batch.topic, batch.partition, offset, timestamp)

    def exception(self) -> BaseException | None:
        """The error if delivery failed, None if it succeeded; RuntimeError if not done."""
        batch = self._batch
        if not batch.done:
            raise RuntimeError("the record is not delivered yet")
        batch.observed = True
        return batch.error

    def __repr__(self) -> str:
        b = self._batch
        state = "pending" if not b.done else ("failed" if b.error else f"offset={b.base_offset + self._index}")
        return f"<Delivery {b.topic}[{b.partition}] #{self._index} {state}>"
