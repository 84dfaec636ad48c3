"""The async producer: partition, batch, send, retry; idempotent by default.

Usage::

    async with Producer("localhost:9092", linger_ms=5) as producer:
        delivery = await producer.send("events", b"value", key=b"k")
        metadata = await delivery          # RecordMetadata(topic, partition, offset, timestamp)

How it works:

* ``send`` appends the record to the open batch of its partition (key
  hashed by the configured partitioner, keyless records on a sticky
  partition), waiting only for buffer space or topic metadata, and returns a
  :class:`~logbroker.client.Delivery`: a three-slot handle, no future per
  record; the batch carries the one event and the outcome. ``send_nowait``
  is the fire-and-forget path: no handle at all, failures come out of the
  next ``flush()``.
* One sender task closes batches that are full or older than ``linger_ms``,
  groups them by leader and sends one Produce request per leader with at
  most one batch per partition, keeping up to ``max_in_flight`` requests
  in flight per broker. Each request runs in its own short task.
* With idempotence (the default) the sender first asks InitProducerId; each
  batch then carries the producer id and a per-partition sequence number,
  so a retried batch is written once. Retriable errors (a new leader, a
  timeout, a lost connection) re-queue the batch in sequence order after a
  backoff; NOT_LEADER_OR_FOLLOWER and UNKNOWN_TOPIC_OR_PARTITION refresh the
  metadata first. A batch that cannot be delivered within
  ``delivery_timeout_ms`` fails with KafkaTimeoutError.
* ``flush()`` sends everything now and waits for it; ``close()`` (and
  leaving ``async with`` normally) flushes, then stops the tasks.
* With ``transactional_id`` the producer is transactional (KIP-98):
  ``init_transactions()`` gets the producer id from the transaction
  coordinator (fencing older producers of the id), records are sent only
  between ``begin_transaction()`` and ``commit_transaction()`` or
  ``abort_transaction()``, each partition joins the transaction
  (AddPartitionsToTxn) before its first batch is sent, and
  ``send_offsets_to_transaction()`` commits a consumer's offsets with the
  transaction. A :class:`~logbroker.client._txn.TransactionManager` owns that
  state; see it for the states and errors.

Transactions::

    async with Producer("localhost:9092", transactional_id="billing-1") as producer:
        await producer.init_transactions()
        await producer.begin_transaction()
        await producer.send("invoices", b"...")
        await producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        await producer.commit_transaction()
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import trio

from logbroker.errors import (
    ClientClosedError,
    KafkaError,
    KafkaTimeoutError,
    RecordTooLargeError,
    TransactionAbortableError,
    TransactionAbortedError,
    TransactionStateError,
    UnknownTopicOrPartitionError,
)
from logbroker.records import BatchBuilder

from ._batches import Delivery, ProducerBatch
from ._sender import Sender
from ._tasks import close_background, open_background
from ._txn import TransactionManager, TxnState
from .cluster import Cluster
from .config import ProducerConfig
from .partitioner import PARTITIONERS, StickyPartitions, hashes_empty_key
from .types import ConsumerGroupMetadata, RecordMetadata, TopicPartition

__all__ = ["Producer", "ProducerStatistics"]

log = logging.getLogger("logbroker.client.producer")

_time_ns = time.time_ns
_YIELD_MASK = 0xFF  # send() checkpoints once per 256 calls
_RECORD_OVERHEAD = 24  # an upper bound of a small record's varints and attributes


def _as_bytes(obj: Any, what: str) -> bytes:
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"record {what} must be bytes, str or None, not {type(obj).__name__}")


class ProducerStatistics:
    """A snapshot of the producer's counters (frozen in spirit: a fresh one per call)."""

    __slots__ = ("records_sent", "records_failed", "batches_sent", "requests", "retries",
                 "buffered_bytes", "in_flight_requests", "producer_id")

    def __init__(self, **values: int) -> None:
        for name in self.__slots__:
            setattr(self, name, values.get(name, 0))

    def __repr__(self) -> str:
        return "ProducerStatistics(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__) + ")"


