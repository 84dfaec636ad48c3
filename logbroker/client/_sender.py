"""The producer's sender: InitProducerId, draining the accumulator into Produce requests,
settling answers, retries in sequence order, delivery completion.

:class:`Sender` owns what happens to a batch once it leaves the
:class:`~logbroker.client._accumulator.RecordAccumulator`: the producer id,
epoch and per-partition sequence numbers (idempotence), the requests in
flight per broker and per partition, retries, the completion of batches
(:meth:`Sender.finish`), the producer's counters and the failures not yet
reported by ``flush()``. One task (:meth:`Sender.run`) closes lingering
batches and plans requests per leader; one writer task per broker sends
that broker's requests in plan order (a partition's batches must reach the
broker in sequence order, and tasks spawned per request could run in any
order); one short task per request awaits its answer, so up to
``max_in_flight`` requests are pipelined per broker.

A transactional producer's batches wait in their queue until their
partition is in the transaction: the drain asks the
:class:`~logbroker.client._txn.TransactionManager` (``ready``), and one
``_add_partitions`` task at a time sends AddPartitionsToTxn for all the
partitions waiting. Its answers to Produce go through
:func:`~logbroker.client._errors.transaction_error`: fencing is fatal, any
other failure makes the transaction abortable (no producer id reset).

Sequence numbers after a failed batch (as the Java client's Sender and
TransactionManager). A batch of several records refused with
MESSAGE_TOO_LARGE is split into pieces that take its place and its sequence
numbers (:meth:`ProducerBatch.split`). An idempotent producer's batch that
fails for good keeps the partition's later sequence numbers right:

* refused by the broker (a non-retriable error: RECORD_TOO_LARGE,
  INVALID_RECORD...) or never sent, it was not written: the partition's later
  batches, queued or in flight, move down by its record count (those already
  sent with the old numbers come back OUT_OF_ORDER_SEQUENCE_NUMBER and are
  sent again with the new ones);
* else (timed out, connection lost) it may or may not have been written: the
  partition is *unresolved*, sending nothing new, until a later batch of it
  succeeds (so it was written) or nothing of it is in flight any more; then
  the producer's epoch is bumped (KIP-360: the broker takes a new epoch from
  sequence 0) and each partition's sequences start over once nothing is in
  flight there under the old epoch.

A transactional producer's failed batch makes the transaction abortable;
``abort_transaction()`` then bumps the epoch (see the transaction manager).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import trio

from logbroker.errors import (
    ClientClosedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TransactionAbortedError,
)
from logbroker.protocol import ApiKey, ErrorCode, to_ms

from . import _wire
from ._accumulator import RecordAccumulator
from ._batches import ProducerBatch
from ._errors import kafka_error, transaction_error
from ._txn import TransactionManager
from .cluster import Cluster
from .config import ProducerConfig

__all__ = ["Sender"]

log = logging.getLogger("logbroker.client.producer")

_REFRESH_CODES = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.leader_not_available,
        ErrorCode.fenced_leader_epoch,
        ErrorCode.unknown_leader_epoch,
        ErrorCode.kafka_storage_error,
    }
)
_RESET_PRODUCER_CODES = frozenset({ErrorCode.unknown_producer_id, ErrorCode.invalid_producer_epoch})
_TopicPartition = tuple[str, int]
_Plan = list[ProducerBatch]
_SEQ_MASK = 0x7FFFFFFF  # sequence numbers wrap after the largest int32
_MAX_EPOCH = 0x7FFF  # past the largest int16 epoch a new producer id is needed


class Sender:
    """Drains the accumulator to the brokers (see the module docstring). One trio loop.

    Made with the producer; :meth:`start` gives it the cluster, the producer's
    background nursery and the transaction manager (if any) and starts :meth:`run`.
    """

    def __init__(self, config: ProducerConfig, accumulator: RecordAccumulator) -> None:
        self._config = config
        self._acc = accumulator
        self._idempotent = config.idempotence
        self._codec = config.codec
        self._cluster: Cluster | None = None
        self._nursery: trio.Nursery | None = None
        self._txn: TransactionManager | None = None
        self._queued_wake = False
        self._wake = trio.Event()
        self._flushing = 0
        self._stopping = False
        self._closed = False
        self._need_metadata = False
        self._refreshing = False
        self._in_flight: dict[_TopicPartition, int] = {}
        self._in_flight_batches: set[ProducerBatch] = set()
        self._node_in_flight: dict[int, int] = {}  # requests planned and not answered, per node
        self._writers: dict[int, trio.MemorySendChannel[_Plan]] = {}
        self._producer_id = -1
        self._producer_epoch = -1
        self._next_seq: dict[_TopicPartition, int] = {}  # sequence of the next batch sent
        self._seq_owner: dict[_TopicPartition, tuple[int, int]] = {}  # the (id, epoch) _next_seq counts for
        self._unresolved: dict[_TopicPartition, tuple[int, ...]] = {}  # the order of a batch that may be lost
        self._pid_ready = trio.Event()
        self._reset_pid = False
        self._fatal: BaseException | None = None
        self._done = trio.Event()
        self._failed: list[ProducerBatch] = []  # failed batches not yet reported by flush()
        self._stats = {"records_sent": 0, "records_failed": 0, "batches_sent": 0, "requests": 0, "retries": 0}
        if not self._idempotent:
            self._pid_ready.set()

    def __repr__(self) -> str:
        return (f"<Sender producer_id={self._producer_id} epoch={self._producer_epoch} "
                f"in_flight={len(self._in_flight_batches)} requests={self.requests_in_flight()}>")

    # -- the producer's view ------------------------------------------------------------------

    @property
    def producer_id(self) -> int:
        return self._producer_id

    @property
    def producer_epoch(self) -> int:
        return self._producer_epoch

    @property
    def fatal(self) -> BaseException | None:
        """The error that ended the producer (InitProducerId failed for good), else None."""
        return self._fatal

    def counters(self) -> dict[str, int]:
        return dict(self._stats)

    def requests_in_flight(self) -> int:
        return sum(self._node_in_flight.values())

    def in_flight(self) -> list[ProducerBatch]:
        return list(self._in_flight_batches)

    def wake(self) -> None:
        """Something changed (a batch opened or closed, an answer came): drain again."""
        self._wake.set()

    @contextlib.contextmanager
    def flushing(self) -> Iterator[None]:
        """While inside, every open batch is closed and sent at once (no linger)."""
        self._flushing += 1
        self._wake.set()
        try:
            yield
        finally:
            self._flushing -= 1

    def take_failures(self) -> list[ProducerBatch]:
        """The batches that failed since the last call (for ``flush`` to report)."""
        failed, self._failed = self._failed, []
        return failed

    def drop_failures(self, error: BaseException) -> None:
        """Forget the failures with ``error`` (they are seen)."""
        for batch in self._failed:
            if batch.error is error:
                batch.observed = True
        self._failed = [b for b in self._failed if b.error is not error]

    def use_producer_id(self, producer_id: int, epoch: int) -> None:
        """A new producer id (a transactional producer's InitProducerId): sequences start over."""
        self._producer_id = producer_id
        self._producer_epoch = epoch
        self._forget_sequences()
        self._pid_ready.set()
        self._wake.set()

    def start(self, nursery: trio.Nursery, cluster: Cluster, txn: TransactionManager | None) -> None:
        self._nursery = nursery
        self._cluster = cluster
        self._txn = txn
        nursery.start_soon(self.run)

    def stop(self) -> None:
        """Send what is left, then end :meth:`run` (see :meth:`wait_stopped`)."""
        self._closed = True
        self._stopping = True
        self._wake.set()

    async def wait_stopped(self) -> None:
        await self._done.wait()

    def fail_unsent(self, error: BaseException) -> None:
        """Fail the records not sent yet: held for metadata, in open batches, queued."""
        for topic in self._acc.held_topics():
            for alone, failure in self._acc.route_held(topic, error):
                self.fail_unbatched(alone, failure)
        for batch in self._acc.take_unsent():
            self.finish(batch, error)

    def abort(self, error: BaseException) -> None:
        """Fail every record not delivered; stop the background tasks."""
        self._closed = True
        self._stopping = True
        self._acc.stop()
        self.fail_unsent(error)
        for batch in list(self._in_flight_batches):
            self.finish(batch, error)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- completion -------------------------------------------------------------------------------

    def finish(self, batch: ProducerBatch, error: BaseException | None = None,
               base_offset: int = -1, log_append_time: int = -1) -> None:
        """Complete (``error`` None) or fail a batch; its memory leaves the buffer."""
        if batch.done:
            return
        if error is None:
            batch.complete(base_offset, log_append_time)
            self._stats["records_sent"] += batch.count
        else:
            count = batch.count
            batch.fail(error)
            self._stats["records_failed"] += count
            self._failed.append(batch)
            if self._txn is not None and not isinstance(error, TransactionAbortedError):
                self._txn.record_failure(error, sent=batch.attempts > 0 or batch in self._in_flight_batches)
        self._acc.release(batch)
        parent = batch.parent
        while parent is not None and parent.finish_split():  # the last piece of a split batch
            self._acc.release(parent)
            parent = parent.parent

    def fail_unbatched(self, batch: ProducerBatch, error: BaseException) -> None:
        """Fail a held record that never reached a batch (one record in ``batch``)."""
        batch.fail(error)
        self._stats["records_failed"] += 1
        self._failed.append(batch)
        if self._txn is not None and isinstance(error, KafkaError) and not isinstance(error, TransactionAbortedError):
            self._txn.record_failure(error, sent=False)

    # -- the task ------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self._idempotent and self._txn is None:  # a transactional one waits for init_transactions()
                await self._init_producer_id()
            while True:
                self._wake = trio.Event()
                delay = self._drain(trio.current_time())
                if self._stopping and self._acc.is_idle() and not self._in_flight_batches:
                    return
                if delay > 0:
                    with trio.move_on_after(delay):
                        await self._wake.wait()
        except (KafkaError, ClientClosedError) as exc:  # InitProducerId failed for good
            self._fatal = exc
            self.abort(exc)
        finally:
            self._done.set()

    async def _init_producer_id(self) -> None:
        """Ask InitProducerId until it answers, for at most ``delivery_timeout_ms``."""
        assert self._cluster is not None
        deadline = trio.current_time() + self._config.delivery_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = await self._cluster.any_connection()
                version = conn.version(ApiKey.INIT_PRODUCER_ID)
                answer = await conn.request(ApiKey.INIT_PRODUCER_ID, version,
                                            _wire.init_producer_id_request(version))
                if answer.error_code == ErrorCode.none:
                    self._producer_id = answer.producer_id
                    self._producer_epoch = answer.producer_epoch
                    self._forget_sequences()
                    self._pid_ready.set()
                    return
                error: KafkaError = kafka_error(answer.error_code, context="InitProducerId")
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                error = exc
            if not error.retriable or trio.current_time() + self._config.backoff(attempt) > deadline:
                raise error
            await trio.sleep(self._config.backoff(attempt))

    async def _renew_producer_id(self) -> None:
        try:
            await self._init_producer_id()
        except (KafkaError, ClientClosedError) as exc:
            self._fatal = exc
            self.abort(exc)
        finally:
            self._reset_pid = False
            self._wake.set()

    def _drain(self, now: float) -> float:
        """Close lingering batches, fail expired ones, start requests; return seconds to sleep."""
        assert self._nursery is not None and self._cluster is not None
        acc = self._acc
        urgent = bool(self._flushing) or self._stopping or acc.full()
        next_wake = acc.close_lingering(now, urgent)
        if self._reset_pid or not self._pid_ready.is_set():
            return 0.05 if math.isinf(next_wake) else max(0.0, min(next_wake - now, 0.05))
        if self._cluster.stale and not self._refreshing and acc.topics():
            self._need_metadata = True
        unresolved = self._unresolved
        if unresolved:
            self._check_unresolved()
            if self._reset_pid:  # the epoch was exhausted: a new producer id first
                return 0.05
        current = (self._producer_id, self._producer_epoch)
        idempotent = self._idempotent
        timeout_ms = self._config.delivery_timeout_ms
        for expired in acc.pop_expired(now):
            self._sequence_lost(expired, definite=expired.sent_sequence < 0)
            self.finish(expired, KafkaTimeoutError(
                f"{expired.count} records for {expired.topic}[{expired.partition}] not delivered within "
                f"delivery_timeout_ms={timeout_ms}"))
        plans: dict[int, _Plan] = {}
        plan_bytes: dict[int, int] = {}
        max_request = self._config.max_request_size
        max_in_flight = self._config.max_in_flight
        txn = self._txn
        for tp, head in acc.heads():
            next_wake = min(next_wake, head.deadline)
            if head.retry_at > now:
                next_wake = min(next_wake, head.retry_at)
                continue
            if txn is not None and not txn.ready(tp):
                if txn.error is not None:  # abortable or fenced: this partition will not join
                    for batch in acc.take_queue(tp):
                        self.finish(batch, txn.error)
                continue  # AddPartitionsToTxn first
            if unresolved and tp in unresolved:
                continue  # until the batch that may be lost is resolved
            in_flight = self._in_flight.get(tp, 0)
            if in_flight and (head.attempts or in_flight >= max_in_flight
                              or idempotent and self._seq_owner.get(tp) != current):
                continue  # a retrying partition sends one batch at a time; a new epoch waits for the old
            node = self._cluster.leader(tp[0], tp[1])
            if node < 0:
                self._need_metadata = True
                next_wake = min(next_wake, now + 0.05)
                continue
            if self._node_in_flight.get(node, 0) >= max_in_flight:
                continue
            planned = plan_bytes.get(node, 0)
            size = head.size
            if planned and planned + size > max_request:
                next_wake = now  # send the rest in the next request
                continue
            acc.pop_head(tp)
            self._assign_sequence(tp, head)
            plans.setdefault(node, []).append(head)
            plan_bytes[node] = planned + size
        for node, batches in plans.items():
            self._node_in_flight[node] = self._node_in_flight.get(node, 0) + 1
            for batch in batches:
                tp = (batch.topic, batch.partition)
                self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
                self._in_flight_batches.add(batch)
            self._request_writer(node).send_nowait(batches)  # never blocks: in flight <= buffer
        if txn is not None and txn.pending and not txn.adding:
            txn.start_adding()
            self._nursery.start_soon(self._add_partitions)
        if self._need_metadata and not self._refreshing:
            self._need_metadata = False
            self._refreshing = True
            self._nursery.start_soon(self._refresh_metadata)
        return max(0.0, next_wake - now) if not math.isinf(next_wake) else math.inf

    async def _refresh_metadata(self) -> None:
        assert self._cluster is not None
        try:
            topics = self._acc.topics()
            meta = await self._cluster.refresh(topics)
            for topic in topics:
                info = meta.topics.get(topic)
                if info is not None and not info.error_code and info.partitions:
                    self._acc.set_partitions(topic, len(info.partitions))
        except (KafkaError, ClientClosedError) as exc:
            log.debug("metadata refresh failed: %s", exc)
        finally:
            self._refreshing = False
            self._wake.set()

    async def _add_partitions(self) -> None:
        """AddPartitionsToTxn for the partitions waiting to join; their batches go out after."""
        txn = self._txn
        assert txn is not None
        try:
            await txn.add_partitions(self._producer_id, self._producer_epoch)
        except (KafkaError, ClientClosedError) as exc:
            if isinstance(exc, KafkaError):
                txn.record_failure(exc, sent=False)
            failed, txn.pending = txn.pending, set()
            error = txn.error or exc
            for tp in failed:  # these partitions will not join: their batches fail now
                for batch in self._acc.take_queue(tp):
                    self.finish(batch, error)
        finally:
            txn.done_adding()
            self._wake.set()

    def _assign_sequence(self, tp: _TopicPartition, batch: ProducerBatch) -> None:
        """Stamp producer id and sequence on the first send (retries keep theirs); a partition's
        sequences start at 0 under a new producer id or epoch."""
        if not self._idempotent:
            batch.stamp(-1, -1, -1)
            return
        pid, epoch = self._producer_id, self._producer_epoch
        if batch.attempts and batch.producer_id == pid and batch.producer_epoch == epoch:
            return
        if self._seq_owner.get(tp) != (pid, epoch):
            self._seq_owner[tp] = (pid, epoch)
            self._next_seq[tp] = 0
        seq = self._next_seq[tp]
        batch.stamp(pid, epoch, seq)
        self._next_seq[tp] = (seq + batch.count) & _SEQ_MASK

    def _forget_sequences(self) -> None:
        """A new producer id or epoch: every partition's sequences start over."""
        self._next_seq.clear()
        self._seq_owner.clear()
        self._unresolved.clear()

    # -- sequence numbers after a failed batch (see the module docstring) ------------------------

    def _sequence_lost(self, batch: ProducerBatch, *, definite: bool) -> None:
        """``batch`` fails for good: keep its partition's later sequence numbers right.

        ``definite``: it was never written (the broker refused it, or it was never
        sent), so the later batches move down; else the partition is unresolved.
        Nothing to do unless the producer is idempotent and not transactional and
        the batch holds sequence numbers of the current producer id and epoch.
        """
        if not self._idempotent or self._txn is not None or self._reset_pid or batch.base_sequence < 0:
            return
        current = (self._producer_id, self._producer_epoch)
        tp = (batch.topic, batch.partition)
        if (batch.producer_id, batch.producer_epoch) != current or self._seq_owner.get(tp) != current:
            return  # its partition's sequences started over since
        if definite:
            self._adjust_sequences(tp, batch)
            return
        known = self._unresolved.get(tp)
        if known is None or batch.order < known:
            self._unresolved[tp] = batch.order
        self._wake.set()

    def _adjust_sequences(self, tp: _TopicPartition, failed: ProducerBatch) -> None:
        """``failed`` was not written: give its sequence numbers to the batches after it
        (Java's ``adjustSequencesDueToFailedBatch``)."""
        count = failed.count
        pid, epoch = self._producer_id, self._producer_epoch
        self._next_seq[tp] = (self._next_seq.get(tp, 0) - count) & _SEQ_MASK
        later = [b for b in self._in_flight_batches
                 if b.partition == tp[1] and b.topic == tp[0] and b.order > failed.order]
        later.extend(b for b in self._acc.queued(tp) if b.order > failed.order)
        moved = 0
        for batch in later:
            if batch.base_sequence >= 0 and batch.producer_id == pid and batch.producer_epoch == epoch:
                batch.stamp(pid, epoch, (batch.base_sequence - count) & _SEQ_MASK)
                moved += 1
        log.debug("%s[%d]: %r was not written; %d later batches move down by %d", tp[0], tp[1], failed, moved, count)

    def _resolve(self, done: ProducerBatch) -> None:
        """``done`` was written: so was any batch of its partition before it."""
        tp = (done.topic, done.partition)
        order = self._unresolved.get(tp)
        if (order is not None and done.order > order
                and (done.producer_id, done.producer_epoch) == (self._producer_id, self._producer_epoch)):
            del self._unresolved[tp]

    def _check_unresolved(self) -> None:
        """An unresolved partition with nothing in flight any more: nothing says whether its
        lost batch was written, so its sequence numbers cannot go on: bump the epoch."""
        if any(not self._in_flight.get(tp) for tp in self._unresolved):
            self._bump_epoch()

    def _bump_epoch(self) -> None:
        """KIP-360 for an idempotent producer: the same id with the next epoch, which the broker
        takes from sequence 0 (a new producer id once the epoch is exhausted)."""
        lost = sorted(self._unresolved)
        self._unresolved.clear()
        if self._producer_epoch >= _MAX_EPOCH:
            self._schedule_pid_reset()
            return
        self._producer_epoch += 1
        log.info("producer %d: epoch bumped to %d, sequence numbers start over (a batch of %s may be lost)",
                 self._producer_id, self._producer_epoch, ", ".join(f"{t}[{p}]" for t, p in lost))

    def _sent_stale(self, batch: ProducerBatch) -> bool:
        """True if the last send of ``batch`` carried sequence numbers it no longer has
        (moved down, or its producer id or epoch is being replaced)."""
        return (batch.sent_sequence != batch.base_sequence or self._reset_pid
                or (batch.producer_id, batch.producer_epoch) != (self._producer_id, self._producer_epoch))

    def _split(self, batch: ProducerBatch) -> None:
        """MESSAGE_TOO_LARGE for a batch of several records: send it again as smaller pieces
        (Java's ``splitAndReenqueue``). The pieces take its sequence numbers, so the batches
        after it keep theirs."""
        pieces = batch.split()
        pid, epoch = self._producer_id, self._producer_epoch
        keep = (self._idempotent and batch.base_sequence >= 0
                and (batch.producer_id, batch.producer_epoch) == (pid, epoch)
                and self._seq_owner.get((batch.topic, batch.partition)) == (pid, epoch))
        seq = batch.base_sequence
        for piece in pieces:
            piece.attempts = batch.attempts + 1
            if keep:
                piece.stamp(pid, epoch, seq)
                seq = (seq + piece.count) & _SEQ_MASK
            self._acc.reenqueue(piece)
        self._stats["retries"] += 1
        log.debug("%r is too large for the broker: split in %d", batch, len(pieces))

    def _request_writer(self, node: int) -> trio.MemorySendChannel[_Plan]:
        """The channel of ``node``'s writer task, started on first use."""
        channel = self._writers.get(node)
        if channel is None:
            assert self._nursery is not None
            channel, receive = trio.open_memory_channel[_Plan](self._config.max_in_flight)
            self._writers[node] = channel
            self._nursery.start_soon(self._write_requests, node, receive)
        return channel

    async def _write_requests(self, node: int, requests: trio.MemoryReceiveChannel[_Plan]) -> None:
        """Send ``node``'s Produce requests one after the other, in the order they were planned.

        Sequence numbers require that a partition's batches reach the broker in
        order, so one task sends them all (tasks spawned per request could run
        in any order); answers are awaited by one short task each, so requests
        stay pipelined.
        """
        assert self._cluster is not None and self._nursery is not None
        config = self._config
        acks = config.acks
        async for batches in requests:
            carried = [batch.base_sequence for batch in batches]  # what this send says, whatever changes later
            try:
                by_topic: dict[str, list[tuple[int, bytes]]] = {}
                for batch in batches:
                    assert batch.data is not None  # stamped when planned
                    by_topic.setdefault(batch.topic, []).append((batch.partition, batch.data))
                conn = await self._cluster.connection(node)
                version = conn.version(ApiKey.PRODUCE)
                if self._codec == 4 and version < 7:
                    raise KafkaError(f"node {node} cannot take zstd (Produce v{version} < 7)",
                                     code=ErrorCode.unsupported_compression_type)
                body = _wire.produce_request(version, acks, config.request_timeout_ms, by_topic,  # type: ignore[arg-type]  # acks is normalised to an int by ProducerConfig
                                             config.transactional_id)
                self._stats["requests"] += 1
                slot = await conn.send(ApiKey.PRODUCE, version, body, expect_response=acks != 0)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._need_metadata = True
                for batch in batches:
                    self._retry_or_fail(batch, exc)
                self._request_done(node, batches)
                continue
            except (KafkaError, ClientClosedError) as exc:
                for batch in batches:
                    self._sequence_lost(batch, definite=batch.sent_sequence < 0)  # this one was not sent
                    self.finish(batch, exc)
                self._request_done(node, batches)
                continue
            for batch, seq in zip(batches, carried):
                batch.sent_sequence = seq
            self._stats["batches_sent"] += len(batches)
            if slot is None:  # acks=0: no answer will come
                for batch in batches:
                    self.finish(batch)
                self._request_done(node, batches)
                continue
            self._nursery.start_soon(self._await_answer, node, conn, slot, batches)

    async def _await_answer(self, node: int, conn: Any, slot: Any, batches: _Plan) -> None:
        try:
            try:
                answer = await conn.answer(slot)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._need_metadata = True
                for batch in batches:
                    self._retry_or_fail(batch, exc)
                return
            except (KafkaError, ClientClosedError) as exc:
                for batch in batches:
                    self._sequence_lost(batch, definite=False)
                    self.finish(batch, exc)
                return
            self._settle(batches, answer)
        finally:
            self._request_done(node, batches)

    def _request_done(self, node: int, batches: _Plan) -> None:
        self._node_in_flight[node] -= 1
        for batch in batches:
            tp = (batch.topic, batch.partition)
            self._in_flight[tp] -= 1
            self._in_flight_batches.discard(batch)
        self._wake.set()

    def _settle(self, batches: _Plan, answer: Any) -> None:
        results: dict[_TopicPartition, Any] = {}
        for topic in answer.responses:
            for p in topic.partition_responses:
                results[(topic.name, p.index)] = p
        for batch in batches:
            p = results.get((batch.topic, batch.partition))
            if p is None:
                self._retry_or_fail(batch, KafkaError("the broker's answer left this partition out",
                                                      code=ErrorCode.unknown_server_error, retriable=True))
                continue
            code = p.error_code
            if code == ErrorCode.none or code == ErrorCode.duplicate_sequence_number:
                lat = p.log_append_time
                if self._unresolved:
                    self._resolve(batch)
                self.finish(batch, None, p.base_offset, to_ms(lat) if lat is not None else -1)
                continue
            if code == ErrorCode.message_too_large and batch.count > 1:
                self._split(batch)
                continue
            message = getattr(p, "error_message", None)
            context = f"produce to {batch.topic}[{batch.partition}]"
            if self._txn is not None:  # fencing ends the producer; anything else the transaction
                error = transaction_error(code, message, context=context)
                if code == ErrorCode.out_of_order_sequence_number and self._earlier_batch_retrying(batch):
                    error.retriable = True
                elif code in _REFRESH_CODES:
                    self._need_metadata = True
                self._retry_or_fail(batch, error)
                continue
            error = kafka_error(code, message, context=context)
            if code in _REFRESH_CODES:
                self._need_metadata = True
            definite = False  # the broker refused it for good: it was not written
            if code == ErrorCode.out_of_order_sequence_number:
                if self._earlier_batch_retrying(batch) or self._sent_stale(batch) or (
                        (batch.topic, batch.partition) in self._unresolved):
                    error.retriable = True  # sent again after the batches before it, or renumbered
                elif self._idempotent:
                    self._schedule_pid_reset()  # the broker lost track; later batches start over
            elif code in _RESET_PRODUCER_CODES and self._idempotent:
                self._schedule_pid_reset()
                error.retriable = True
            else:
                definite = True
            self._retry_or_fail(batch, error, definite=definite)

    def _earlier_batch_retrying(self, batch: ProducerBatch) -> bool:
        tp = (batch.topic, batch.partition)
        head = self._acc.head(tp)
        if head is not None and head.order < batch.order:
            return True
        return any(
            other.order < batch.order and (other.topic, other.partition) == tp
            for other in self._in_flight_batches
        )

    def _schedule_pid_reset(self) -> None:
        if not self._reset_pid and self._nursery is not None:
            self._reset_pid = True
            self._pid_ready = trio.Event()
            self._nursery.start_soon(self._renew_producer_id)

    def _retry_or_fail(self, batch: ProducerBatch, error: KafkaError, *, definite: bool = False) -> None:
        """Queue ``batch`` again after backoff, or fail it (``definite``: the broker refused it,
        so it was not written; only a non-retriable refusal is believed)."""
        now = trio.current_time()
        batch.attempts += 1
        retriable = getattr(error, "retriable", False)
        if (not retriable or batch.attempts > self._config.retries
                or now >= batch.deadline or self._stopping and self._closed):
            self._sequence_lost(batch, definite=definite and not retriable)
            self.finish(batch, error)
            return
        self._stats["retries"] += 1
        batch.retry_at = now + self._config.backoff(batch.attempts)
        self._acc.reenqueue(batch)
        log.debug("retrying %r after %s", batch, error)
