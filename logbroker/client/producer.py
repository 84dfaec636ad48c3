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
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import trio

from logbroker.errors import (
    ClientClosedError,
    KafkaError,
    KafkaTimeoutError,
    TransactionAbortableError,
    TransactionAbortedError,
    TransactionStateError,
    UnknownTopicOrPartitionError,
)

from ._accumulator import RECORD_OVERHEAD, RecordAccumulator
from ._batches import BulkDelivery, Delivery, PartitionRange, SendManyResult
from ._encode import Column, as_bytes, encode_headers
from ._sender import Sender
from ._tasks import close_background, open_background
from ._txn import TransactionManager, TxnState
from .cluster import Cluster
from .config import ProducerConfig
from .types import ConsumerGroupMetadata, RecordMetadata, TopicPartition

__all__ = ["BulkDelivery", "PartitionRange", "Producer", "ProducerStatistics", "SendManyResult"]

log = logging.getLogger("logbroker.client.producer")

_time_ns = time.time_ns
_YIELD_MASK = 0xFF  # send() checkpoints once per 256 calls
_NO_HEADERS = b"\x00"
_BULK_STEP_BYTES = 1 << 20  # send_many appends this much at a time, checking the buffer in between


class ProducerStatistics:
    """A snapshot of the producer's counters (frozen in spirit: a fresh one per call)."""

    __slots__ = ("records_sent", "records_failed", "batches_sent", "requests", "retries",
                 "buffered_bytes", "in_flight_requests", "producer_id")

    def __init__(self, **values: int) -> None:
        for name in self.__slots__:
            setattr(self, name, values.get(name, 0))

    def __repr__(self) -> str:
        return "ProducerStatistics(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__) + ")"