class Producer(Sender):
    """An async Kafka producer. Use as ``async with Producer(bootstrap, **options)``.

    Options are the fields of :class:`~logbroker.client.ProducerConfig`
    (or pass ``config=``). ``connector(host, port)`` may return any trio
    Stream (tests use in-memory streams; TLS users an SSL stream).

    Background tasks (the sender, one task per request in flight, one reader
    per connection) live in a nursery opened by ``async with``; leaving it
    normally flushes first, leaving it by an exception fails whatever is
    still buffered with ClientClosedError.
    """

    def __init__(self, bootstrap: str | None = None, *, config: ProducerConfig | None = None,
                 connector=None, **options: Any) -> None:
        if config is None:
            config = ProducerConfig.from_options(bootstrap, options)
        elif options or bootstrap is not None:
            raise TypeError("pass either config= or options, not both")
        self.config = config
        self._connector = connector
        self._codec = config.codec
        self._hash = PARTITIONERS[config.partitioner]
        self._hash_empty = hashes_empty_key(config.partitioner)
        self._sticky = StickyPartitions()
        self._batch_size = config.batch_size
        self._linger = config.linger_ms / 1000
        self._max_buffer = config.max_buffer_bytes
        self._idempotent = config.idempotence
        # state
        self._cluster: Cluster | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._counts: dict[str, int] = {}  # topic -> partitions, from metadata
        self._loading: set[str] = set()
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._sticky_open: dict[str, ProducerBatch] = {}  # topic -> open batch of its sticky partition
        self._held: dict[str, tuple[ProducerBatch, list]] = {}  # records waiting for metadata
        self._failed: list[ProducerBatch] = []  # failed batches not yet reported by flush()
        self._queues: dict[tuple[str, int], deque[ProducerBatch]] = {}
        self._in_flight: dict[tuple[str, int], int] = {}
        self._in_flight_batches: set[ProducerBatch] = set()
        self._node_in_flight: dict[int, int] = {}  # requests planned and not answered, per node
        self._writers: dict[int, trio.MemorySendChannel] = {}
        self._order = itertools.count()
        self._buffered = 0
        self._space = trio.Event()
        self._wake = trio.Event()
        self._flushing = 0
        self._need_metadata = False
        self._refreshing = False
        self._producer_id = -1
        self._producer_epoch = -1
        self._next_seq: dict[tuple[str, int], int] = {}  # sequence of the next batch sent
        self._guess_seq: dict[tuple[str, int], int] = {}  # sequence of the next batch opened
        self._pid_ready = trio.Event()
        self._reset_pid = False
        self._fatal: BaseException | None = None
        self._sends = 0
        self._closed = False
        self._limit = -1  # max_buffer_bytes while usable; -1 (refuse everything) before start and after close
        self._stopping = False
        self._sender_done = trio.Event()
        self._stats = {"records_sent": 0, "records_failed": 0, "batches_sent": 0, "requests": 0, "retries": 0}
        self._txn: TransactionManager | None = None  # made on entry when transactional_id is set
        if not self._idempotent:
            self._pid_ready.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._nursery else "not started"
        return (
            f"<Producer {state} bootstrap={self.config.bootstrap!r} buffered={self._buffered}B "
            f"open_batches={len(self._open)} queued={sum(map(len, self._queues.values()))} "
            f"in_flight={len(self._in_flight_batches)} producer_id={self._producer_id}"
            + (f" transaction={self._txn.state.value}>" if self._txn is not None else ">")
        )

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        if self._stack is not None:
            raise RuntimeError("a Producer can be entered only once")
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        try:
            self._nursery = await open_background(self._stack)
            self._cluster = Cluster(self.config, self._nursery, connector=self._connector,
                                    allow_auto_create=self.config.allow_auto_create_topics)
            if self.config.transactional_id is not None:
                self._txn = TransactionManager(self.config, self._cluster)
            self._nursery.start_soon(self._sender)
            self._limit = self._max_buffer
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is None or isinstance(exc, Exception):
                await self.close()
            else:
                self._abort(ClientClosedError("the producer was cancelled before delivering"))
        finally:
            assert self._stack is not None
            await close_background(self._stack, exc)
        return False

    async def close(self) -> None:
        """Flush, then stop the sender and close connections. Idempotent.

        Cancelling it fails the records not yet delivered with ClientClosedError.

        :raises KafkaError: as :meth:`flush`.
        """
        if self._closed:
            return
        flushed = False
        try:
            txn = self._txn
            if txn is not None and txn.state in (TxnState.IN_TRANSACTION, TxnState.ABORTABLE):
                try:  # as the Java producer does: an open transaction is aborted, not left to time out
                    await self.abort_transaction()
                except (KafkaError, ClientClosedError) as exc:
                    log.warning("aborting the open transaction on close failed: %s", exc)
            await self.flush()
            flushed = True
        finally:
            self._closed = True
            self._limit = -1
            self._stopping = True
            self._wake.set()
            if self._nursery is not None:
                with trio.CancelScope(shield=True):
                    if flushed:  # the sender ends once the last answers are settled
                        with trio.move_on_after(self.config.request_timeout_ms / 1000):
                            await self._sender_done.wait()
                    self._abort(ClientClosedError("the producer is closed"))
                    if self._cluster is not None:
                        await self._cluster.aclose()

    def _abort(self, error: BaseException) -> None:
        """Fail every record not yet delivered; stop the background tasks."""
        self._closed = True
        self._limit = -1
        self._stopping = True
        self._fail_unsent(error)
        for batch in list(self._in_flight_batches):
            self._finish(batch, error)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise ClientClosedError("the producer is closed")
        if self._nursery is None:
            raise RuntimeError("use the producer inside 'async with Producer(...)'")

    # -- sending ------------------------------------------------------------------

    def send_nowait(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        *,
        partition: int | None = None,
        headers=(),
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record without waiting, fire and forget (the fast path).

        Arguments as for :meth:`send`. Nothing is returned: a failure is
        counted in :meth:`statistics` and raised by the next :meth:`flush`
        (and so by :meth:`close`). A record for a topic whose metadata is not
        loaded yet is held until it is.

        :raises trio.WouldBlock: the buffer is full (``max_buffer_bytes``);
            ``await send(...)`` waits for room instead.
        :raises RecordTooLargeError: the record alone exceeds ``max_request_size``.
        :raises UnknownTopicOrPartitionError: ``partition`` is out of range.
        :raises ClientClosedError: the producer is closed.
        :raises TransactionStateError: a transactional producer outside a transaction.
        """
        if self._buffered >= self._limit:
            self._refuse()
        if key is None and partition is None and not headers and timestamp_ms is None \
                and value.__class__ is bytes:
            # The hot path: a keyless record joins its topic's open sticky batch;
            # the batch builder stamps the time.
            batch = self._sticky_open.get(topic)
            if batch is not None:
                room = batch.room - _RECORD_OVERHEAD - len(value)  # type: ignore[arg-type]
                if room >= 0:
                    batch.append(value)
                    batch.count += 1
                    batch.room = room
                    return
        self._enqueue(topic, value, key, partition, headers, timestamp_ms)

    def _enqueue(self, topic: str, value, key, partition: int | None, headers,
                 timestamp_ms: int | None) -> Delivery:
        """Queue one record; return its Delivery. Raises as :meth:`send_nowait`."""
        if self._buffered >= self._limit:
            self._refuse()
        if self._txn is not None:
            self._txn.check_send()
        if value is not None and value.__class__ is not bytes:
            value = _as_bytes(value, "value")
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        if key is None and partition is None and not headers:
            batch = self._sticky_open.get(topic)
            if batch is not None:
                room = batch.room - (_RECORD_OVERHEAD if value is None else _RECORD_OVERHEAD + len(value))
                if room >= 0:
                    batch.append(value, None, (), timestamp_ms)
                    index = batch.count
                    batch.count = index + 1
                    batch.room = room
                    return Delivery(batch, index, timestamp_ms)
        elif key is not None and key.__class__ is not bytes:
            key = _as_bytes(key, "key")
        size = _RECORD_OVERHEAD + (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers:
            size += sum(len(h[0]) + (len(h[1]) if h[1] is not None else 0) + 10 for h in headers)
        n = self._counts.get(topic)
        if n is None:
            return self._hold(topic, value, key, partition, headers, timestamp_ms, size)
        batch, index = self._append(topic, n, value, key, partition, headers, timestamp_ms, size)
        return Delivery(batch, index, timestamp_ms)

    def _refuse(self) -> None:
        """Why send_nowait cannot take a record: closed or failed (raises that), else full."""
        self._check_usable()
        raise trio.WouldBlock

    def _append(self, topic: str, n: int, value, key, partition, headers, timestamp_ms: int,
                size: int) -> tuple[ProducerBatch, int]:
        """Add a record to its partition's open batch; return the batch and the record's index."""
        sticky = False
        if partition is None:
            if key is None or (not key and not self._hash_empty):
                partition = self._sticky.get(topic, n)
                sticky = True
            else:
                partition = self._hash(key, n)
        elif not 0 <= partition < n:
            raise UnknownTopicOrPartitionError(f"{topic!r} has {n} partitions, not {partition + 1}")
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is not None and batch.room < size:
            self._close_batch(tp, batch)
            if sticky:  # closing moved the sticky partition
                partition = self._sticky.get(topic, n)
                tp = (topic, partition)
            batch = self._open.get(tp)
            if batch is not None and batch.room < size:
                self._close_batch(tp, batch)
                batch = None
        if batch is None:
            batch = self._new_batch(tp, size)
        if sticky:
            self._sticky_open[topic] = batch
        batch.append(value, key, headers, timestamp_ms)  # type: ignore[misc]
        index = batch.count
        batch.count = index + 1
        batch.room -= size
        return batch, index

    def _hold(self, topic: str, value, key, partition, headers, timestamp_ms: int, size: int) -> Delivery:
        """Keep a record until ``topic``'s metadata arrives (see :meth:`_route_held`)."""
        entry = self._held.get(topic)
        if entry is None:
            now = trio.current_time()
            holder = ProducerBatch(topic, -1, None, order=next(self._order), created=now,  # type: ignore[arg-type]
                                   deadline=now + self.config.max_block_ms / 1000,
                                   producer_id=-1, producer_epoch=-1, base_sequence=-1)
            entry = self._held[topic] = (holder, [])
        holder, items = entry
        delivery = Delivery(holder, len(items), timestamp_ms)
        items.append((value, key, partition, headers, timestamp_ms, size, delivery))
        holder.accounted += size
        self._buffered += size
        self._want_topic(topic)
        return delivery

    def _route_held(self, topic: str, error: BaseException | None = None) -> None:
        """Metadata for ``topic`` arrived (or failed with ``error``): move its held records."""
        entry = self._held.pop(topic, None)
        if entry is None:
            return
        holder, items = entry
        self._buffered -= holder.accounted
        holder.accounted = 0
        n = self._counts.get(topic)
        for value, key, partition, headers, timestamp_ms, size, delivery in items:
            if error is None and n is not None:
                try:
                    delivery._batch, delivery._index = self._append(topic, n, value, key, partition, headers,
                                                                    timestamp_ms, size)
                    continue
                except (UnknownTopicOrPartitionError, RecordTooLargeError) as exc:
                    failure: BaseException = exc
            else:
                failure = error or UnknownTopicOrPartitionError(f"no metadata for {topic!r}")
            alone = ProducerBatch(topic, -1, None, order=holder.order, created=holder.created,  # type: ignore[arg-type]
                                  deadline=holder.deadline, producer_id=-1, producer_epoch=-1, base_sequence=-1)
            alone.fail(failure)
            self._stats["records_failed"] += 1
            self._failed.append(alone)
            if self._txn is not None and isinstance(failure, KafkaError) \
                    and not isinstance(failure, TransactionAbortedError):
                self._txn.record_failure(failure, sent=False)
            delivery._batch, delivery._index = alone, 0
        holder.complete(-1)  # wakes waiters; their deliveries now point at real batches

    async def send(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        *,
        partition: int | None = None,
        headers=(),
        timestamp_ms: int | None = None,
    ) -> Delivery:
        """Queue one record, waiting for buffer space and topic metadata; return its :class:`Delivery`.

        ``headers`` is a sequence of ``(str, bytes | None)``; ``str`` keys and
        values are encoded as UTF-8; ``timestamp_ms`` defaults to now. Without
        ``partition`` a key is hashed by the partitioner and a keyless record
        goes to the topic's sticky partition. Waits at most ``max_block_ms``. ``await (await producer.send(...))``
        waits for the delivery too. Cancelling it leaves the record unsent.
        It yields to trio every 256 calls even when it need not wait, so a
        loop of sends lets the sender work.

        :raises KafkaTimeoutError: no room or no metadata within ``max_block_ms``.
        :raises UnknownTopicOrPartitionError: the topic does not exist (and
            cannot be auto-created) or ``partition`` is out of range.
        :raises RecordTooLargeError: the record alone exceeds ``max_request_size``.
        :raises ClientClosedError: the producer is closed.
        :raises TransactionStateError: a transactional producer outside a transaction.
        :raises TransactionAbortableError: the transaction must be aborted first.
        :raises ProducerFencedError: a newer producer took the transactional id.
        """
        self._sends += 1
        if not self._sends & _YIELD_MASK:  # let the sender (and everyone else) run now and then
            await trio.lowlevel.checkpoint()
        if topic in self._counts:  # else wait for metadata first: errors surface here
            try:
                return self._enqueue(topic, value, key, partition, headers, timestamp_ms)
            except trio.WouldBlock:
                pass
        with trio.move_on_after(self.config.max_block_ms / 1000) as scope:
            while True:
                self._check_usable()
                if topic not in self._counts:
                    await self._load_topic(topic)
                    continue
                if self._buffered >= self._max_buffer:
                    self._wake.set()
                    if self._space.is_set():
                        self._space = trio.Event()
                    await self._space.wait()
                    continue
                return self._enqueue(topic, value, key, partition, headers, timestamp_ms)
        assert scope.cancelled_caught
        what = "metadata" if topic not in self._counts else "buffer space"
        raise KafkaTimeoutError(f"no {what} for {topic!r} within max_block_ms={self.config.max_block_ms}")

    async def send_and_wait(self, topic: str, value: bytes | str | None, key: bytes | str | None = None,
                            **kwargs: Any) -> RecordMetadata:
        """``send`` then wait for the delivery; returns its RecordMetadata."""
        return await (await self.send(topic, value, key, **kwargs))

    # -- transactions ------------------------------------------------------------------

    def _transaction_manager(self) -> TransactionManager:
        self._check_usable()
        if self._txn is None:
            raise TransactionStateError("transactions need a producer with transactional_id")
        return self._txn

    async def init_transactions(self) -> None:
        """Get the producer id and epoch of ``transactional_id`` from its transaction coordinator.

        Any earlier producer of the id is fenced, and a transaction it left open
        is aborted (or completed) by the coordinator before this returns.
        Retries CONCURRENT_TRANSACTIONS and coordinator moves for at most
        ``max_block_ms``. Called by :meth:`begin_transaction` if not called
        before; a second call does nothing.

        :raises ProducerFencedError: a newer producer took the id meanwhile.
        :raises TransactionalIdAuthorizationError: the id is not ours to use.
        :raises KafkaTimeoutError: the coordinator did not answer in time (call again).
        """
        txn = self._transaction_manager()
        async with txn.lock:
            if txn.state is not TxnState.UNINITIALIZED:
                txn.check_fatal()
                return
            producer_id, epoch = await txn.init_producer_id()
            self._use_producer_id(producer_id, epoch)
            txn.state = TxnState.READY

    def _use_producer_id(self, producer_id: int, epoch: int) -> None:
        self._producer_id = producer_id
        self._producer_epoch = epoch
        self._next_seq.clear()
        self._guess_seq.clear()
        self._pid_ready.set()
        self._wake.set()

    async def begin_transaction(self) -> None:
        """Start a transaction: records sent from now on commit or abort together.

        :raises TransactionStateError: a transaction is already open.
        :raises TransactionAbortableError: the last one must be aborted first.
        :raises ProducerFencedError: a newer producer took the transactional id.
        """
        txn = self._transaction_manager()
        if txn.state is TxnState.UNINITIALIZED:
            await self.init_transactions()
        txn.begin()

    async def send_offsets_to_transaction(
        self,
        offsets: Mapping[TopicPartition | tuple[str, int], int],
        group_metadata: ConsumerGroupMetadata | str,
    ) -> None:
        """Commit a consumer group's ``offsets`` (the next offset to read, per partition)
        with the current transaction: they become the group's committed offsets if
        and only if the transaction commits.

        ``group_metadata`` is ``consumer.group_metadata()`` (KIP-447: the group
        coordinator refuses the commit of a member that lost its partitions);
        a bare group id commits without that check.

        :raises CommitFailedError: the consumer is no longer a member of that
            generation; the transaction is now abortable.
        :raises TransactionAbortableError: the transaction must be aborted.
        :raises ProducerFencedError: a newer producer took the transactional id.
        """
        txn = self._transaction_manager()
        if isinstance(group_metadata, str):
            group_metadata = ConsumerGroupMetadata(group_metadata)
        normalized = {TopicPartition(*tp): offset for tp, offset in offsets.items()}
        async with txn.lock:
            txn.require("send_offsets_to_transaction", TxnState.IN_TRANSACTION)
            try:
                await txn.add_offsets(self._producer_id, self._producer_epoch, group_metadata.group_id)
                await txn.commit_offsets(self._producer_id, self._producer_epoch, normalized, group_metadata)
            except KafkaError as exc:
                if not isinstance(exc, KafkaTimeoutError):
                    txn.record_failure(exc, sent=False)
                raise

    async def commit_transaction(self) -> None:
        """Send every record of the transaction, then commit it (EndTxn): consumers
        reading ``read_committed`` see its records, and offsets sent with it become
        the group's. Returns once the coordinator wrote the commit markers.

        After KafkaTimeoutError the outcome is not known yet: call it again.

        :raises TransactionAbortableError: a record could not be delivered (the
            error is its ``__cause__``), or the coordinator aborted it; call
            :meth:`abort_transaction`, then go on.
        :raises ProducerFencedError: a newer producer took the transactional id.
        :raises TransactionStateError: no transaction is open.
        """
        txn = self._transaction_manager()
        async with txn.lock:
            txn.require("commit_transaction", TxnState.IN_TRANSACTION, TxnState.COMMITTING)
            txn.state = TxnState.COMMITTING
            failures = await self._settle_transaction_records()
            await txn.wait_added()
            txn.check_fatal()
            if txn.state is TxnState.ABORTABLE or failures:
                txn.state = TxnState.ABORTABLE
                cause = txn.error or failures[0]
                raise TransactionAbortableError(
                    f"the transaction cannot commit: {cause}; abort_transaction() and try again",
                    code=getattr(cause, "code", None)) from cause
            if txn.partitions or txn.offsets_added:
                try:
                    await txn.end(self._producer_id, self._producer_epoch, commit=True)
                except TransactionAbortableError:
                    txn.state = TxnState.ABORTABLE
                    raise
            txn.completed()

    async def abort_transaction(self) -> None:
        """Abort the current transaction: records not sent yet fail with
        TransactionAbortedError, those sent are hidden from ``read_committed``
        consumers by the abort markers, and offsets sent with it are dropped.
        The producer is then ready for :meth:`begin_transaction`.

        :raises ProducerFencedError: a newer producer took the transactional id.
        :raises TransactionStateError: no transaction is open.
        :raises KafkaTimeoutError: the coordinator did not answer in time (call again).
        """
        txn = self._transaction_manager()
        async with txn.lock:
            txn.require("abort_transaction", TxnState.IN_TRANSACTION, TxnState.ABORTABLE, TxnState.ABORTING,
                        TxnState.COMMITTING)
            txn.state = TxnState.ABORTING
            self._drop_unsent(TransactionAbortedError("the transaction was aborted before this record was sent"))
            await self._settle_transaction_records()
            await txn.wait_added()
            txn.check_fatal()
            if txn.partitions or txn.offsets_added:
                await txn.end(self._producer_id, self._producer_epoch, commit=False)
            if txn.bump_epoch:  # a batch the broker never took used up sequence numbers
                producer_id, epoch = await txn.init_producer_id(self._producer_id, self._producer_epoch)
                self._use_producer_id(producer_id, epoch)
            else:
                self._guess_seq = dict(self._next_seq)
            txn.completed()

    def _fail_unsent(self, error: BaseException) -> None:
        """Fail the records not sent yet: held for metadata, in open batches, queued."""
        for topic in list(self._held):
            self._route_held(topic, error)
        for batch in list(self._open.values()):
            self._finish(batch, error)
        self._open.clear()
        self._sticky_open.clear()
        for queue in self._queues.values():
            for batch in queue:
                self._finish(batch, error)
            queue.clear()

    def _drop_unsent(self, error: BaseException) -> None:
        """Fail the records not sent yet (held, open, queued) with ``error``; they count as seen."""
        self._fail_unsent(error)
        for batch in self._failed:
            if batch.error is error:
                batch.observed = True
        self._failed = [b for b in self._failed if b.error is not error]

    async def _settle_transaction_records(self) -> list[BaseException]:
        """Send what is buffered and wait for every batch; return the failures (now seen)."""
        self._flushing += 1
        self._wake.set()
        try:
            for holder in [holder for holder, _ in self._held.values()]:
                await holder.wait()
            for batch in self._pending_batches():
                await batch.wait()
        finally:
            self._flushing -= 1
        failed, self._failed = self._failed, []
        errors = [b.error for b in failed if b.error is not None and not isinstance(b.error, TransactionAbortedError)]
        for batch in failed:
            batch.observed = True
        return errors  # type: ignore[return-value]

    async def flush(self) -> None:
        """Send every buffered record now and wait until each is delivered or failed.

        Bounded by ``delivery_timeout_ms`` per batch. Cancelling it stops the
        waiting, not the sending.

        :raises KafkaError: the first failure among records that failed (since
            the last flush) and whose Delivery nobody looked at: a
            fire-and-forget send does not fail silently.
        """
        if self._nursery is None:
            return
        self._flushing += 1
        self._wake.set()
        try:
            for holder in [holder for holder, _ in self._held.values()]:
                await holder.wait()  # records held for metadata move to real batches
            batches = self._pending_batches()
            for batch in batches:
                await batch.wait()
        finally:
            self._flushing -= 1
        failed, self._failed = self._failed, []
        unseen = [b for b in failed if not b.observed]
        for batch in unseen:
            batch.observed = True
        if unseen:
            raise unseen[0].error  # type: ignore[misc]

    def _pending_batches(self) -> list[ProducerBatch]:
        batches = [holder for holder, _ in self._held.values()]
        batches.extend(self._open.values())
        for queue in self._queues.values():
            batches.extend(queue)
        batches.extend(self._in_flight_batches)
        return batches

    async def partitions_for(self, topic: str) -> list[int]:
        """The partition numbers of ``topic``, loading its metadata if needed.

        :raises UnknownTopicOrPartitionError: the topic does not exist in time.
        """
        self._check_usable()
        if topic not in self._counts:
            await self._load_topic(topic)
        return list(range(self._counts[topic]))

    def statistics(self) -> ProducerStatistics:
        return ProducerStatistics(
            **self._stats,
            buffered_bytes=self._buffered,
            in_flight_requests=sum(self._node_in_flight.values()),
            producer_id=self._producer_id,
        )

    # -- batches --------------------------------------------------------------------

    def _new_batch(self, tp: tuple[str, int], size: int) -> ProducerBatch:
        if size > self.config.max_request_size - 100:
            raise RecordTooLargeError(
                f"a record of about {size} bytes exceeds max_request_size={self.config.max_request_size}"
            )
        now = trio.current_time()
        seq = self._guess_seq.get(tp, 0) if self._producer_id >= 0 else -1
        builder = BatchBuilder(compression=self._codec, producer_id=self._producer_id,
                               producer_epoch=self._producer_epoch, base_sequence=seq,
                               transactional=self._txn is not None)
        batch = ProducerBatch(
            tp[0], tp[1], builder, order=next(self._order), created=now,
            deadline=now + self.config.delivery_timeout_ms / 1000, capacity=max(self._batch_size, size),
            producer_id=self._producer_id, producer_epoch=self._producer_epoch, base_sequence=seq,
        )
        self._open[tp] = batch
        if len(self._open) == 1 or self._linger == 0:
            self._wake.set()  # the sender may be sleeping without a linger deadline
        return batch

    def _close_batch(self, tp: tuple[str, int], batch: ProducerBatch) -> None:
        """Move an open batch to its partition's send queue."""
        del self._open[tp]
        if self._sticky_open.get(tp[0]) is batch:
            del self._sticky_open[tp[0]]
        batch.close()
        batch.accounted = batch.buffered
        self._buffered += batch.accounted
        if batch.base_sequence >= 0:
            self._guess_seq[tp] = (batch.base_sequence + batch.count) & 0x7FFFFFFF
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._queues[tp] = deque()
        queue.append(batch)
        self._sticky.batch_closed(tp[0], tp[1], self._counts.get(tp[0], 1))
        self._wake.set()

    def _finish(self, batch: ProducerBatch, error: BaseException | None = None,
                base_offset: int = -1, log_append_time: int = -1) -> None:
        if batch.done:
            return
        if error is None:
            batch.complete(base_offset, log_append_time)
            self._stats["records_sent"] += batch.count
        else:
            batch.fail(error)
            self._stats["records_failed"] += batch.count
            self._failed.append(batch)
            if self._txn is not None and not isinstance(error, TransactionAbortedError):
                self._txn.record_failure(error, sent=batch.attempts > 0 or batch in self._in_flight_batches)
        self._buffered -= batch.accounted
        batch.accounted = 0
        if self._buffered < self._max_buffer:
            self._space.set()

    # -- metadata ---------------------------------------------------------------------

    def _want_topic(self, topic: str) -> None:
        if topic not in self._loading and self._nursery is not None:
            self._loading.add(topic)
            self._nursery.start_soon(self._load_topic_quietly, topic)

    async def _load_topic_quietly(self, topic: str) -> None:
        with contextlib.suppress(KafkaError, ClientClosedError):
            await self._load_topic(topic)

    async def _load_topic(self, topic: str) -> None:
        assert self._cluster is not None
        try:
            info = await self._cluster.topic(topic)
        except (KafkaError, ClientClosedError) as exc:
            self._route_held(topic, exc)
            raise
        finally:
            self._loading.discard(topic)
        self._counts[topic] = len(info.partitions)
        self._route_held(topic)

    async def _refresh_metadata(self) -> None:
        assert self._cluster is not None
        try:
            meta = await self._cluster.refresh(self._counts)
            for topic in self._counts:
                info = meta.topics.get(topic)
                if info is not None and not info.error_code and info.partitions:
                    self._counts[topic] = len(info.partitions)
        except (KafkaError, ClientClosedError) as exc:
            log.debug("metadata refresh failed: %s", exc)
        finally:
            self._refreshing = False
            self._wake.set()
