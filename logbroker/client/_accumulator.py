"""The producer's record accumulator: per-partition open batches, buffer memory, linger.

:class:`RecordAccumulator` owns every record the producer holds before the
sender takes it, as the Java client's ``RecordAccumulator`` does:

* the partition count of each topic the producer uses (from metadata) and
  the choice of partition: the configured hash for keys, a *sticky*
  partition per topic for keyless records (moved when its batch closes);
* one open :class:`~logbroker.client._batches.ProducerBatch` per partition,
  and per topic the open batch of its sticky partition while that batch is
  *plain* (keyless, headerless) and the buffer has room: the fire-and-forget
  fast path (:attr:`sticky_batch`) adds to it with one call;
* records waiting for their topic's metadata (held; routed when it arrives);
* per partition, the queue of closed batches waiting for the sender, in
  creation order (retries are put back in that order);
* buffer memory: the bytes of closed batches and held records, against
  ``max_buffer_bytes``, and the event that says room came back.

The producer fills it (:meth:`append`, :meth:`append_many`, :meth:`hold`);
the sender drains it (:meth:`close_lingering`, :meth:`heads`,
:meth:`pop_head`, :meth:`reenqueue`) and gives memory back when a batch is
done (:meth:`release`). It never sends or completes anything: ``wake`` (the
sender's) is called when there is something new to send. One trio loop.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np
import trio

from logbroker.errors import RecordTooLargeError, UnknownTopicOrPartitionError

from ._batches import BulkDelivery, Delivery, ProducerBatch
from ._encode import Column
from .config import ProducerConfig
from .partitioner import PARTITIONERS, StickyPartitions, hashes_empty_key, partition_many

__all__ = ["RECORD_OVERHEAD", "RecordAccumulator"]

RECORD_OVERHEAD = 24  # an upper bound of a small record's varints and attributes
_TopicPartition = tuple[str, int]
# value, key, partition, headers (encoded), timestamp_ms, size, delivery
_Held = tuple[bytes | None, bytes | None, int | None, bytes, int, int, Delivery]


class RecordAccumulator:
    """Records between ``send`` and the sender (see the module docstring)."""

    def __init__(self, config: ProducerConfig, wake: Callable[[], None]) -> None:
        self._codec = config.codec
        self._transactional = config.transactional_id is not None
        self._partitioner = config.partitioner
        self._hash = PARTITIONERS[config.partitioner]
        self._hash_empty = hashes_empty_key(config.partitioner)
        self._sticky = StickyPartitions()
        self._batch_size = config.batch_size
        self._linger = config.linger_ms / 1000
        self._max_buffer = config.max_buffer_bytes
        self._delivery_timeout = config.delivery_timeout_ms / 1000
        self._max_block = config.max_block_ms / 1000
        self._max_record = config.max_request_size - 100
        self._wake = wake
        self._counts: dict[str, int] = {}  # topic -> partitions, from metadata
        self._open: dict[_TopicPartition, ProducerBatch] = {}
        self._sticky_open: dict[str, ProducerBatch] = {}  # only while plain and the buffer has room
        self.sticky_batch: Callable[[str], ProducerBatch | None] = self._sticky_open.get
        """``sticky_batch(topic)``: the open plain batch of the topic's sticky partition, or None.
        The fast path adds to it with :meth:`ProducerBatch.add`."""
        self._held: dict[str, tuple[ProducerBatch, list[_Held]]] = {}
        self._queues: dict[_TopicPartition, deque[ProducerBatch]] = {}
        self._order = itertools.count()
        self._buffered = 0
        self._limit = -1  # max_buffer_bytes while accepting; -1 (refuse everything) before start and after stop
        self._space = trio.Event()

    def __repr__(self) -> str:
        return (f"<RecordAccumulator buffered={self._buffered}B open={len(self._open)} "
                f"queued={self.queued_count()} held={sum(len(items) for _, items in self._held.values())}>")

    # -- state --------------------------------------------------------------------------

    def start(self) -> None:
        """Accept records (up to ``max_buffer_bytes`` buffered)."""
        self._limit = self._max_buffer

    def stop(self) -> None:
        """Refuse every record from now on."""
        self._limit = -1
        self._sticky_open.clear()

    @property
    def buffered(self) -> int:
        """Bytes of closed batches and held records."""
        return self._buffered

    def refusing(self) -> bool:
        """True if no record may be added now: stopped, or the buffer is full."""
        return self._buffered >= self._limit

    def full(self) -> bool:
        """True if the buffer reached ``max_buffer_bytes``."""
        return self._buffered >= self._max_buffer

    def has_room(self, size: int) -> bool:
        """True if ``size`` more bytes fit in the buffer now."""
        return self._buffered + size <= self._limit

    async def wait_for_space(self) -> None:
        """Return once a batch was released (the buffer may have room again)."""
        if self._space.is_set():
            self._space = trio.Event()
        await self._space.wait()

    def partitions(self, topic: str) -> int | None:
        """The partition count of ``topic``, None while its metadata is not loaded."""
        return self._counts.get(topic)

    def set_partitions(self, topic: str, count: int) -> None:
        self._counts[topic] = count

    def topics(self) -> list[str]:
        """The topics whose metadata is loaded."""
        return list(self._counts)

    def open_count(self) -> int:
        return len(self._open)

    def queued_count(self) -> int:
        return sum(map(len, self._queues.values()))

    def is_idle(self) -> bool:
        """True if no batch is open or queued."""
        return not self._open and not any(self._queues.values())

    # -- filling ------------------------------------------------------------------------

    def _choose(self, topic: str, n: int, key: bytes | None, partition: int | None) -> tuple[int, bool]:
        """(partition, whether it is the sticky one)."""
        if partition is None:
            if key is None or (not key and not self._hash_empty):
                return self._sticky.get(topic, n), True
            return self._hash(key, n), False
        if not 0 <= partition < n:
            raise UnknownTopicOrPartitionError(f"{topic!r} has {n} partitions, not {partition + 1}")
        return partition, False

    def append(self, topic: str, n: int, value: bytes | None, key: bytes | None, partition: int | None,
               headers: bytes, timestamp_ms: int, size: int) -> tuple[ProducerBatch, int]:
        """Add a record to its partition's open batch; return the batch and the record's index.

        ``n`` is the topic's partition count, ``headers`` encoded, ``size`` the record's estimate.

        :raises UnknownTopicOrPartitionError: ``partition`` is out of range.
        :raises RecordTooLargeError: the record alone exceeds ``max_request_size``.
        """
        partition, sticky = self._choose(topic, n, key, partition)
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is not None and batch.room < size:
            self._close_batch(tp, batch)
            if sticky:  # closing moved the sticky partition
                tp = (topic, self._sticky.get(topic, n))
            batch = self._open.get(tp)
            if batch is not None and batch.room < size:
                self._close_batch(tp, batch)
                batch = None
        if batch is None:
            batch = self._new_batch(tp, size)
        index = batch.add_record(value, key, headers, timestamp_ms, size)
        self._track_sticky(topic, batch, sticky)
        return batch, index

    def _track_sticky(self, topic: str, batch: ProducerBatch, sticky: bool) -> None:
        if sticky and batch.plain and self._buffered < self._limit:
            self._sticky_open[topic] = batch
        elif not batch.plain and self._sticky_open.get(topic) is batch:
            del self._sticky_open[topic]

    def append_many(self, topic: str, n: int, keys: Column | None, values: Column, partition: int | None,
                    headers: bytes, timestamp_ms: int, bulk: BulkDelivery) -> None:
        """Add ``len(values)`` records, all stamped ``timestamp_ms``; each chunk that lands in
        a batch is recorded in ``bulk``. Records of one partition keep their order.

        Without ``partition`` keyless records (``keys`` None, or a null key) go to the
        sticky partition (moving as batches fill) and keys are hashed.

        :raises UnknownTopicOrPartitionError: ``partition`` is out of range.
        :raises RecordTooLargeError: a record alone exceeds ``max_request_size``
            (checked before any record is added).
        """
        count = values.count
        if not count:
            return
        sizes = self.record_sizes(keys, values, headers)
        if partition is not None:
            if not 0 <= partition < n:
                raise UnknownTopicOrPartitionError(f"{topic!r} has {n} partitions, not {partition + 1}")
            self._fill(topic, n, partition, keys, values, headers, timestamp_ms, sizes, bulk)
            return
        if keys is None:
            self._fill(topic, n, None, None, values, headers, timestamp_ms, sizes, bulk)
            return
        targets = self._key_partitions(topic, n, keys)
        if targets.size and (targets == targets[0]).all():
            self._fill(topic, n, int(targets[0]), keys, values, headers, timestamp_ms, sizes, bulk)
            return
        order = np.argsort(targets, kind="stable")
        ordered = targets[order]
        cuts = [0, *(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist(), count]
        for a, b in zip(cuts, cuts[1:]):
            picked = order[a:b]
            self._fill(topic, n, int(ordered[a]), keys.take(picked), values.take(picked), headers,
                       timestamp_ms, sizes[picked], bulk)

    def record_sizes(self, keys: Column | None, values: Column, headers: bytes) -> np.ndarray:
        """The size estimate of each record of a bulk call.

        :raises RecordTooLargeError: a record alone exceeds ``max_request_size``.
        """
        sizes = values.sizes() + (RECORD_OVERHEAD + len(headers))
        if keys is not None:
            sizes += keys.sizes()
        biggest = int(sizes.max()) if sizes.size else 0
        if biggest > self._max_record:
            raise RecordTooLargeError(f"a record of about {biggest} bytes exceeds "
                                      f"max_request_size={self._max_record + 100}")
        return sizes

    def _key_partitions(self, topic: str, n: int, keys: Column) -> np.ndarray:
        """The partition of each record of a keyed call: hashed keys, the sticky one for null
        (and, for crc32, empty) keys."""
        items = keys.items if keys.items is not None else [bytes(row) for row in keys.rows]  # type: ignore[union-attr]  # one layout is set
        if keys.rows is not None:
            hashed = np.full(keys.count, bool(keys.rows.shape[1] or self._hash_empty))
        else:
            assert keys.lengths is not None
            hashed = keys.lengths > 0 if not self._hash_empty else keys.lengths >= 0
        if hashed.all():
            return partition_many(self._partitioner, items, n)  # type: ignore[arg-type]  # no null among them
        targets = np.full(keys.count, self._sticky.get(topic, n), np.int64)
        picked = np.flatnonzero(hashed)
        if picked.size:
            targets[picked] = partition_many(self._partitioner, [items[i] for i in picked.tolist()], n)  # type: ignore[misc]  # not null
        return targets

    def _fill(self, topic: str, n: int, partition: int | None, keys: Column | None, values: Column,
              headers: bytes, timestamp_ms: int, sizes: np.ndarray, bulk: BulkDelivery) -> None:
        """Add the records to ``partition``'s batches (the sticky partition's if None), opening
        and closing batches as they fill."""
        sticky = partition is None
        ends = np.cumsum(sizes)
        total = values.count
        done = 0
        while done < total:
            part = self._sticky.get(topic, n) if partition is None else partition
            tp = (topic, part)
            before = int(ends[done - 1]) if done else 0
            batch = self._open.get(tp)
            if batch is not None:
                fit = int(np.searchsorted(ends, before + batch.room, "right")) - done
                if fit <= 0:
                    self._close_batch(tp, batch)
                    continue
            else:
                batch = self._new_batch(tp, int(sizes[done]))
                fit = int(np.searchsorted(ends, before + batch.room, "right")) - done
            stop = done + fit
            first = batch.add_many(None if keys is None else keys.slice(done, stop), values.slice(done, stop),
                                   headers, timestamp_ms, int(ends[stop - 1]) - before)
            bulk.add(batch, first, fit)
            self._track_sticky(topic, batch, sticky)
            done = stop

    def hold(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None, headers: bytes,
             timestamp_ms: int, size: int) -> Delivery:
        """Keep a record until ``topic``'s metadata arrives (see :meth:`route_held`)."""
        entry = self._held.get(topic)
        if entry is None:
            now = trio.current_time()
            holder = ProducerBatch(topic, -1, order=(next(self._order),), created=now, deadline=now + self._max_block)
            entry = self._held[topic] = (holder, [])
        holder, items = entry
        delivery = Delivery(holder, len(items), timestamp_ms)
        items.append((value, key, partition, headers, timestamp_ms, size, delivery))
        holder.accounted += size
        self._buffered += size
        if self._buffered >= self._limit:
            self._sticky_open.clear()
        return delivery

    def held_topics(self) -> list[str]:
        return list(self._held)

    def holders(self) -> list[ProducerBatch]:
        """The batches whose completion says a topic's held records were routed."""
        return [holder for holder, _ in self._held.values()]

    def route_held(self, topic: str, error: BaseException | None = None) -> list[tuple[ProducerBatch, BaseException]]:
        """Metadata for ``topic`` arrived (or failed with ``error``): move its held records to
        batches. Returns the records that could not be routed, each as a one-record batch and its
        error, for the sender to fail."""
        entry = self._held.pop(topic, None)
        if entry is None:
            return []
        holder, items = entry
        self._buffered -= holder.accounted
        holder.accounted = 0
        n = self._counts.get(topic)
        failures: list[tuple[ProducerBatch, BaseException]] = []
        for value, key, partition, headers, timestamp_ms, size, delivery in items:
            if error is None and n is not None:
                try:
                    delivery.move(*self.append(topic, n, value, key, partition, headers, timestamp_ms, size))
                    continue
                except (UnknownTopicOrPartitionError, RecordTooLargeError) as exc:
                    failure: BaseException = exc
            else:
                failure = error or UnknownTopicOrPartitionError(f"no metadata for {topic!r}")
            alone = ProducerBatch(topic, -1, order=holder.order, created=holder.created, deadline=holder.deadline)
            alone.add_record(value, key, headers, timestamp_ms, 0)
            failures.append((alone, failure))
            delivery.move(alone, 0)
        holder.complete(-1)  # wakes waiters; their deliveries now point at real batches
        return failures

    def _new_batch(self, tp: _TopicPartition, size: int) -> ProducerBatch:
        if size > self._max_record:
            raise RecordTooLargeError(
                f"a record of about {size} bytes exceeds max_request_size={self._max_record + 100}"
            )
        now = trio.current_time()
        batch = ProducerBatch(tp[0], tp[1], order=(next(self._order),), created=now,
                              deadline=now + self._delivery_timeout, capacity=max(self._batch_size, size),
                              codec=self._codec, transactional=self._transactional)
        self._open[tp] = batch
        if len(self._open) == 1 or self._linger == 0:
            self._wake()  # the sender may be sleeping without a linger deadline
        return batch

    def _close_batch(self, tp: _TopicPartition, batch: ProducerBatch) -> None:
        """Move an open batch to its partition's send queue."""
        del self._open[tp]
        if self._sticky_open.get(tp[0]) is batch:
            del self._sticky_open[tp[0]]
        batch.close()
        batch.accounted = batch.buffered
        self._buffered += batch.accounted
        if self._buffered >= self._limit:
            self._sticky_open.clear()  # the fast path must go through the buffer check
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        queue.append(batch)
        self._sticky.batch_closed(tp[0], tp[1], self._counts.get(tp[0], 1))
        self._wake()

    # -- draining (the sender) -------------------------------------------------------------

    def close_lingering(self, now: float, urgent: bool) -> float:
        """Close the open batches older than ``linger_ms`` (all of them if ``urgent``);
        return when the next one will be (inf if none is open)."""
        next_wake = math.inf
        linger = self._linger
        for tp, batch in list(self._open.items()):
            ready_at = batch.created + linger
            if urgent or ready_at <= now:
                self._close_batch(tp, batch)
            elif ready_at < next_wake:
                next_wake = ready_at
        return next_wake

    def pop_expired(self, now: float) -> list[ProducerBatch]:
        """Remove and return the queued batches whose delivery deadline passed (from each queue's head)."""
        expired: list[ProducerBatch] = []
        for queue in self._queues.values():
            while queue and queue[0].deadline <= now:
                expired.append(queue.popleft())
        return expired

    def heads(self) -> Iterator[tuple[_TopicPartition, ProducerBatch]]:
        """(partition, first queued batch) of each partition with queued batches.
        :meth:`pop_head` and :meth:`take_queue` may be called while iterating."""
        for tp, queue in self._queues.items():
            if queue:
                yield tp, queue[0]

    def head(self, tp: _TopicPartition) -> ProducerBatch | None:
        queue = self._queues.get(tp)
        return queue[0] if queue else None

    def queued(self, tp: _TopicPartition) -> list[ProducerBatch]:
        """The batches queued for ``tp``, in order (a copy)."""
        return list(self._queues.get(tp, ()))

    def pop_head(self, tp: _TopicPartition) -> ProducerBatch:
        return self._queues[tp].popleft()

    def take_queue(self, tp: _TopicPartition) -> list[ProducerBatch]:
        """Remove and return every queued batch of ``tp``."""
        queue = self._queues.get(tp)
        if not queue:
            return []
        batches = list(queue)
        queue.clear()
        return batches

    def reenqueue(self, batch: ProducerBatch) -> None:
        """Put a batch to retry (or a piece of a split one) back in its partition's queue, in ``order``."""
        tp = (batch.topic, batch.partition)
        queue = self._queues.setdefault(tp, deque())
        queue.append(batch)
        if len(queue) > 1 and queue[-2].order > batch.order:
            ordered = sorted(queue, key=lambda b: b.order)
            queue.clear()
            queue.extend(ordered)

    def release(self, batch: ProducerBatch) -> None:
        """A batch is done or failed: its bytes leave the buffer."""
        self._buffered -= batch.accounted
        batch.accounted = 0
        if self._buffered < self._max_buffer:
            self._space.set()

    def take_unsent(self) -> list[ProducerBatch]:
        """Remove and return every open and queued batch (held records stay: see :meth:`route_held`)."""
        batches = list(self._open.values())
        self._open.clear()
        self._sticky_open.clear()
        for queue in self._queues.values():
            batches.extend(queue)
            queue.clear()
        return batches

    def pending(self) -> list[ProducerBatch]:
        """Holders of held records, open and queued batches."""
        batches = self.holders()
        batches.extend(self._open.values())
        for queue in self._queues.values():
            batches.extend(queue)
        return batches
