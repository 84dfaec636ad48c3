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
partition leader (on a connection of its own: closing never waits behind a
long poll), carrying the acknowledgements made since the last request, and
hands the acquired records to the application. While records are
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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import trio

from logbroker.errors import ClientClosedError, LogbrokerError
from logbroker.protocol import ApiKey, ErrorCode
from logbroker.records import decode_batches

from . import _wire_share
from ._errors import kafka_error
from ._tasks import leaves
from ._wire import error_name
from ._wire_share import ACCEPT, REJECT, RELEASE, RENEW, AckRow, AcquiredRange
from .cluster import Cluster
from .config import ClientConfig
from .connection import Connection
from .types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from .sync import _LoopThread

__all__ = ["QueueConsumer", "QueueMessage"]

log = logging.getLogger("logbroker.client")

_BRIEF_POLL_MS = 50
_MAX_FETCH_BYTES = 50 * 1024 * 1024


class QueueMessage:
    """One delivered record and its answer: :meth:`ack`, :meth:`release` or :meth:`reject`.

    A message is answered once; its consumer sends the answer and owns the
    record's lock (renewals, release on close).
    """

    __slots__ = ("record", "delivery_count", "_answer", "_answered")

    def __init__(self, record: ConsumerRecord, delivery_count: int,
                 answer: Callable[[QueueMessage, int], None]) -> None:
        self.record = record
        self.delivery_count = delivery_count
        self._answer = answer
        self._answered = False

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
    def headers(self) -> tuple[tuple[str, bytes | None], ...]:
        return self.record.headers

    @property
    def answered(self) -> bool:
        """True once :meth:`ack`, :meth:`release` or :meth:`reject` succeeded."""
        return self._answered

    @property
    def offset(self) -> int:
        return self.record.offset

    async def ack(self) -> None:
        """Processed: never deliver it again.

        :raises LogbrokerError: it was already answered.
        :raises ClientClosedError: the consumer is closed (only release is allowed then).
        """
        self._settle(ACCEPT)
        await trio.lowlevel.checkpoint()

    async def release(self) -> None:
        """Not processed: deliver it again (to anyone) now. :raises: as :meth:`ack`."""
        self.release_nowait()
        await trio.lowlevel.checkpoint()

    def release_nowait(self) -> None:
        """:meth:`release` without yielding: closing releases every held record in
        one step, so no other task runs (and no fetch re-acquires one) in between."""
        self._settle(RELEASE)

    async def reject(self) -> None:
        """Unprocessable: archive it (and copy it to the dead-letter topic, if any). :raises: as :meth:`ack`."""
        self._settle(REJECT)
        await trio.lowlevel.checkpoint()

    def _settle(self, kind: int) -> None:
        if self._answered:
            raise LogbrokerError(f"{self!r} was already answered")
        self._answer(self, kind)
        self._answered = True


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
        # Delivered, unanswered records and when their lock was last taken or renewed.
        self._held: dict[tuple[TopicPartition, int], QueueMessage] = {}
        self._locked_at: dict[tuple[TopicPartition, int], float] = {}
        self._ready: deque[QueueMessage] = deque()
        self._data = trio.Event()
        self._wake = trio.Event()
        self._lock_timeout_ms = 30_000
        self._cluster: Cluster | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._error: BaseException | None = None
        self._loops: trio.Nursery | None = None
        self._closed = False
        self._left = trio.Event()  # close() sent its last requests
        # Fetches in flight with acknowledgements (shielded from close), and their ends.
        self._carrying: dict[trio.CancelScope, trio.Event] = {}

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

    async def __aexit__(self, *exc_info: object) -> None:
        # Nurseries are left in the task that entered them: close() only signals.
        await self.close()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def close(self) -> None:
        """Release unanswered records, close the share sessions, leave the group.

        May be called from any task; the connections close on leaving ``async with``.
        A second call waits until the first has sent its last requests.
        """
        if self._stack is None or self._loops is None:
            return
        if self._closed:
            # Called from another task (cancelled with the loops when it is the one that
            # entered): the connections must outlive the first call's last requests.
            with trio.CancelScope(shield=True):
                await self._left.wait()
            return
        self._closed = True
        self._loops.cancel_scope.cancel()
        self._data.set()
        try:
            await self._leave()
        finally:
            self._left.set()

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; a client error ends it and is raised by :meth:`get`."""
        try:
            await loop()
        except BaseExceptionGroup as group:
            errors, rest = group.split((LogbrokerError, OSError))
            if rest is not None:
                raise rest from None
            if errors is not None:
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
            for done in list(self._carrying.values()):
                await done.wait()
            for message in list(self._held.values()):
                if not message.answered:
                    message.release_nowait()
            for node in list(self._session_epochs):
                await self._acknowledge(node, close=True)
            if self.member_id:
                await self._heartbeat_once(leave=True)
        for shield in self._carrying:  # unanswered within the time closing allows
            shield.cancel()

    # -- membership -----------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("use the queue consumer inside 'async with QueueConsumer(...)'")
        return self._cluster

    async def _coordinator(self) -> Connection:
        node = await self.cluster.coordinator(self.group_id)
        return await self.cluster.connection(node)

    async def _heartbeat_once(self, *, leave: bool = False) -> None:
        conn = await self._coordinator()
        version = conn.version(ApiKey.SHARE_GROUP_HEARTBEAT)
        body = _wire_share.share_group_heartbeat_request(
            version,
            group_id=self.group_id,
            member_id=self.member_id or str(uuid.uuid4()),
            member_epoch=-1 if leave else self.member_epoch,
            subscribed_topic_names=self.topics if self.member_epoch == 0 and not leave else None,
        )
        answer = _wire_share.parse_share_group_heartbeat(
            await conn.request(ApiKey.SHARE_GROUP_HEARTBEAT, version, body))
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
        self._heartbeat_ms = max(100, answer.heartbeat_interval_ms)
        if answer.assignment is not None:
            assigned: set[TopicPartition] = set()
            for topic_id, partitions in answer.assignment.items():
                name = self._names.get(topic_id)
                if name is not None:
                    assigned.update(TopicPartition(name, p) for p in partitions)
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
                by_node[self.cluster.leader(tp.topic, tp.partition)].append(tp)
            async with trio.open_nursery() as nursery:
                for node, tps in by_node.items():
                    nursery.start_soon(self._fetch, node, tps)

    def _nodes_with_acks(self) -> list[int]:
        return sorted({self.cluster.leader(tp.topic, tp.partition) for tp in self._acks})

    def _answer(self, message: QueueMessage, kind: int) -> None:
        """Queue ``message``'s answer (called by the message, which checks it is its first)."""
        if self._closed and kind != RELEASE:
            raise ClientClosedError("the queue consumer is closed")
        r = message.record
        tp = TopicPartition(r.topic, r.partition)
        self._held.pop((tp, r.offset), None)
        self._locked_at.pop((tp, r.offset), None)
        self._acks[tp].append((r.offset, kind))
        self._wake.set()

    def _renewals(self) -> None:
        if not self.lock_renew:
            return
        now = trio.current_time()
        due = now - self._lock_timeout_ms / 3000  # renew at a third: slack for slow rounds
        for (tp, offset), locked_at in self._locked_at.items():
            if locked_at <= due:
                self._locked_at[(tp, offset)] = now
                self._acks[tp].append((offset, RENEW))

    def _take_acks(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, list[AckRow]]:
        taken = {}
        for tp in tps:
            pending = self._acks.pop(tp, None)
            if pending:
                taken[tp] = _ranges(pending)
        return taken

    def _by_topic_id(self, acks: dict[TopicPartition, list[AckRow]], tps: Iterable[TopicPartition]
                     ) -> dict[uuid.UUID, dict[int, Sequence[AckRow]]]:
        out: dict[uuid.UUID, dict[int, Sequence[AckRow]]] = defaultdict(dict)
        for tp in tps:
            out[self._ids[tp.topic]][tp.partition] = acks.get(tp, ())
        return out

    async def _fetch(self, node: int, tps: list[TopicPartition]) -> None:
        # Its own lane: the broker answers a connection's requests in order, and the
        # closing ShareAcknowledge must not wait behind a parked long poll.
        conn = await self.cluster.connection(node, "fetch")
        version = conn.version(ApiKey.SHARE_FETCH)
        self._renewals()
        acks = self._take_acks(tps)
        epoch = self._session_epochs.get(node, 0)
        wait = _BRIEF_POLL_MS if acks or self._held or self._acks else self.max_wait_ms
        body = _wire_share.share_fetch_request(
            version, group_id=self.group_id, member_id=self.member_id, session_epoch=epoch, max_wait_ms=wait,
            max_bytes=_MAX_FETCH_BYTES, max_records=self.max_records, partitions=self._by_topic_id(acks, tps))
        # Closing lets a fetch that carries acknowledgements (a brief poll) finish, and
        # releases what it brings: they must reach the broker before the session closes
        # on the other lane. One without any is abandoned: it acquires nothing once closed.
        shield = trio.CancelScope(shield=bool(acks))
        if acks:
            self._carrying[shield] = trio.Event()
        try:
            with shield:
                raw = await conn.request(ApiKey.SHARE_FETCH, version, body, extra_timeout_ms=wait)
            if shield.cancelled_caught:
                return
            self._fetched(node, epoch, _wire_share.parse_share_fetch(raw))
        finally:
            done = self._carrying.pop(shield, None)
            if done is not None:
                done.set()

    def _fetched(self, node: int, epoch: int, answer: _wire_share.ShareFetchAnswer) -> None:
        """Take in a ShareFetch answer: the session's next epoch, the acquired records."""
        if answer.error_code in (ErrorCode.share_session_not_found, ErrorCode.invalid_share_session_epoch):
            self._session_epochs.pop(node, None)  # open a new session next time
            return
        if answer.error_code != ErrorCode.none:
            raise kafka_error(answer.error_code, answer.error_message, context="ShareFetch")
        self._session_epochs[node] = epoch + 1 if epoch < 2**31 - 1 else 1
        self._lock_timeout_ms = max(1000, answer.lock_timeout_ms)
        for part in answer.partitions:
            name = self._names.get(part.topic_id)
            if part.error_code != ErrorCode.none:
                log.warning("ShareFetch %s[%d]: %s", name, part.partition, error_name(part.error_code))
                continue
            if name is not None and part.acquired and part.records:
                self._deliver(name, part.partition, part.records, part.acquired)

    def _deliver(self, topic: str, partition: int, records: bytes | memoryview,
                 acquired: Sequence[AcquiredRange]) -> None:
        tp = TopicPartition(topic, partition)
        now = trio.current_time()
        for batch in decode_batches(bytes(records)):
            if batch.header.is_control:
                continue
            for r in batch.records:
                for first, last, count in acquired:
                    if first <= r.offset <= last:
                        record = ConsumerRecord(topic, partition, r.offset, r.timestamp, r.key, r.value, r.headers)
                        message = QueueMessage(record, count, self._answer)
                        self._held[(tp, r.offset)] = message
                        self._locked_at[(tp, r.offset)] = now
                        self._ready.append(message)
                        break
        self._data.set()

    async def _acknowledge(self, node: int, *, close: bool = False) -> None:
        epoch = self._session_epochs.get(node, 0)
        if epoch == 0:
            return  # no session yet: the answers ride on the first ShareFetch
        conn = await self.cluster.connection(node)
        version = conn.version(ApiKey.SHARE_ACKNOWLEDGE)
        tps = [tp for tp in list(self._acks) if self.cluster.leader(tp.topic, tp.partition) == node]
        acks = self._take_acks(tps)
        body = _wire_share.share_acknowledge_request(
            version, group_id=self.group_id, member_id=self.member_id, session_epoch=-1 if close else epoch,
            partitions=self._by_topic_id(acks, acks))
        code = _wire_share.parse_share_acknowledge(await conn.request(ApiKey.SHARE_ACKNOWLEDGE, version, body))
        if close:
            self._session_epochs.pop(node, None)
        elif code == ErrorCode.none:
            self._session_epochs[node] = epoch + 1 if epoch < 2**31 - 1 else 1
        else:
            self._session_epochs.pop(node, None)
            log.warning("ShareAcknowledge: %s", error_name(code))

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


def _ranges(pending: list[tuple[int, int]]) -> list[AckRow]:
    """Offsets and their answer types as AcknowledgementBatch rows: consecutive
    offsets with one type share a row; renewals go last so a record answered
    since its renewal was queued is not renewed after its answer."""
    latest: dict[int, int] = {}
    for offset, kind in pending:
        if kind != RENEW or offset not in latest:
            latest[offset] = kind
    rows: list[AckRow] = []
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

    def __init__(self, message: QueueMessage, loop: _LoopThread) -> None:
        self._message = message
        self._loop = loop

    def __repr__(self) -> str:
        return f"Sync{self._message!r}"

    def __getattr__(self, name: str) -> Any:
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

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, timeout: float | None = None) -> SyncQueueMessage:
        return SyncQueueMessage(self._loop.call(self._client.get, timeout=timeout), self._loop)

    def __iter__(self) -> Iterator[SyncQueueMessage]:
        while True:
            yield self.get()

    def close(self, timeout: float | None = None) -> None:
        """Release unanswered records, leave the group and stop the loop thread."""
        self._loop.stop(timeout)
