"""Point-to-point queues over Kafka share groups (KIP-932).

Usage::

    async with QueueConsumer("localhost:9092", ["jobs"], group_id="workers") as queue:
        async for msg in queue:
            await handle(msg.value)
            await msg.ack()            # or msg.release() / msg.reject()

Each record goes to one member of the share group. The broker locks each
delivered record for ``group.share.record.lock.duration.ms``; an unanswered
record is redelivered to someone after the lock expires (a dead member's
records reach the others), and after too many attempts it is archived (and
copied to the group's dead-letter topic when one is configured).

How it works: a heartbeat task joins the group (ShareGroupHeartbeat) and
learns the assigned partitions; a fetch task sends ShareFetch to each
partition leader, carrying the acknowledgements made since the last request,
and hands the acquired records to the application. While records are
delivered but not yet answered, fetches poll briefly so answers travel
promptly, and records held longer than a third of the lock are renewed
(acknowledge type Renew, ShareFetch v2) so a long handler keeps its lock.
Closing releases every unanswered record and leaves the group.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict, deque
from typing import Any

import trio

from logbroker.errors import ClientClosedError, LogbrokerError
from logbroker.protocol import ApiKey, ErrorCode, build, request_module
from logbroker.records import decode_batches

from ._errors import kafka_error
from ._tasks import leaves
from .cluster import Cluster
from .config import ClientConfig
from .types import ConsumerRecord, TopicPartition

__all__ = ["QueueConsumer", "QueueMessage"]

log = logging.getLogger("logbroker.client")

ACCEPT, RELEASE, REJECT, RENEW = 1, 2, 3, 4
_BRIEF_POLL_MS = 50


class QueueMessage:
    """One delivered record and its answer: :meth:`ack`, :meth:`release` or :meth:`reject`."""

    __slots__ = ("record", "delivery_count", "_queue", "_answered", "_delivered_at")

    def __init__(self, record: ConsumerRecord, delivery_count: int, queue: QueueConsumer) -> None:
        self.record = record
        self.delivery_count = delivery_count
        self._queue = queue
        self._answered = False
        self._delivered_at = trio.current_time()

    def __repr__(self) -> str:
        r = self.record
        return f"QueueMessage({r.topic}[{r.partition}]@{r.offset}, delivery={self.delivery_count})"

    @property
    def value(self) -> bytes | None:
        return self.record.value

    @property
    def key(self) -> bytes | None:
        return self.record.key

    @property
    def headers(self):
        return self.record.headers

    @property
    def offset(self) -> int:
        return self.record.offset

    async def ack(self) -> None:
        """Processed: never deliver it again."""
        self._queue._answer(self, ACCEPT)
        await trio.lowlevel.checkpoint()

    async def release(self) -> None:
        """Not processed: deliver it again (to anyone) now."""
        self._queue._answer(self, RELEASE)
        await trio.lowlevel.checkpoint()

    async def reject(self) -> None:
        """Unprocessable: archive it (and copy it to the dead-letter topic, if any)."""
        self._queue._answer(self, REJECT)
        await trio.lowlevel.checkpoint()


class QueueConsumer:
    """A member of share group ``group_id`` consuming ``topics``.

    Options: ``max_wait_ms`` (long poll, 500), ``max_records`` per fetch (500),
    ``lock_renew`` (renew held records, True) and the ClientConfig settings.
    """

    def __init__(self, bootstrap: str | None, topics: list[str] | str, *, group_id: str,
                 max_wait_ms: int = 500, max_records: int = 500, lock_renew: bool = True,
                 **options: Any) -> None:
        self.config = ClientConfig.from_options(bootstrap, options)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.group_id = group_id
        self.max_wait_ms = max_wait_ms
        self.max_records = max_records
        self.lock_renew = lock_renew
        self.member_id = ""
        self.member_epoch = 0
        self._heartbeat_ms = 1000
        self._assigned: set[TopicPartition] = set()
        self._names: dict[uuid.UUID, str] = {}
        self._ids: dict[str, uuid.UUID] = {}
        self._session_epochs: dict[int, int] = {}
        self._acks: dict[TopicPartition, list[tuple[int, int]]] = defaultdict(list)
        self._held: dict[tuple[TopicPartition, int], QueueMessage] = {}
        self._ready: deque[QueueMessage] = deque()
        self._data = trio.Event()
        self._wake = trio.Event()
        self._lock_timeout_ms = 30_000
        self._cluster: Cluster | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._error: BaseException | None = None
        self._loops: trio.Nursery | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (f"QueueConsumer(group_id={self.group_id!r}, member_epoch={self.member_epoch}, "
                f"assigned={len(self._assigned)}, held={len(self._held)})")

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> QueueConsumer:
        try:
            return await self._open()
        except BaseExceptionGroup as group:
            # The nurseries wrap a failure to join (unknown topic, not authorised) in a group.
            errors = list(leaves(group))
            if len(errors) == 1:
                raise errors[0] from None
            raise

    async def _open(self) -> QueueConsumer:
        async with contextlib.AsyncExitStack() as stack:
            # Closing runs these in reverse: stop the loops, leave, close connections.
            connections = await stack.enter_async_context(trio.open_nursery())
            self._cluster = Cluster(self.config, connections)
            stack.push_async_callback(self._cluster.aclose)
            stack.push_async_callback(self.close)
            meta = await self._cluster.refresh(self.topics)
            for name in self.topics:
                info = meta.topics.get(name)
                if info is None or info.topic_id is None:
                    raise kafka_error(ErrorCode.unknown_topic_or_partition, context=f"topic {name!r}")
                self._ids[name] = uuid.UUID(str(info.topic_id))
                self._names[self._ids[name]] = name
            await self._heartbeat_once()
            loops = await stack.enter_async_context(trio.open_nursery())
            loops.start_soon(self._guard, self._heartbeat_loop)
            loops.start_soon(self._guard, self._fetch_loop)
            self._loops = loops
            stack.callback(loops.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        # Nurseries are left in the task that entered them: close() only signals.
        await self.close()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        return None

    async def close(self) -> None:
        """Release unanswered records, close the share sessions, leave the group.

        May be called from any task; the connections close on leaving ``async with``.
        """
        if self._closed or self._stack is None:
            return
        self._closed = True
        self._loops.cancel_scope.cancel()
        self._data.set()
        await self._leave()

    async def _guard(self, loop) -> None:
        """Run a background loop; a client error ends it and is raised by :meth:`get`."""
        try:
            await loop()
        except BaseExceptionGroup as group:
            errors, rest = group.split((LogbrokerError, OSError))
            if rest is not None:
                raise rest from None
            self._fail(errors)
        except (LogbrokerError, OSError) as exc:
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        if not self._closed:
            self._error = error
            self._data.set()

    async def _leave(self) -> None:
        with trio.move_on_after(5) as scope, contextlib.suppress(LogbrokerError):
            scope.shield = True
            for message in list(self._held.values()):
                if not message._answered:
                    self._answer(message, RELEASE)
            for node in list(self._session_epochs):
                await self._acknowledge(node, close=True)
            if self.member_id:
                await self._heartbeat_once(leave=True)

    # -- membership -----------------------------------------------------------------

    async def _coordinator(self):
        node = await self._cluster.coordinator(self.group_id)
        return await self._cluster.connection(node)

    async def _heartbeat_once(self, *, leave: bool = False) -> None:
        conn = await self._coordinator()
        version = conn.version(ApiKey.SHARE_GROUP_HEARTBEAT)
        mod = request_module(ApiKey.SHARE_GROUP_HEARTBEAT, version)
        body = build(
            mod.ShareGroupHeartbeatRequest,
            group_id=self.group_id,
            member_id=self.member_id or str(uuid.uuid4()),
            member_epoch=-1 if leave else self.member_epoch,
            rack_id=None,
            subscribed_topic_names=tuple(self.topics) if self.member_epoch == 0 and not leave else None,
        )
        answer = await conn.request(ApiKey.SHARE_GROUP_HEARTBEAT, version, body)
        if leave:
            return
        if answer.error_code in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
            self.member_epoch = 0  # rejoin
            return
        if answer.error_code != ErrorCode.none:
            raise kafka_error(answer.error_code, answer.error_message, context=f"share group {self.group_id!r}")
        if answer.member_id:
            self.member_id = answer.member_id
        self.member_epoch = answer.member_epoch
        self._heartbeat_ms = max(100, round(answer.heartbeat_interval.total_seconds() * 1000))
        if answer.assignment is not None:
            assigned = set()
            for tp in answer.assignment.topic_partitions:
                name = self._names.get(tp.topic_id)
                if name is not None:
                    assigned.update(TopicPartition(name, int(p)) for p in tp.partitions)
            if assigned != self._assigned:
                self._assigned = assigned
                self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self._heartbeat_ms / 1000)
            await self._heartbeat_once()

    # -- fetching -------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while True:
            self._renewals()
            if not self._assigned or self._ready:
                # Nothing to fetch for, or the application is busy with delivered
                # records: only send its answers (and renewals) meanwhile.
                if self._acks:
                    for node in self._nodes_with_acks():
                        await self._acknowledge(node)
                    continue
                self._wake = trio.Event()
                with trio.move_on_after(0.1):
                    await self._wake.wait()
                continue
            by_node: dict[int, list[TopicPartition]] = defaultdict(list)
            for tp in sorted(self._assigned):
                by_node[self._cluster.leader(tp.topic, tp.partition)].append(tp)
            async with trio.open_nursery() as nursery:
                for node, tps in by_node.items():
                    nursery.start_soon(self._fetch, node, tps)

    def _nodes_with_acks(self) -> list[int]:
        return sorted({self._cluster.leader(tp.topic, tp.partition) for tp in self._acks})

    def _answer(self, message: QueueMessage, kind: int) -> None:
        if message._answered:
            raise LogbrokerError(f"{message!r} was already answered")
        if self._closed and kind != RELEASE:
            raise ClientClosedError("the queue consumer is closed")
        message._answered = True
        r = message.record
        tp = TopicPartition(r.topic, r.partition)
        self._held.pop((tp, r.offset), None)
        self._acks[tp].append((r.offset, kind))
        self._wake.set()

    def _renewals(self) -> None:
        if not self.lock_renew:
            return
        due = trio.current_time() - self._lock_timeout_ms / 3000  # renew at a third: slack for slow rounds
        for (tp, offset), message in self._held.items():
            if message._delivered_at <= due:
                message._delivered_at = trio.current_time()
                self._acks[tp].append((offset, RENEW))

    def _take_acks(self, tps) -> dict[TopicPartition, list]:
        taken = {}
        for tp in tps:
            pending = self._acks.pop(tp, None)
            if pending:
                taken[tp] = _ranges(pending)
        return taken

    async def _fetch(self, node: int, tps: list[TopicPartition]) -> None:
        conn = await self._cluster.connection(node)
        version = conn.version(ApiKey.SHARE_FETCH)
        self._renewals()
        acks = self._take_acks(tps)
        if version < 2:  # Renew needs v2
            acks = {tp: [b for b in batches if b[2] != (RENEW,)] for tp, batches in acks.items()}
        mod = request_module(ApiKey.SHARE_FETCH, version)
        epoch = self._session_epochs.get(node, 0)
        by_topic: dict[str, list] = defaultdict(list)
        for tp in tps:
            batches = tuple(
                build(mod.AcknowledgementBatch, first_offset=a, last_offset=b, acknowledge_types=types)
                for a, b, types in acks.get(tp, ())
            )
            by_topic[tp.topic].append(build(mod.FetchPartition, partition_index=tp.partition,
                                            acknowledgement_batches=batches))
        wait = _BRIEF_POLL_MS if self._held or self._acks else self.max_wait_ms
        body = build(
            mod.ShareFetchRequest,
            group_id=self.group_id,
            member_id=self.member_id,
            share_session_epoch=epoch,
            max_wait=wait,
            min_bytes=1,
            max_bytes=50 * 1024 * 1024,
            max_records=self.max_records,
            batch_size=self.max_records,
            topics=tuple(build(mod.FetchTopic, topic_id=self._ids[t], partitions=tuple(ps))
                         for t, ps in by_topic.items()),
            forgotten_topics_data=(),
        )
        answer = await conn.request(ApiKey.SHARE_FETCH, version, body, extra_timeout_ms=wait)
        if answer.error_code in (ErrorCode.share_session_not_found, ErrorCode.invalid_share_session_epoch):
            self._session_epochs.pop(node, None)  # open a new session next time
            return
        if answer.error_code != ErrorCode.none:
            raise kafka_error(answer.error_code, answer.error_message, context="ShareFetch")
        self._session_epochs[node] = epoch + 1 if epoch < 2**31 - 1 else 1
        self._lock_timeout_ms = max(1000, round(answer.acquisition_lock_timeout.total_seconds() * 1000))
        for topic in answer.responses:
            name = self._names.get(topic.topic_id)
            for part in topic.partitions:
                if part.error_code != ErrorCode.none:
                    log.warning("ShareFetch %s[%d]: %s", name, part.partition_index, part.error_code.name)
                    continue
                if part.acquired_records and part.records:
                    self._deliver(name, part.partition_index, part.records, part.acquired_records)

    def _deliver(self, topic: str, partition: int, records, acquired) -> None:
        ranges = [(int(a.first_offset), int(a.last_offset), int(a.delivery_count)) for a in acquired]
        tp = TopicPartition(topic, partition)
        for batch in decode_batches(bytes(records)):
            if batch.header.is_control:
                continue
            for r in batch.records:
                for first, last, count in ranges:
                    if first <= r.offset <= last:
                        record = ConsumerRecord(topic, partition, r.offset, r.timestamp, r.key, r.value, r.headers)
                        message = QueueMessage(record, count, self)
                        self._held[(tp, r.offset)] = message
                        self._ready.append(message)
                        break
        self._data.set()

    async def _acknowledge(self, node: int, *, close: bool = False) -> None:
        epoch = self._session_epochs.get(node, 0)
        if epoch == 0:
            return  # no session yet: the answers ride on the first ShareFetch
        conn = await self._cluster.connection(node)
        version = conn.version(ApiKey.SHARE_ACKNOWLEDGE)
        mod = request_module(ApiKey.SHARE_ACKNOWLEDGE, version)
        tps = [tp for tp in list(self._acks) if self._cluster.leader(tp.topic, tp.partition) == node]
        by_topic: dict[str, list] = defaultdict(list)
        for tp, batches in self._take_acks(tps).items():
            rows = tuple(
                build(mod.AcknowledgementBatch, first_offset=a, last_offset=b, acknowledge_types=types)
                for a, b, types in batches if version >= 2 or types != (RENEW,)
            )
            if rows:
                by_topic[tp.topic].append(build(mod.AcknowledgePartition, partition_index=tp.partition,
                                                acknowledgement_batches=rows))
        body = build(mod.ShareAcknowledgeRequest, group_id=self.group_id, member_id=self.member_id,
                     share_session_epoch=-1 if close else epoch,
                     topics=tuple(build(mod.AcknowledgeTopic, topic_id=self._ids[t], partitions=tuple(ps))
                                  for t, ps in by_topic.items()))
        answer = await conn.request(ApiKey.SHARE_ACKNOWLEDGE, version, body)
        if close:
            self._session_epochs.pop(node, None)
        elif answer.error_code == ErrorCode.none:
            self._session_epochs[node] = epoch + 1 if epoch < 2**31 - 1 else 1
        else:
            self._session_epochs.pop(node, None)
            log.warning("ShareAcknowledge: %s", answer.error_code.name)

    # -- the application side ------------------------------------------------------------

    def __aiter__(self) -> QueueConsumer:
        return self

    async def __anext__(self) -> QueueMessage:
        return await self.get()

    async def get(self) -> QueueMessage:
        """The next delivered record (waits for one).

        :raises KafkaError: the group or a fetch failed for good.
        """
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise ClientClosedError("the queue consumer is closed")
            self._data = trio.Event()
            self._wake.set()
            await self._data.wait()
        return self._ready.popleft()


def _ranges(pending: list[tuple[int, int]]) -> list[tuple[int, int, tuple[int, ...]]]:
    """Offsets and their answer types as AcknowledgementBatch rows: consecutive
    offsets with one type share a row; renewals go last so a record answered
    since its renewal was queued is not renewed after its answer."""
    latest: dict[int, int] = {}
    for offset, kind in pending:
        if kind != RENEW or offset not in latest:
            latest[offset] = kind
    rows: list[tuple[int, int, tuple[int, ...]]] = []
    for offset in sorted(latest):
        kind = latest[offset]
        if rows and rows[-1][1] == offset - 1 and rows[-1][2] == (kind,):
            rows[-1] = (rows[-1][0], offset, (kind,))
        else:
            rows.append((offset, offset, (kind,)))
    return rows



class SyncQueueMessage:
    """A blocking view of a :class:`QueueMessage`."""

    __slots__ = ("_message", "_loop")

    def __init__(self, message: QueueMessage, loop) -> None:
        self._message = message
        self._loop = loop

    def __repr__(self) -> str:
        return f"Sync{self._message!r}"

    def __getattr__(self, name: str):
        return getattr(self._message, name)

    def ack(self, timeout: float | None = None) -> None:
        self._loop.call(self._message.ack, timeout=timeout)

    def release(self, timeout: float | None = None) -> None:
        self._loop.call(self._message.release, timeout=timeout)

    def reject(self, timeout: float | None = None) -> None:
        self._loop.call(self._message.reject, timeout=timeout)


class SyncQueueConsumer:
    """:class:`QueueConsumer` for code that is not async: a trio loop in a thread.

    ``for msg in queue: ...; msg.ack()``; :meth:`get` takes ``timeout=`` (seconds)
    and raises KafkaTimeoutError when nothing arrives in time.
    """

    def __init__(self, bootstrap: str | None, topics: list[str] | str, *, group_id: str, **options: Any) -> None:
        from .sync import _LoopThread

        self._client = QueueConsumer(bootstrap, topics, group_id=group_id, **options)
        self._loop = _LoopThread(self._client, "logbroker-queue")

    def __repr__(self) -> str:
        return f"<SyncQueueConsumer {self._client!r}>"

    def __enter__(self) -> SyncQueueConsumer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def get(self, timeout: float | None = None) -> SyncQueueMessage:
        return SyncQueueMessage(self._loop.call(self._client.get, timeout=timeout), self._loop)

    def __iter__(self):
        while True:
            yield self.get()

    def close(self, timeout: float | None = None) -> None:
        """Release unanswered records, leave the group and stop the loop thread."""
        self._loop.stop(timeout)
