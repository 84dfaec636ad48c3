"""The async consumer: assign or subscribe, fetch ahead, decode, commit.

Usage::

    async with Consumer("localhost:9092", group_id="billing", auto_offset_reset="earliest") as consumer:
        await consumer.subscribe(["invoices"])
        async for record in consumer:
            handle(record)

How it works:

* Each assigned partition has a *position* (the next offset handed to the
  application) and a *fetch offset* (the next offset to fetch). A fetch task
  per leader keeps one Fetch request in flight on the ``"fetch"`` lane, for
  every partition of that leader with less than ``prefetch_bytes`` buffered,
  so the next answer is on its way while the application reads the last.
* Answers are kept as raw batches and decoded (decompressed, CRC-checked)
  when the application reaches them; control batches and records below the
  position are skipped. ``async for``, :meth:`getone` and :meth:`getmany`
  read them in arrival order.
* A partition without a position takes its group's committed offset, else
  ``auto_offset_reset`` (earliest/latest, or an error with "none");
  OFFSET_OUT_OF_RANGE resets the same way.
* With ``subscribe`` a :class:`~logbroker.client.group.GroupMember` task
  runs the classic group protocol, or with ``group_protocol="consumer"`` a
  :class:`~logbroker.client.consumer_group_member.ConsumerGroupMember` runs
  Kafka 4's (KIP-848); auto-commit commits positions every
  ``auto_commit_interval_ms``, before partitions are revoked and on close.
* ``seek`` bumps the partition's epoch; fetched data of an older epoch is
  dropped, so nothing from before a seek is returned after it.
* ``isolation_level="read_committed"`` fetches with isolation level 1: the
  broker stops at the last stable offset and lists the aborted transactions
  of each answer, whose batches the decoder drops; control records (the
  transaction markers) are never returned under either level.
  ``end_offsets`` is then the last stable offset.

Iteration hands out records of a decoded fetch without a checkpoint, and
yields to trio every 256 records and between fetches: cancellation is seen
within that many records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from logbroker.errors import (
    ClientClosedError,
    CorruptRecordError,
    KafkaError,
    NoOffsetError,
    LogbrokerError,
)
from logbroker.protocol import ErrorCode

from ._decode import decode_for_consumer
from ._fetcher import Chunk, Fetcher, PartitionState
from ._offsets import EARLIEST, LATEST, list_offsets, timestamp_ms
from ._tasks import close_background, open_background
from .cluster import Cluster
from .config import ConsumerConfig
from .consumer_group_member import ConsumerGroupMember
from .group import GroupMember
from .types import ConsumerGroupMetadata, ConsumerRecord, OffsetAndTimestamp, TopicPartition

__all__ = ["Consumer"]

log = logging.getLogger("logbroker.client.consumer")

_YIELD_EVERY = 256


class Consumer(Fetcher):
    """An async Kafka consumer. Use as ``async with Consumer(bootstrap, **options)``.

    Options are the fields of :class:`~logbroker.client.ConsumerConfig`
    (``group_id``, ``auto_offset_reset``, ``enable_auto_commit``...).
    Background tasks (fetchers, the group member, auto-commit, connection
    readers) live in a nursery opened by ``async with``; leaving it commits
    (with auto-commit), leaves the group and closes the connections.
    """

    def __init__(self, bootstrap: str | None = None, *, config: ConsumerConfig | None = None,
                 connector=None, **options: Any) -> None:
        if config is None:
            config = ConsumerConfig.from_options(bootstrap, options)
        elif options or bootstrap is not None:
            raise TypeError("pass either config= or options, not both")
        self.config = config
        self._connector = connector
        self._isolation = 1 if config.isolation_level == "read_committed" else 0
        self._reset_target = {"earliest": EARLIEST, "latest": LATEST, "none": None}[config.auto_offset_reset]
        self._cluster: Cluster | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._group: GroupMember | ConsumerGroupMember | None = None
        self._group_task = False
        self._auto_committing = False
        self._assigned: dict[TopicPartition, PartitionState] = {}
        self._chunks: deque[Chunk] = deque()
        self._parked: list[Chunk] = []
        self._records: list[ConsumerRecord] = []
        self._index = 0
        self._current: PartitionState | None = None
        self._current_chunk: Chunk | None = None
        self._since_yield = 0
        self._data_ready = trio.Event()
        self._fetch_wake = trio.Event()
        self._fetching_nodes: set[int] = set()
        self._errors: deque[BaseException] = deque()
        self._need_metadata = False
        self._closed = False
        self._on_assign: Callable | None = None
        self._on_revoke: Callable | None = None
        self.records_returned = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._nursery else "not started"
        return (f"<Consumer {state} group={self.config.group_id!r} assigned={len(self._assigned)} "
                f"buffered_chunks={len(self._chunks)} returned={self.records_returned}>")

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Consumer:
        if self._stack is not None:
            raise RuntimeError("a Consumer can be entered only once")
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        try:
            self._nursery = await open_background(self._stack)
            self._cluster = Cluster(self.config, self._nursery, connector=self._connector,
                                    allow_auto_create=self.config.allow_auto_create_topics)
            self._nursery.start_soon(self._fetch_loop)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is None or isinstance(exc, Exception):
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self.config.request_timeout_ms / 1000):
                        await self.close()
        finally:
            self._closed = True
            assert self._stack is not None
            await close_background(self._stack, exc)
        return False

    async def close(self) -> None:
        """Commit (with auto-commit), leave the group, stop fetching. Idempotent; never raises
        for a failed final commit (it is logged)."""
        if self._closed:
            return
        self._closed = True
        if self._group is not None:
            if self.config.enable_auto_commit and (self._group.stable or not self._group.subscribed):
                try:
                    await self._commit_positions()
                except (KafkaError, ClientClosedError) as exc:
                    log.warning("final commit failed: %s", exc)
            await self._group.leave()
        self._data_ready.set()
        if self._cluster is not None:
            await self._cluster.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        if self._nursery is None:
            raise RuntimeError("use the consumer inside 'async with Consumer(...)'")

    def _report(self, error: BaseException) -> None:
        """Hand an error to the application: the next read raises it."""
        self._errors.append(error)
        self._data_ready.set()

    # -- assignment ---------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Consume exactly ``partitions`` (no group management). Replaces any previous assignment.

        :raises RuntimeError: the consumer is subscribed to topics.
        """
        self._check_usable()
        if self._group is not None and self._group.subscribed:
            raise RuntimeError("assign() cannot be used while subscribed; unsubscribe() first")
        wanted = {TopicPartition(*tp) for tp in partitions}
        for tp in set(self._assigned) - wanted:
            self._drop(tp)
        for tp in wanted - set(self._assigned):
            self._assigned[tp] = PartitionState(tp, self.config.max_partition_fetch_bytes)
        if wanted:
            self._ensure_group_member()
            self._start_auto_commit()  # assign() with a group id commits to a "simple" group
            assert self._cluster is not None
            self._cluster.add_topics(tp.topic for tp in wanted)
        self._fetch_wake.set()

    async def subscribe(
        self,
        topics: Iterable[str] = (),
        *,
        pattern: str | None = None,
        group_id: str | None = None,
        on_assign: Callable | None = None,
        on_revoke: Callable | None = None,
    ) -> None:
        """Join ``group_id`` (default: the configured one) consuming ``topics``, or with
        ``group_protocol="consumer"`` the topics whose names match ``pattern`` (a regular
        expression the broker matches against whole names, new topics included).

        ``on_assign(partitions)`` and ``on_revoke(partitions)`` (plain or
        async callables) run on every rebalance, ``on_revoke`` after the
        auto-commit of those partitions. Returns at once; the first records
        arrive once the group has assigned partitions (see :meth:`wait_assignment`).

        :raises InvalidConfigError: no group id; a pattern with the classic protocol, or
            both topics and a pattern.
        :raises RuntimeError: partitions were assigned with :meth:`assign`.
        """
        self._check_usable()
        topics = tuple(sorted(set([topics] if isinstance(topics, str) else topics)))
        if pattern is not None and (topics or self.config.group_protocol != "consumer"):
            from logbroker.errors import InvalidConfigError

            raise InvalidConfigError("subscribe(pattern=...) needs group_protocol='consumer' and no topic names")
        if group_id is not None and group_id != self.config.group_id:
            if self._group is not None:
                raise RuntimeError("the consumer already belongs to another group")
            self.config = dataclasses.replace(self.config, group_id=group_id)
        if self.config.group_id is None:
            from logbroker.errors import InvalidConfigError

            raise InvalidConfigError("subscribe() needs a group_id")
        if self._assigned and (self._group is None or not self._group.subscribed):
            raise RuntimeError("subscribe() cannot be used after assign(); assign([]) first")
        self._on_assign, self._on_revoke = on_assign, on_revoke
        member = self._ensure_group_member()
        assert member is not None and self._cluster is not None
        self._cluster.add_topics(topics)
        if isinstance(member, ConsumerGroupMember):
            member.subscribe(topics, pattern)
        else:
            member.subscribe(topics)
        if not self._group_task:
            self._group_task = True
            assert self._nursery is not None
            self._nursery.start_soon(member.run)
        self._start_auto_commit()

    def _start_auto_commit(self) -> None:
        if self.config.enable_auto_commit and self._group is not None and not self._auto_committing:
            self._auto_committing = True
            assert self._nursery is not None
            self._nursery.start_soon(self._auto_commit_loop)

    async def unsubscribe(self) -> None:
        """Stop consuming the subscribed topics; the member stays in the group with none."""
        if self._group is not None:
            self._group.subscribe(())

    async def wait_assignment(self) -> set[TopicPartition]:
        """Wait until the group has given this member its partitions; return them.

        :raises RuntimeError: not subscribed.
        """
        if self._group is None or not self._group.subscribed:
            raise RuntimeError("wait_assignment() needs subscribe()")
        while True:
            await self._group.wait_stable()
            if self._group.stable:
                return self.assignment()

    def _ensure_group_member(self) -> GroupMember | ConsumerGroupMember | None:
        if self._group is None and self.config.group_id is not None:
            assert self._cluster is not None
            member = ConsumerGroupMember if self.config.group_protocol == "consumer" else GroupMember
            self._group = member(self, self._cluster, self.config, self.config.group_id)
        return self._group

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def group_metadata(self) -> ConsumerGroupMetadata:
        """The group id, generation, member id and group instance id of this member now,
        for :meth:`Producer.send_offsets_to_transaction` (KIP-447). Outside a rebalanced
        group (``assign()`` with a group id) generation is -1 and member id "".

        :raises RuntimeError: the consumer has no group id.
        """
        group = self._ensure_group_member() if not self._closed else self._group
        if group is None:
            raise RuntimeError("group_metadata() needs a group_id")
        subscribed = group.subscribed
        return ConsumerGroupMetadata(
            group_id=group.group_id,
            generation_id=group.generation if subscribed else -1,
            member_id=group.member_id if subscribed else "",
            group_instance_id=self.config.group_instance_id if subscribed else None,
        )

    def subscription(self) -> set[str]:
        return set(self._group.topics) if self._group is not None else set()

    # -- what a group member drives (classic GroupMember, ConsumerGroupMember) ----------

    async def take_partitions(self, added: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        """The group gave this consumer ``assigned`` (``added`` are new): fetch them, call on_assign."""
        await self._assign_from_group(added, assigned)

    async def revoke_partitions(self, partitions: set[TopicPartition], *, lost: bool = False) -> None:
        """The group takes ``partitions`` away: commit them (with auto-commit; not when ``lost``,
        i.e. the member was fenced and its commits would be refused), call on_revoke, stop fetching."""
        if lost:
            if self._on_revoke is not None:
                await _call(self._on_revoke, set(partitions))
            for tp in partitions:
                self._drop(tp)
            return
        await self._revoke(partitions)

    def report_error(self, error: BaseException) -> None:
        """Hand ``error`` to the application: the next read raises it."""
        self._report(error)

    async def _assign_from_group(self, added: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        for tp in set(self._assigned) - assigned:
            self._drop(tp)
        for tp in added:
            if tp not in self._assigned:
                self._assigned[tp] = PartitionState(tp, self.config.max_partition_fetch_bytes)
        self._fetch_wake.set()
        if self._on_assign is not None:
            await _call(self._on_assign, set(added))

    async def _revoke(self, partitions: set[TopicPartition]) -> None:
        if self.config.enable_auto_commit:
            try:
                await self._commit_positions(partitions)
            except (KafkaError, ClientClosedError) as exc:
                log.info("commit before revoking %d partitions failed: %s", len(partitions), exc)
        if self._on_revoke is not None:
            await _call(self._on_revoke, set(partitions))
        for tp in partitions:
            self._drop(tp)

    def _drop(self, tp: TopicPartition) -> None:
        state = self._assigned.pop(tp, None)
        if state is None:
            return
        state.epoch += 1  # in-flight answers and buffered chunks become stale
        if self._current is state:
            self._records = []
            self._index = 0
            self._current = None
        self._parked = [c for c in self._parked if c.state is not state]

    # -- positions ---------------------------------------------------------------------

    def _state(self, tp: TopicPartition | tuple[str, int]) -> PartitionState:
        state = self._assigned.get(TopicPartition(*tp))
        if state is None:
            raise KeyError(f"{tp} is not assigned to this consumer")
        return state

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Make ``offset`` the next offset returned for ``tp``.

        :raises KeyError: ``tp`` is not assigned.
        :raises ValueError: a negative offset.
        """
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        state = self._state(tp)
        state.seek(offset)
        if self._current is state:
            self._records = []
            self._index = 0
            self._current = None
        self._fetch_wake.set()

    async def _seek_to(self, target: int, partitions: tuple) -> None:
        states = [self._state(tp) for tp in partitions] if partitions else list(self._assigned.values())
        if not states:
            return
        assert self._cluster is not None
        answers = await list_offsets(self._cluster, {s.tp: target for s in states}, isolation_level=self._isolation)
        ends = None
        for s in states:
            offset = answers[s.tp].offset
            if offset < 0:  # no record at or after the timestamp: the end
                if ends is None:
                    ends = await self.end_offsets([x.tp for x in states])
                offset = ends[s.tp]
            if s.tp in self._assigned:
                self.seek(s.tp, offset)

    async def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Seek ``partitions`` (default: all assigned) to their log start offsets."""
        await self._seek_to(EARLIEST, partitions)

    async def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Seek ``partitions`` (default: all assigned) to their high watermarks."""
        await self._seek_to(LATEST, partitions)

    async def seek_to_time(self, when: datetime.datetime | int, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Seek ``partitions`` (default: all) to the first record at or after ``when``
        (an aware datetime, or epoch ms); the end where there is none."""
        await self._seek_to(timestamp_ms(when), partitions)

    async def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The next offset that will be returned for ``tp`` (found first if unknown).

        :raises NoOffsetError: no committed offset and ``auto_offset_reset="none"``.
        """
        state = self._state(tp)
        if state.position is None:
            await self._resolve_positions([state])
            if state.position is None:
                raise NoOffsetError(f"{state.tp} has no committed offset and auto_offset_reset is 'none'")
        return state.position

    async def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp``, None if there is none.

        :raises RuntimeError: the consumer has no group id.
        """
        if self._ensure_group_member() is None:
            raise RuntimeError("committed() needs a group_id")
        assert self._group is not None
        tp = TopicPartition(*tp)
        offset = (await self._group.fetch_committed([tp]))[tp]
        return offset if offset >= 0 else None

    async def commit(self, offsets: Mapping[TopicPartition | tuple[str, int], int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read, per partition) or, by default, every
        assigned partition's position; returns once the coordinator accepted them.
        If cancelled, the commit may or may not have been applied.

        :raises CommitFailedError: the group rebalanced; the partitions may have moved.
        :raises RuntimeError: the consumer has no group id.
        :raises KafkaError: another error.
        """
        self._check_usable()
        if self._ensure_group_member() is None:
            raise RuntimeError("commit() needs a group_id")
        if offsets is None:
            await self._commit_positions()
            return
        normalized = {TopicPartition(*tp): off for tp, off in offsets.items()}
        assert self._group is not None
        await self._group.commit(normalized)
        for tp, off in normalized.items():
            if tp in self._assigned:
                self._assigned[tp].committed = off

    async def _commit_positions(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        states = [self._assigned[tp] for tp in partitions if tp in self._assigned] if partitions is not None \
            else list(self._assigned.values())
        offsets = {s.tp: s.position for s in states if s.position is not None and s.position != s.committed}
        if not offsets or self._group is None:
            return
        await self._group.commit(offsets)  # type: ignore[arg-type]
        for s in states:
            if s.tp in offsets:
                s.committed = offsets[s.tp]  # type: ignore[assignment]

    async def _auto_commit_loop(self) -> None:
        interval = self.config.auto_commit_interval_ms / 1000
        while not self._closed:
            await trio.sleep(interval)
            if self._group is None or (self._group.subscribed and not self._group.stable):
                continue  # a rebalance is under way: the revoke commits
            try:
                await self._commit_positions()
            except (KafkaError, ClientClosedError) as exc:
                log.info("auto-commit failed: %s", exc)

    def pause(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Stop fetching and returning records of ``partitions`` until :meth:`resume`."""
        for tp in partitions:
            state = self._state(tp)
            state.paused = True
            if self._current is state and self._index < len(self._records):
                self._parked.append(Chunk(state, state.epoch, None, -1, self._records[self._index:]))
                self._records = []
                self._index = 0
                self._current = None

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Fetch and return records of ``partitions`` again."""
        resumed = set()
        for tp in partitions:
            state = self._state(tp)
            state.paused = False
            resumed.add(id(state))
        back = [c for c in self._parked if id(c.state) in resumed]
        self._parked = [c for c in self._parked if id(c.state) not in resumed]
        self._chunks.extendleft(reversed(back))
        if back:
            self._data_ready.set()
        self._fetch_wake.set()

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._assigned.items() if s.paused}

    async def beginning_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        """Log start offset of each partition."""
        assert self._cluster is not None
        answers = await list_offsets(self._cluster, {TopicPartition(*tp): EARLIEST for tp in partitions})
        return {tp: a.offset for tp, a in answers.items()}

    async def end_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        """High watermark (last offset + 1) of each partition; under read_committed the
        last stable offset (the first offset of the oldest open transaction, else the high watermark)."""
        assert self._cluster is not None
        answers = await list_offsets(self._cluster, {TopicPartition(*tp): LATEST for tp in partitions},
                                     isolation_level=self._isolation)
        return {tp: a.offset for tp, a in answers.items()}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition | tuple[str, int], datetime.datetime | int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset with a timestamp at or after the given one (None: none)."""
        assert self._cluster is not None
        answers = await list_offsets(
            self._cluster, {TopicPartition(*tp): timestamp_ms(ts) for tp, ts in timestamps.items()},
            isolation_level=self._isolation,
        )
        return {tp: (a if a.offset >= 0 else None) for tp, a in answers.items()}

    async def partitions_for(self, topic: str) -> list[int]:
        """Partition numbers of ``topic``.

        :raises UnknownTopicOrPartitionError: it does not exist in time.
        """
        self._check_usable()
        assert self._cluster is not None
        info = await self._cluster.topic(topic)
        return [p.partition for p in info.partitions]

    async def topics(self) -> set[str]:
        """Every topic name the cluster knows (internal ones left out)."""
        self._check_usable()
        assert self._cluster is not None
        meta = await self._cluster.refresh(all_topics=True)
        return {name for name, info in meta.topics.items() if not info.internal and not info.error_code}

    # -- reading --------------------------------------------------------------------------

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        i = self._index
        records = self._records
        if i < len(records) and self._since_yield < _YIELD_EVERY:
            self._index = i + 1
            self._since_yield += 1
            record = records[i]
            self._current.position = record.offset + 1  # type: ignore[union-attr]
            self.records_returned += 1
            return record
        try:
            return await self.getone()
        except ClientClosedError:
            raise StopAsyncIteration from None

    async def getone(self) -> ConsumerRecord:
        """Wait for and return the next record. Cancelling the wait loses nothing: the
        position only moves past records that were returned.

        :raises KafkaError: a fetch or group error (reported once).
        :raises NoOffsetError: a partition has no offset and ``auto_offset_reset="none"``.
        :raises ClientClosedError: the consumer is closed.
        """
        self._since_yield = 0
        await trio.lowlevel.checkpoint()
        while self._index >= len(self._records):
            await self._next_chunk()
        record = self._records[self._index]
        self._index += 1
        self._current.position = record.offset + 1  # type: ignore[union-attr]
        self.records_returned += 1
        return record

    async def getmany(self, max_records: int | None = None) -> list[ConsumerRecord]:
        """Wait for records and return those of the current fetch (at most ``max_records``).

        :raises: as :meth:`getone`.
        """
        self._since_yield = 0
        await trio.lowlevel.checkpoint()
        while self._index >= len(self._records):
            await self._next_chunk()
        start = self._index
        end = len(self._records) if max_records is None else min(len(self._records), start + max_records)
        batch = self._records[start:end]
        self._index = end
        self._current.position = batch[-1].offset + 1  # type: ignore[union-attr]
        self.records_returned += len(batch)
        return batch

    async def _read_chunk(self) -> list[ConsumerRecord]:
        """The rest of the current fetch's records, or [] after consuming a chunk without any
        (control batches only): the position moved, so callers that stop at an offset can look."""
        self._since_yield = 0
        await trio.lowlevel.checkpoint()
        if self._index >= len(self._records) and not await self._next_chunk(allow_empty=True):
            return []
        batch = self._records[self._index:]
        self._index = len(self._records)
        self._current.position = batch[-1].offset + 1  # type: ignore[union-attr]
        self.records_returned += len(batch)
        return batch

    async def _next_chunk(self, *, allow_empty: bool = False) -> bool:
        """Make the next non-empty chunk current, waiting for fetches as needed.

        Returns True; with ``allow_empty``, False after a chunk without records.
        """
        self._finish_current()
        while True:
            if self._errors:
                raise self._errors.popleft()
            if self._closed:
                raise ClientClosedError("the consumer is closed")
            while self._chunks:
                chunk = self._chunks.popleft()
                state = chunk.state
                stale = chunk.epoch != state.epoch or self._assigned.get(state.tp) is not state
                if state.paused and not stale:
                    self._parked.append(chunk)  # still counts as buffered
                    continue
                if chunk.data is not None:
                    state.buffered -= len(chunk.data)
                    self._fetch_wake.set()
                if stale:
                    continue
                records = chunk.records if chunk.records is not None else self._decode(chunk)
                if records:
                    self._records = records
                    self._index = 0
                    self._current = state
                    self._current_chunk = chunk
                    return True
                if chunk.next_offset > (state.position or 0):
                    state.position = chunk.next_offset
                if allow_empty:
                    return False
            self._data_ready = trio.Event()
            self._fetch_wake.set()
            await self._data_ready.wait()

    def _finish_current(self) -> None:
        """The current chunk is read: move the position past any trailing control batches."""
        chunk = self._current_chunk
        if chunk is not None:
            state = chunk.state
            if chunk.epoch == state.epoch and state.position is not None and chunk.next_offset > state.position:
                state.position = chunk.next_offset
            self._current_chunk = None
        self._records = []
        self._index = 0
        self._current = None

    def _decode(self, chunk: Chunk) -> list[ConsumerRecord]:
        state = chunk.state
        start = state.position or 0
        try:
            return decode_for_consumer(chunk.data, state.tp.topic, state.tp.partition, start,  # type: ignore[arg-type]
                                       chunk.aborted)
        except LogbrokerError as exc:  # CorruptBatchError, CompressionError
            self._report(CorruptRecordError(f"{state.tp.topic}[{state.tp.partition}] at offset {start}: {exc}",
                                            code=ErrorCode.corrupt_message))
            return []

    # -- replay -----------------------------------------------------------------------------

    def replay(
        self,
        topic: str,
        *,
        start: int | datetime.datetime = 0,
        stop: int | datetime.datetime | None = None,
        partitions: Iterable[int] | None = None,
    ):
        """Read a range of ``topic``'s history across its partitions; see :class:`~logbroker.client.Replay`."""
        from .replay import Replay

        return Replay(self, topic, start=start, stop=stop, partitions=partitions)


async def _call(fn: Callable, arg: Any) -> None:
    result = fn(arg)
    if inspect.isawaitable(result):
        await result