def _bulk_columns(values: Any, keys: Any) -> tuple[Column | None, Column]:
    """``send_many``'s values and keys as columns; TypeError/ValueError for anything else."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2 or values.dtype != np.uint8:
            raise ValueError(f"send_many values as an array must be 2-D uint8 (one row per record), "
                             f"not {values.ndim}-D {values.dtype}")
        value_column = Column.from_rows(values)
    elif isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(values, Sequence):
        raise TypeError(f"send_many values must be a sequence of bytes or a 2-D uint8 array, "
                        f"not {type(values).__name__}")
    else:
        value_column = Column.from_items(values, "value")
    if keys is None:
        return None, value_column
    if isinstance(keys, (str, bytes, bytearray, memoryview, np.ndarray)) or not isinstance(keys, Sequence):
        raise TypeError(f"send_many keys must be a sequence of bytes (or None), not {type(keys).__name__}")
    if len(keys) != value_column.count:
        raise ValueError(f"send_many got {len(keys)} keys for {value_column.count} values")
    return Column.from_items(keys, "key"), value_column


class Producer:
    """An async Kafka producer. Use as ``async with Producer(bootstrap, **options)``.

    Options are the fields of :class:`~logbroker.client.ProducerConfig`
    (or pass ``config=``). ``connector(host, port)`` may return any trio
    Stream (tests use in-memory streams; TLS users an SSL stream).

    Background tasks (the sender, one task per request in flight, one reader
    per connection) live in a nursery opened by ``async with``; leaving it
    normally flushes first, leaving it by an exception fails whatever is
    still buffered with ClientClosedError.

    The producer is three parts, each the one owner of its state: the
    :class:`~logbroker.client._accumulator.RecordAccumulator` (``accumulator``:
    partitions, open batches, buffer memory), the
    :class:`~logbroker.client._sender.Sender` (``sender``: requests, retries,
    sequence numbers, completion) and, with ``transactional_id``, the
    :class:`~logbroker.client._txn.TransactionManager`. The producer itself
    keeps the lifecycle and the metadata loads.
    """

    def __init__(self, bootstrap: str | None = None, *, config: ProducerConfig | None = None,
                 connector: Any = None, **options: Any) -> None:
        if config is None:
            config = ProducerConfig.from_options(bootstrap, options)
        elif options or bootstrap is not None:
            raise TypeError("pass either config= or options, not both")
        self.config = config
        self._connector = connector
        self._cluster: Cluster | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._loading: set[str] = set()
        self._sends = 0
        self._closed = False
        self._txn: TransactionManager | None = None  # made on entry when transactional_id is set
        # composition: the sender drains what the accumulator holds; the accumulator wakes it
        self._accumulator = RecordAccumulator(config, self._wake_sender)
        self._sender = Sender(config, self._accumulator)
        self._sticky_batch = self._accumulator.sticky_batch  # the fast path's lookup (a dict's get)

    def _wake_sender(self) -> None:
        self._sender.wake()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._nursery else "not started"
        acc = self._accumulator
        return (
            f"<Producer {state} bootstrap={self.config.bootstrap!r} buffered={acc.buffered}B "
            f"open_batches={acc.open_count()} queued={acc.queued_count()} "
            f"in_flight={len(self._sender.in_flight())} producer_id={self._sender.producer_id}"
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
            self._sender.start(self._nursery, self._cluster, self._txn)
            self._accumulator.start()
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: Any) -> bool:
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
            self._accumulator.stop()
            self._sender.stop()
            if self._nursery is not None:
                with trio.CancelScope(shield=True):
                    if flushed:  # the sender ends once the last answers are settled
                        with trio.move_on_after(self.config.request_timeout_ms / 1000):
                            await self._sender.wait_stopped()
                    self._abort(ClientClosedError("the producer is closed"))
                    if self._cluster is not None:
                        await self._cluster.aclose()

    def _abort(self, error: BaseException) -> None:
        """Fail every record not yet delivered; stop the background tasks."""
        self._closed = True
        self._sender.abort(error)

    def _check_usable(self) -> None:
        fatal = self._sender.fatal
        if fatal is not None:
            raise fatal
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
        headers: Any = (),
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
        if key is None and partition is None and not headers and timestamp_ms is None \
                and value.__class__ is bytes:
            # The hot path: a keyless record joins its topic's open sticky batch (which
            # exists only while the buffer has room); the batch stamps the time.
            batch = self._sticky_batch(topic)
            if batch is not None and batch.add(value):
                return
        self._enqueue(topic, value, key, partition, headers, timestamp_ms)

    def _enqueue(self, topic: str, value: Any, key: Any, partition: int | None, headers: Any,
                 timestamp_ms: int | None) -> Delivery:
        """Queue one record; return its Delivery. Raises as :meth:`send_nowait`."""
        acc = self._accumulator
        if acc.refusing():
            self._refuse()
        if self._txn is not None:
            self._txn.check_send()
        if value is not None and value.__class__ is not bytes:
            value = as_bytes(value, "value")
        if key is not None and key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        encoded = encode_headers(headers) if headers else _NO_HEADERS
        size = RECORD_OVERHEAD + (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers:
            size += len(encoded) + 10
        n = acc.partitions(topic)
        if n is None:
            delivery = acc.hold(topic, value, key, partition, encoded, timestamp_ms, size)
            self._want_topic(topic)
            return delivery
        batch, index = acc.append(topic, n, value, key, partition, encoded, timestamp_ms, size)
        return Delivery(batch, index, timestamp_ms)

    def _refuse(self) -> None:
        """Why the producer cannot take a record: closed or failed (raises that), else full."""
        self._check_usable()
        raise trio.WouldBlock

    async def send(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        *,
        partition: int | None = None,
        headers: Any = (),
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
        acc = self._accumulator
        if acc.partitions(topic) is not None:  # else wait for metadata first: errors surface here
            try:
                return self._enqueue(topic, value, key, partition, headers, timestamp_ms)
            except trio.WouldBlock:
                pass
        with trio.move_on_after(self.config.max_block_ms / 1000) as scope:
            while True:
                await self._wait_until_ready(topic)
                return self._enqueue(topic, value, key, partition, headers, timestamp_ms)
        assert scope.cancelled_caught
        what = "metadata" if acc.partitions(topic) is None else "buffer space"
        raise KafkaTimeoutError(f"no {what} for {topic!r} within max_block_ms={self.config.max_block_ms}")

    async def _wait_until_ready(self, topic: str) -> None:
        """Return once ``topic``'s metadata is loaded and the buffer is below ``max_buffer_bytes``.

        :raises: as :meth:`_check_usable` and :meth:`_load_topic`.
        """
        acc = self._accumulator
        while True:
            self._check_usable()
            if acc.partitions(topic) is None:
                await self._load_topic(topic)
                continue
            if acc.full():
                self._sender.wake()
                await acc.wait_for_space()
                continue
            return

    async def send_and_wait(self, topic: str, value: bytes | str | None, key: bytes | str | None = None,
                            **kwargs: Any) -> RecordMetadata:
        """``send`` then wait for the delivery; returns its RecordMetadata."""
        return await (await self.send(topic, value, key, **kwargs))

    # -- sending in bulk ------------------------------------------------------------------

    def send_many_nowait(
        self,
        topic: str,
        values: Any,
        *,
        keys: Sequence[bytes | str | None] | None = None,
        partition: int | None = None,
        headers: Any = None,
        timestamp_ms: int | None = None,
    ) -> BulkDelivery:
        """Queue many records in one call without waiting; return one :class:`BulkDelivery`.

        Arguments as for :meth:`send_many`. Unlike :meth:`send_nowait` it
        takes the records only if the topic's metadata is loaded and the
        whole call fits in the free buffer; otherwise nothing is queued.

        :raises trio.WouldBlock: metadata not loaded yet (its load starts) or
            not enough buffer space; ``await send_many(...)`` waits instead.
        :raises: the argument errors of :meth:`send_many`, and as :meth:`send_nowait`.
        """
        key_column, value_column = _bulk_columns(values, keys)
        acc = self._accumulator
        if acc.refusing():
            self._refuse()
        if self._txn is not None:
            self._txn.check_send()
        n = acc.partitions(topic)
        if n is None:
            self._check_usable()
            self._want_topic(topic)
            raise trio.WouldBlock
        encoded, stamp = self._bulk_common(headers, timestamp_ms)
        size = int(acc.record_sizes(key_column, value_column, encoded).sum())
        if not acc.has_room(size):
            raise trio.WouldBlock
        bulk = BulkDelivery(topic, stamp)
        acc.append_many(topic, n, key_column, value_column, partition, encoded, stamp, bulk)
        return bulk

    @staticmethod
    def _bulk_common(headers: Any, timestamp_ms: int | None) -> tuple[bytes, int]:
        encoded = encode_headers(headers) if headers else _NO_HEADERS
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        elif not isinstance(timestamp_ms, int):
            raise TypeError(f"timestamp_ms must be an int, not {type(timestamp_ms).__name__}")
        return encoded, timestamp_ms

    async def send_many(
        self,
        topic: str,
        values: Any,
        *,
        keys: Sequence[bytes | str | None] | None = None,
        partition: int | None = None,
        headers: Any = None,
        timestamp_ms: int | None = None,
    ) -> BulkDelivery:
        """Queue many records in one call; return one :class:`BulkDelivery` for all of them.

        ``values`` is a sequence of bytes (``str`` is UTF-8 encoded, None a
        null value) or a 2-D numpy ``uint8`` array of fixed-size values, one
        row per record. ``keys``, if given, is a sequence of the same length
        (bytes, str or None); ``headers`` (as for :meth:`send`) and
        ``timestamp_ms`` (default: now) apply to every record. Partitioning is
        as for :meth:`send`: ``partition``, else each key hashed, else the
        sticky partition. Records to one partition keep the call's order.

        The records are encoded in bulk (numpy), with no Python call per
        record: much cheaper per record than :meth:`send_nowait` for large
        calls. ``await (await producer.send_many(...))`` waits for delivery and
        returns a :class:`SendManyResult` (the offsets as ranges per partition).

        Waits for metadata and, between chunks of about 1 MiB, for buffer space
        (at most ``max_block_ms`` each). Cancelling it may leave a prefix of the
        records queued (the returned handle is then lost; ``flush`` still
        reports failures).

        :raises TypeError: ``values`` or ``keys`` of another type (or an item of one).
        :raises ValueError: an array that is not 2-D uint8, or keys and values of different lengths.
        :raises: as :meth:`send`.
        """
        key_column, value_column = _bulk_columns(values, keys)
        encoded, stamp = self._bulk_common(headers, timestamp_ms)
        bulk = BulkDelivery(topic, stamp)
        count = value_column.count
        acc = self._accumulator
        with trio.move_on_after(self.config.max_block_ms / 1000) as scope:
            await self._wait_until_ready(topic)
        if scope.cancelled_caught:
            what = "metadata" if acc.partitions(topic) is None else "buffer space"
            raise KafkaTimeoutError(f"no {what} for {topic!r} within max_block_ms={self.config.max_block_ms}")
        if self._txn is not None:
            self._txn.check_send()
        if not count:
            self._check_usable()
            return bulk
        total = int(acc.record_sizes(key_column, value_column, encoded).sum())  # raises RecordTooLargeError
        n = acc.partitions(topic)
        if partition is not None and n is not None and not 0 <= partition < n:
            raise UnknownTopicOrPartitionError(f"{topic!r} has {n} partitions, not {partition + 1}")
        step = max(1, _BULK_STEP_BYTES // max(1, total // count))
        done = 0
        while done < count:
            stop = min(count, done + step)
            n = acc.partitions(topic)
            assert n is not None
            if acc.refusing():
                self._check_usable()
            acc.append_many(topic, n, None if key_column is None else key_column.slice(done, stop),
                            value_column if (done, stop) == (0, count) else value_column.slice(done, stop),
                            partition, encoded, stamp, bulk)
            done = stop
            if done < count:
                with trio.move_on_after(self.config.max_block_ms / 1000) as scope:
                    await trio.lowlevel.checkpoint()  # let the sender work between chunks
                    await self._wait_until_ready(topic)
                if scope.cancelled_caught:
                    raise KafkaTimeoutError(f"no buffer space for {topic!r} within "
                                            f"max_block_ms={self.config.max_block_ms}")
        return bulk

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
            self._sender.use_producer_id(producer_id, epoch)
            txn.state = TxnState.READY

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
        sender = self._sender
        async with txn.lock:
            txn.require("send_offsets_to_transaction", TxnState.IN_TRANSACTION)
            try:
                await txn.add_offsets(sender.producer_id, sender.producer_epoch, group_metadata.group_id)
                await txn.commit_offsets(sender.producer_id, sender.producer_epoch, normalized, group_metadata)
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
        sender = self._sender
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
                    await txn.end(sender.producer_id, sender.producer_epoch, commit=True)
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
        sender = self._sender
        async with txn.lock:
            txn.require("abort_transaction", TxnState.IN_TRANSACTION, TxnState.ABORTABLE, TxnState.ABORTING,
                        TxnState.COMMITTING)
            txn.state = TxnState.ABORTING
            error = TransactionAbortedError("the transaction was aborted before this record was sent")
            sender.fail_unsent(error)
            sender.drop_failures(error)
            await self._settle_transaction_records()
            await txn.wait_added()
            txn.check_fatal()
            if txn.partitions or txn.offsets_added:
                await txn.end(sender.producer_id, sender.producer_epoch, commit=False)
            if txn.bump_epoch:  # a batch the broker never took used up sequence numbers
                producer_id, epoch = await txn.init_producer_id(sender.producer_id, sender.producer_epoch)
                sender.use_producer_id(producer_id, epoch)
            txn.completed()

    async def _settle_transaction_records(self) -> list[BaseException]:
        """Send what is buffered and wait for every batch; return the failures (now seen)."""
        await self._wait_pending()
        failed = self._sender.take_failures()
        errors = [b.error for b in failed if b.error is not None and not isinstance(b.error, TransactionAbortedError)]
        for batch in failed:
            batch.observed = True
        return errors

    async def _wait_pending(self) -> None:
        """Send every buffered record now; return once each is delivered or failed."""
        acc = self._accumulator
        with self._sender.flushing():
            for holder in acc.holders():
                await holder.wait()  # records held for metadata move to real batches
            for batch in acc.pending() + self._sender.in_flight():
                await batch.wait()

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
        await self._wait_pending()
        unseen = [b for b in self._sender.take_failures() if not b.observed]
        for batch in unseen:
            batch.observed = True
        if unseen:
            error = unseen[0].error
            assert error is not None
            raise error

    async def partitions_for(self, topic: str) -> list[int]:
        """The partition numbers of ``topic``, loading its metadata if needed.

        :raises UnknownTopicOrPartitionError: the topic does not exist in time.
        """
        self._check_usable()
        n = self._accumulator.partitions(topic)
        if n is None:
            await self._load_topic(topic)
            n = self._accumulator.partitions(topic)
            assert n is not None
        return list(range(n))

    def statistics(self) -> ProducerStatistics:
        sender = self._sender
        return ProducerStatistics(
            **sender.counters(),
            buffered_bytes=self._accumulator.buffered,
            in_flight_requests=sender.requests_in_flight(),
            producer_id=sender.producer_id,
        )

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
        self._accumulator.set_partitions(topic, len(info.partitions))
        self._route_held(topic)

    def _route_held(self, topic: str, error: BaseException | None = None) -> None:
        for alone, failure in self._accumulator.route_held(topic, error):
            self._sender.fail_unbatched(alone, failure)

