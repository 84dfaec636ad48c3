"""The producer's sender: InitProducerId, draining batches into Produce requests,
settling answers, retries in sequence order.

:class:`Sender` is a mixin of :class:`~logbroker.client.Producer`: the
producer's state (queues, in-flight counts, producer id and sequences) is
shared, the sending half of the code lives here. One task (``_sender``)
closes lingering batches and plans requests per leader; one writer task per
broker sends that broker's requests in plan order (a partition's batches
must reach the broker in sequence order, and tasks spawned per request could
run in any order); one short task per request awaits its answer, so up to
``max_in_flight`` requests are pipelined per broker.

A transactional producer's batches wait in their queue until their
partition is in the transaction: ``_drain`` asks the
:class:`~logbroker.client._txn.TransactionManager` (``ready``), and one
``_add_partitions`` task at a time sends AddPartitionsToTxn for all the
partitions waiting. Its answers to Produce go through
:func:`~logbroker.client._errors.transaction_error`: fencing is fatal, any
other failure makes the transaction abortable (no producer id reset).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

import trio

from logbroker.errors import ClientClosedError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import ApiKey, ErrorCode, to_ms

from . import _wire
from ._batches import ProducerBatch
from ._errors import kafka_error, transaction_error

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


class Sender:
    """The sending half of the producer (a mixin; see the module docstring)."""

    async def _sender(self) -> None:
        try:
            if self._idempotent and self._txn is None:  # a transactional one waits for init_transactions()
                await self._init_producer_id()
            while True:
                self._wake = trio.Event()
                delay = self._drain(trio.current_time())
                if self._stopping and not self._open and not any(self._queues.values()) \
                        and not self._in_flight_batches:
                    return
                if delay > 0:
                    with trio.move_on_after(delay):
                        await self._wake.wait()
        except (KafkaError, ClientClosedError) as exc:  # InitProducerId failed for good
            self._fatal = exc
            self._limit = -1
            self._abort(exc)
        finally:
            self._sender_done.set()

    async def _init_producer_id(self) -> None:
        """Ask InitProducerId until it answers, for at most ``delivery_timeout_ms``."""
        assert self._cluster is not None
        deadline = trio.current_time() + self.config.delivery_timeout_ms / 1000
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
                    self._next_seq.clear()
                    self._guess_seq.clear()
                    self._pid_ready.set()
                    return
                error: KafkaError = kafka_error(answer.error_code, context="InitProducerId")
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                error = exc
            if not error.retriable or trio.current_time() + self.config.backoff(attempt) > deadline:
                raise error
            await trio.sleep(self.config.backoff(attempt))

    async def _renew_producer_id(self) -> None:
        try:
            await self._init_producer_id()
        except (KafkaError, ClientClosedError) as exc:
            self._fatal = exc
            self._limit = -1
            self._abort(exc)
        finally:
            self._reset_pid = False
            self._wake.set()

    def _drain(self, now: float) -> float:
        """Close lingering batches, fail expired ones, start requests; return seconds to sleep."""
        assert self._nursery is not None and self._cluster is not None
        next_wake = math.inf
        urgent = self._flushing or self._stopping or self._buffered >= self._max_buffer
        for tp, batch in list(self._open.items()):
            ready_at = batch.created + self._linger
            if urgent or ready_at <= now:
                self._close_batch(tp, batch)
            else:
                next_wake = min(next_wake, ready_at)
        if self._reset_pid or not self._pid_ready.is_set():
            return 0.05 if math.isinf(next_wake) else max(0.0, min(next_wake - now, 0.05))
        if self._cluster.stale and not self._refreshing and self._counts:
            self._need_metadata = True
        plans: dict[int, list[ProducerBatch]] = {}
        plan_bytes: dict[int, int] = {}
        max_request = self.config.max_request_size
        txn = self._txn
        for tp, queue in self._queues.items():
            while queue and queue[0].deadline <= now:
                expired = queue.popleft()
                self._finish(expired, KafkaTimeoutError(
                    f"{expired.count} records for {tp[0]}[{tp[1]}] not delivered within "
                    f"delivery_timeout_ms={self.config.delivery_timeout_ms}"))
            if not queue:
                continue
            head = queue[0]
            next_wake = min(next_wake, head.deadline)
            if head.retry_at > now:
                next_wake = min(next_wake, head.retry_at)
                continue
            if txn is not None and not txn.ready(tp):
                if txn.error is not None:  # abortable or fenced: this partition will not join
                    while queue:
                        self._finish(queue.popleft(), txn.error)
                continue  # AddPartitionsToTxn first
            in_flight = self._in_flight.get(tp, 0)
            if in_flight and (head.attempts or in_flight >= self.config.max_in_flight):
                continue  # a retrying partition sends one batch at a time
            node = self._cluster.leader(tp[0], tp[1])
            if node < 0:
                self._need_metadata = True
                next_wake = min(next_wake, now + 0.05)
                continue
            if self._node_in_flight.get(node, 0) >= self.config.max_in_flight:
                continue
            planned = plan_bytes.get(node, 0)
            if planned and planned + len(head.data) > max_request:  # type: ignore[arg-type]
                next_wake = now  # send the rest in the next request
                continue
            queue.popleft()
            self._assign_sequence(tp, head)
            plans.setdefault(node, []).append(head)
            plan_bytes[node] = planned + len(head.data)  # type: ignore[arg-type]
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
                queue = self._queues.get(tp)
                while queue:
                    self._finish(queue.popleft(), error)
        finally:
            txn.done_adding()
            self._wake.set()

    def _assign_sequence(self, tp: tuple[str, int], batch: ProducerBatch) -> None:
        """Stamp producer id and sequence on the first send (retries keep theirs)."""
        if not self._idempotent:
            return
        if batch.attempts and batch.producer_id == self._producer_id and batch.producer_epoch == self._producer_epoch:
            return
        seq = self._next_seq.get(tp, 0)
        batch.stamp(self._producer_id, self._producer_epoch, seq)
        self._next_seq[tp] = (seq + batch.count) & 0x7FFFFFFF
        if self._guess_seq.get(tp, 0) < self._next_seq[tp] and tp not in self._open:
            self._guess_seq[tp] = self._next_seq[tp]

    def _request_writer(self, node: int) -> trio.MemorySendChannel:
        """The channel of ``node``'s writer task, started on first use."""
        channel = self._writers.get(node)
        if channel is None:
            assert self._nursery is not None
            channel, receive = trio.open_memory_channel(self.config.max_in_flight)
            self._writers[node] = channel
            self._nursery.start_soon(self._write_requests, node, receive)
        return channel

    async def _write_requests(self, node: int, requests: trio.MemoryReceiveChannel) -> None:
        """Send ``node``'s Produce requests one after the other, in the order they were planned.

        Sequence numbers require that a partition's batches reach the broker in
        order, so one task sends them all (tasks spawned per request could run
        in any order); answers are awaited by one short task each, so requests
        stay pipelined.
        """
        assert self._cluster is not None and self._nursery is not None
        acks = self.config.acks
        async for batches in requests:
            try:
                by_topic: dict[str, list[tuple[int, bytes]]] = {}
                for batch in batches:
                    by_topic.setdefault(batch.topic, []).append((batch.partition, batch.data))  # type: ignore[arg-type]
                conn = await self._cluster.connection(node)
                version = conn.version(ApiKey.PRODUCE)
                if self._codec == 4 and version < 7:
                    raise KafkaError(f"node {node} cannot take zstd (Produce v{version} < 7)",
                                     code=ErrorCode.unsupported_compression_type)
                body = _wire.produce_request(version, acks, self.config.request_timeout_ms, by_topic,
                                             self.config.transactional_id)
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
                    self._finish(batch, exc)
                self._request_done(node, batches)
                continue
            self._stats["batches_sent"] += len(batches)
            if slot is None:  # acks=0: no answer will come
                for batch in batches:
                    self._finish(batch)
                self._request_done(node, batches)
                continue
            self._nursery.start_soon(self._await_answer, node, conn, slot, batches)

    async def _await_answer(self, node: int, conn: Any, slot: Any, batches: list[ProducerBatch]) -> None:
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
                    self._finish(batch, exc)
                return
            self._settle(batches, answer)
        finally:
            self._request_done(node, batches)

    def _request_done(self, node: int, batches: list[ProducerBatch]) -> None:
        self._node_in_flight[node] -= 1
        for batch in batches:
            tp = (batch.topic, batch.partition)
            self._in_flight[tp] -= 1
            self._in_flight_batches.discard(batch)
        self._wake.set()

    def _settle(self, batches: list[ProducerBatch], answer: Any) -> None:
        results: dict[tuple[str, int], Any] = {}
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
                self._finish(batch, None, p.base_offset, to_ms(lat) if lat is not None else -1)
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
            if code == ErrorCode.out_of_order_sequence_number and self._earlier_batch_retrying(batch):
                error.retriable = True
            elif code in _RESET_PRODUCER_CODES and self._idempotent:
                self._schedule_pid_reset()
                error.retriable = True
            elif code == ErrorCode.out_of_order_sequence_number and self._idempotent:
                self._schedule_pid_reset()  # the broker lost track; later batches start over
            self._retry_or_fail(batch, error)

    def _earlier_batch_retrying(self, batch: ProducerBatch) -> bool:
        tp = (batch.topic, batch.partition)
        queue = self._queues.get(tp)
        if queue and queue[0].order < batch.order:
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

    def _retry_or_fail(self, batch: ProducerBatch, error: KafkaError) -> None:
        now = trio.current_time()
        batch.attempts += 1
        if (not getattr(error, "retriable", False) or batch.attempts > self.config.retries
                or now >= batch.deadline or self._stopping and self._closed):
            self._finish(batch, error)
            return
        self._stats["retries"] += 1
        batch.retry_at = now + self.config.backoff(batch.attempts)
        tp = (batch.topic, batch.partition)
        queue = self._queues.setdefault(tp, deque())
        queue.append(batch)
        if len(queue) > 1 and queue[-2].order > batch.order:
            ordered = sorted(queue, key=lambda b: b.order)
            queue.clear()
            queue.extend(ordered)
        log.debug("retrying %r after %s", batch, error)
