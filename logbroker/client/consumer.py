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

Structure: the consumer holds a :class:`~._subscription.SubscriptionState`
(the assigned partitions and their positions), a :class:`~._fetcher.Fetcher`
(fetch tasks and the queue of fetched chunks) and, with a group id, a group
member; it implements :class:`~._subscription.PartitionOwner` for the member.

Reading decodes a whole fetched chunk at once into columns
(:mod:`._decode`); iteration then hands out the chunk's records without a
checkpoint, and yields to trio every 256 records and between fetches:
cancellation is seen within that many records. :meth:`Consumer.poll_batch`
returns many records as columns (numpy arrays) without making a record
object each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from itertools import islice, repeat
from types import TracebackType
from typing import Any

import numpy as np
import trio

from logbroker.errors import (
    ClientClosedError,
    CorruptRecordError,
    InvalidConfigError,
    KafkaError,
    LogbrokerError,
    NoOffsetError,
)
from logbroker.protocol import ErrorCode

from logbroker.records.decoder import RecordColumns

from ._decode import decode_chunk, records_from_columns, slices
from ._fetcher import Chunk, Fetcher
from ._offsets import EARLIEST, LATEST, list_offsets, timestamp_ms
from ._replay import Replay
from ._subscription import PartitionState, SubscriptionState
from ._tasks import close_background, open_background
from .cluster import Cluster
from .columns import ConsumerBatch, PartitionColumns
from .config import ConsumerConfig
from .consumer_group_member import ConsumerGroupMember
from .group import GroupMember
from .types import ConsumerGroupMetadata, ConsumerRecord, OffsetAndTimestamp, TopicPartition

__all__ = ["Consumer"]

log = logging.getLogger("logbroker.client.consumer")

_YIELD_EVERY = 256
_NO_ROWS: Iterator[ConsumerRecord] = iter(())
_new = tuple.__new__

PartitionCallback = Callable[[set[TopicPartition]], Awaitable[None] | None]
Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]  # opens a stream to (host, port)


class Consumer:
    """An async Kafka consumer. Use as ``async with Consumer(bootstrap, **options)``.

    Options are the fields of :class:`~logbroker.client.ConsumerConfig`
    (``group_id``, ``auto_offset_reset``, ``enable_auto_commit``...).
    Background tasks (fetchers, the group member, auto-commit, connection
    readers) live in a nursery opened by ``async with``; leaving it commits
    (with auto-commit), leaves the group and closes the connections.
    """

    def __init__(self, bootstrap: str | None = None, *, config: ConsumerConfig | None = None,
                 connector: Connector | None = None, **options: Any) -> None:
        if config is None:
            config = ConsumerConfig.from_options(bootstrap, options)
        elif options or bootstrap is not None:
            raise TypeError("pass either config= or options, not both")
        self.config = config
        self._connector = connector
        self._isolation = 1 if config.isolation_level == "read_committed" else 0
        self._reset_target = {"earliest": EARLIEST, "latest": LATEST, "none": None}[config.auto_offset_reset]
        self._subscription = SubscriptionState(config.max_partition_fetch_bytes)
        self._cluster: Cluster | None = None
        self._fetcher: Fetcher | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._group: GroupMember | ConsumerGroupMember | None = None
        self._group_task = False
        self._auto_committing = False
        # The chunk being read: its columns and partition; the next row is the first whose offset
        # is at or past the partition's position. Iteration makes records one at a time from
        # _all (all rows from some row on) through _rows, its next _YIELD_EVERY.
        self._chunk: Chunk | None = None
        self._columns: RecordColumns | None = None
        self._current: PartitionState | None = None
        self._all: Iterator[ConsumerRecord] | None = None
        self._rows: Iterator[ConsumerRecord] = _NO_ROWS
        self._returned = 0  # records handed out of chunks no longer current
        self._closed = False
        self._on_assign: PartitionCallback | None = None
        self._on_revoke: PartitionCallback | None = None

    @property
    def records_returned(self) -> int:
        """How many records this consumer has handed to the application."""
        return self._returned + self._row()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._nursery else "not started"
        buffered = self._fetcher.buffered_chunks if self._fetcher is not None else 0
        return (f"<Consumer {state} group={self.config.group_id!r} assigned={len(self._subscription)} "
                f"buffered_chunks={buffered} returned={self.records_returned}>")

    @property
    def subscription_state(self) -> SubscriptionState:
        """The assigned partitions and their positions (read them; change them through the consumer)."""
        return self._subscription

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
            self._fetcher = Fetcher(self.config, self._cluster, self._subscription, reset_target=self._reset_target)
            self._nursery.start_soon(self._fetcher.run)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
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
        if self._fetcher is not None:
            self._fetcher.close()
        if self._cluster is not None:
            await self._cluster.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _check_usable(self) -> None:
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        if self._nursery is None:
            raise RuntimeError("use the consumer inside 'async with Consumer(...)'")

    def _started(self) -> tuple[Cluster, Fetcher]:
        if self._cluster is None or self._fetcher is None:
            raise RuntimeError("use the consumer inside 'async with Consumer(...)'")
        return self._cluster, self._fetcher

    # -- assignment ---------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Consume exactly ``partitions`` (no group management). Replaces any previous assignment.

        :raises RuntimeError: the consumer is subscribed to topics.
        """
        self._check_usable()
        cluster, fetcher = self._started()
        if self._group is not None and self._group.subscribed:
            raise RuntimeError("assign() cannot be used while subscribed; unsubscribe() first")
        wanted = {TopicPartition(*tp) for tp in partitions}
        for tp in self._subscription.partitions() - wanted:
            self._drop(tp)
        self._subscription.add(sorted(wanted))
        if wanted:
            self._ensure_group_member()
            self._start_auto_commit()  # assign() with a group id commits to a "simple" group
            cluster.add_topics(tp.topic for tp in wanted)
        fetcher.wake()

    async def subscribe(
        self,
        topics: Iterable[str] = (),
        *,
        pattern: str | None = None,
        group_id: str | None = None,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
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
        names = tuple(sorted({topics} if isinstance(topics, str) else set(topics)))
        if pattern is not None and (names or self.config.group_protocol != "consumer"):
            raise InvalidConfigError("subscribe(pattern=...) needs group_protocol='consumer' and no topic names")
        if group_id is not None and group_id != self.config.group_id:
            if self._group is not None:
                raise RuntimeError("the consumer already belongs to another group")
            self.config = dataclasses.replace(self.config, group_id=group_id)
        if self.config.group_id is None:
            raise InvalidConfigError("subscribe() needs a group_id")
        if len(self._subscription) and (self._group is None or not self._group.subscribed):
            raise RuntimeError("subscribe() cannot be used after assign(); assign([]) first")
        self._on_assign, self._on_revoke = on_assign, on_revoke
        member = self._ensure_group_member()
        assert member is not None and self._cluster is not None and self._nursery is not None
        self._cluster.add_topics(names)
        if isinstance(member, ConsumerGroupMember):
            member.subscribe(names, pattern)
        else:
            member.subscribe(names)
        if not self._group_task:
            self._group_task = True
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
            cluster, fetcher = self._started()
            member = ConsumerGroupMember if self.config.group_protocol == "consumer" else GroupMember
            self._group = member(self, cluster, self.config, self.config.group_id)
            fetcher.group = self._group
        return self._group

    def assignment(self) -> set[TopicPartition]:
        return self._subscription.partitions()

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

    # -- what a group member drives (PartitionOwner) -----------------------------------

    async def take_partitions(self, added: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        """The group gave this consumer ``assigned`` (``added`` are new): fetch them, call on_assign."""
        for tp in self._subscription.partitions() - assigned:
            self._drop(tp)
        self._subscription.add(sorted(added))
        if self._fetcher is not None:
            self._fetcher.wake()
        if self._on_assign is not None:
            await _call(self._on_assign, set(added))

    async def revoke_partitions(self, partitions: set[TopicPartition], *, lost: bool = False) -> None:
        """The group takes ``partitions`` away: commit them (with auto-commit; not when ``lost``,
        i.e. the member was fenced and its commits would be refused), call on_revoke, stop fetching."""
        if self.config.enable_auto_commit and not lost:
            try:
                await self._commit_positions(partitions)
            except (KafkaError, ClientClosedError) as exc:
                log.info("commit before revoking %d partitions failed: %s", len(partitions), exc)
        if self._on_revoke is not None:
            await _call(self._on_revoke, set(partitions))
        for tp in partitions:
            self._drop(tp)

    def report_error(self, error: BaseException) -> None:
        """Hand ``error`` to the application: the next read raises it."""
        if self._fetcher is not None:
            self._fetcher.report(error, after_queued=False)

    def _drop(self, tp: TopicPartition) -> None:
        state = self._subscription.drop(tp)
        if state is None:
            return
        if self._current is state:
            self._clear_current()
        if self._fetcher is not None:
            self._fetcher.dropped(state)

    # -- positions ---------------------------------------------------------------------

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Make ``offset`` the next offset returned for ``tp``.

        :raises KeyError: ``tp`` is not assigned.
        :raises ValueError: a negative offset.
        """
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        state = self._subscription.state(tp)
        if self._current is state:
            self._clear_current()
        state.seek(offset)
        if self._fetcher is not None:
            self._fetcher.wake()

    async def _seek_to(self, target: int, partitions: tuple[TopicPartition | tuple[str, int], ...]) -> None:
        states = [self._subscription.state(tp) for tp in partitions] if partitions else list(self._subscription)
        if not states:
            return
        cluster, _ = self._started()
        answers = await list_offsets(cluster, {s.tp: target for s in states}, isolation_level=self._isolation)
        ends = None
        for s in states:
            offset = answers[s.tp].offset
            if offset < 0:  # no record at or after the timestamp: the end
                if ends is None:
                    ends = await self.end_offsets([x.tp for x in states])
                offset = ends[s.tp]
            if s.tp in self._subscription:
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
        state = self._subscription.state(tp)
        if state.position is None:
            _, fetcher = self._started()
            await fetcher.resolve_positions([state])
            if state.position is None:
                raise NoOffsetError(f"{state.tp} has no committed offset and auto_offset_reset is 'none'")
        return state.position

    async def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp``, None if there is none.

        :raises RuntimeError: the consumer has no group id.
        """
        group = self._ensure_group_member()
        if group is None:
            raise RuntimeError("committed() needs a group_id")
        tp = TopicPartition(*tp)
        offset = (await group.fetch_committed([tp]))[tp]
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
        group = self._ensure_group_member()
        if group is None:
            raise RuntimeError("commit() needs a group_id")
        if offsets is None:
            await self._commit_positions()
            return
        normalized = {TopicPartition(*tp): off for tp, off in offsets.items()}
        await group.commit(normalized)
        self._subscription.committed(normalized)

    async def _commit_positions(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        offsets = self._subscription.to_commit(partitions)
        if not offsets or self._group is None:
            return
        await self._group.commit(offsets)
        self._subscription.committed(offsets)

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
            state = self._subscription.pause(tp)
            if self._current is state and self._chunk is not None and self._columns is not None:
                row = self._row()
                if row < self._columns.count and self._fetcher is not None:
                    rest = self._columns.select(slice(row, None))
                    self._fetcher.put_aside(Chunk(state, state.epoch, None, self._chunk.next_offset, columns=rest))
                self._clear_current()  # the rest, put aside, moves the position when it is read

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Fetch and return records of ``partitions`` again."""
        states = [self._subscription.resume(tp) for tp in partitions]
        if self._fetcher is not None:
            self._fetcher.resumed(states)

    def paused(self) -> set[TopicPartition]:
        return self._subscription.paused()

    async def beginning_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        """Log start offset of each partition."""
        cluster, _ = self._started()
        answers = await list_offsets(cluster, {TopicPartition(*tp): EARLIEST for tp in partitions})
        return {tp: a.offset for tp, a in answers.items()}

    async def end_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        """High watermark (last offset + 1) of each partition; under read_committed the
        last stable offset (the first offset of the oldest open transaction, else the high watermark)."""
        cluster, _ = self._started()
        answers = await list_offsets(cluster, {TopicPartition(*tp): LATEST for tp in partitions},
                                     isolation_level=self._isolation)
        return {tp: a.offset for tp, a in answers.items()}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition | tuple[str, int], datetime.datetime | int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset with a timestamp at or after the given one (None: none)."""
        cluster, _ = self._started()
        answers = await list_offsets(
            cluster, {TopicPartition(*tp): timestamp_ms(ts) for tp, ts in timestamps.items()},
            isolation_level=self._isolation,
        )
        return {tp: (a if a.offset >= 0 else None) for tp, a in answers.items()}

    async def partitions_for(self, topic: str) -> list[int]:
        """Partition numbers of ``topic``.

        :raises UnknownTopicOrPartitionError: it does not exist in time.
        """
        self._check_usable()
        cluster, _ = self._started()
        info = await cluster.topic(topic)
        return [p.partition for p in info.partitions]

    async def topics(self) -> set[str]:
        """Every topic name the cluster knows (internal ones left out)."""
        self._check_usable()
        cluster, _ = self._started()
        meta = await cluster.refresh(all_topics=True)
        return {name for name, info in meta.topics.items() if not info.internal and not info.error_code}

    # -- reading --------------------------------------------------------------------------

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        record = next(self._rows, None)
        if record is not None:  # the fast path: the next record of the chunk, no checkpoint due
            self._current.position = record[2] + 1  # type: ignore[union-attr]  # rows exist only with a current chunk
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
        await trio.lowlevel.checkpoint()
        row = await self._next_row()
        if self._all is None:
            self._all = self._iterate(row)
        self._rows = islice(self._all, _YIELD_EVERY)
        record = next(self._rows)
        assert self._current is not None
        self._current.position = record.offset + 1
        return record

    async def getmany(self, max_records: int | None = None) -> list[ConsumerRecord]:
        """Wait for records and return those of the current fetch (at most ``max_records``).

        :raises: as :meth:`getone`.
        """
        await trio.lowlevel.checkpoint()
        row = await self._next_row()
        columns, state = self._columns, self._current
        assert columns is not None and state is not None
        end = columns.count if max_records is None else min(columns.count, row + max(1, max_records))
        batch = records_from_columns(columns.select(slice(row, end)), state.tp.topic, state.tp.partition)
        self._all, self._rows = None, _NO_ROWS
        state.position = batch[-1].offset + 1
        return batch

    async def poll_batch(self, max_records: int = 100_000) -> ConsumerBatch:
        """Wait for records and return up to ``max_records`` of them as columns (numpy arrays of
        offsets and timestamps, keys and values; see :class:`~logbroker.client.columns.ConsumerBatch`):
        what is fetched already, or the first fetch to arrive. Positions move past every record
        returned, as if each had been read with :meth:`getone`.

        The bulk path: no Python object is made per record unless keys, values of varied
        sizes or records are asked for. Cancelling the wait loses nothing. (Async APIs take
        no timeout: use ``trio.move_on_after``; the sync facade's ``poll_batch`` takes one.)

        :raises ValueError: ``max_records`` < 1.
        :raises: as :meth:`getone`.
        """
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        await trio.lowlevel.checkpoint()
        parts: dict[TopicPartition, list[RecordColumns]] = {}
        taken = 0
        while taken < max_records:
            row = await self._next_row(wait=not taken)
            columns, state = self._columns, self._current
            if row < 0 or columns is None or state is None:
                break
            end = min(columns.count, row + max_records - taken)
            part = columns if row == 0 and end == columns.count else columns.select(slice(row, end))
            parts.setdefault(state.tp, []).append(part)
            taken += end - row
            self._all, self._rows = None, _NO_ROWS
            state.position = int(part.offsets[-1]) + 1
        return ConsumerBatch({tp: PartitionColumns(tp.topic, tp.partition, p) for tp, p in parts.items()})

    async def read_chunk(self) -> ConsumerBatch:
        """The rest of the current fetched chunk of one partition (waiting for one if none is
        left), as columns; empty after a chunk without records to return (control batches,
        aborted transactions), whose position moved all the same. For readers that stop
        at an offset, such as :class:`~logbroker.client.Replay`.

        :raises: as :meth:`getone`.
        """
        await trio.lowlevel.checkpoint()
        row = await self._next_row(allow_empty=True)
        columns, state = self._columns, self._current
        if row < 0 or columns is None or state is None:
            return ConsumerBatch()
        part = columns if row == 0 else columns.select(slice(row, None))
        state.position = int(part.offsets[-1]) + 1
        self._finish_current()
        return ConsumerBatch({state.tp: PartitionColumns(state.tp.topic, state.tp.partition, [part])})

    def _row(self) -> int:
        """The current chunk's next row to hand out (0 without a chunk)."""
        columns, state = self._columns, self._current
        if columns is None or state is None or state.position is None:
            return 0
        return int(np.searchsorted(columns.offsets, state.position))

    async def _next_row(self, *, allow_empty: bool = False, wait: bool = True) -> int:
        """The next row of the current chunk, moving to the next chunk with records (waiting
        for fetches) when this one is read; -1 when :meth:`_next_chunk` returns False."""
        columns = self._columns
        if columns is not None:
            row = self._row()
            if row < columns.count:
                return row
        if not await self._next_chunk(allow_empty=allow_empty, wait=wait):
            return -1
        return self._row()

    def _iterate(self, row: int) -> Iterator[ConsumerRecord]:
        """The current chunk's records from ``row`` on, each made when it is asked for (in C:
        the rows are lists, the records come out of ``map`` over ``zip``)."""
        columns, state = self._columns, self._current
        assert columns is not None and state is not None
        if row:
            columns = columns.select(slice(row, None))
        n = columns.count
        buffer = columns.buffer
        rows = zip(repeat(state.tp.topic, n), repeat(state.tp.partition), columns.offsets.tolist(),
                   columns.timestamps.tolist(), slices(buffer, columns.key_starts, columns.key_lengths),
                   slices(buffer, columns.value_starts, columns.value_lengths),
                   columns.headers if columns.headers is not None else repeat(()))
        return map(_new, repeat(ConsumerRecord), rows)

    async def _next_chunk(self, *, allow_empty: bool = False, wait: bool = True) -> bool:
        """Make the next chunk with records current, waiting for fetches as needed.

        Returns True; False without ``wait`` when nothing is fetched, and with
        ``allow_empty`` after a chunk without records (its position moved past it).
        """
        self._finish_current()
        _, fetcher = self._started()
        while True:
            if self._closed:
                fetcher.take()  # an error reported before closing is raised first
                raise ClientClosedError("the consumer is closed")
            chunk = fetcher.take()
            if chunk is None:
                if not wait:
                    return False
                await fetcher.wait()
                continue
            state = chunk.state
            columns = chunk.columns if chunk.columns is not None else self._decode(chunk)
            if columns.count:
                self._chunk = chunk
                self._columns = columns
                self._current = state
                return True
            state.advance(chunk.next_offset)
            if allow_empty:
                return False

    def _finish_current(self) -> None:
        """The current chunk is read: move the position past any trailing control batches."""
        chunk = self._chunk
        if chunk is not None:
            state = chunk.state
            if self._subscription.is_current(state, chunk.epoch) and state.position is not None:
                state.advance(chunk.next_offset)
        self._clear_current()

    def _clear_current(self) -> None:
        self._returned += self._row()
        self._chunk = None
        self._columns = None
        self._current = None
        self._all = None
        self._rows = _NO_ROWS

    def _decode(self, chunk: Chunk) -> RecordColumns:
        state = chunk.state
        start = state.position or 0
        assert chunk.data is not None
        try:
            return decode_chunk(chunk.data, start, chunk.aborted)
        except LogbrokerError as exc:  # CorruptBatchError, CompressionError
            self.report_error(CorruptRecordError(f"{state.tp.topic}[{state.tp.partition}] at offset {start}: {exc}",
                                                 code=ErrorCode.corrupt_message))
            return decode_chunk(b"", 0)

    # -- replay -----------------------------------------------------------------------------

    def replay(
        self,
        topic: str,
        *,
        start: int | datetime.datetime = 0,
        stop: int | datetime.datetime | None = None,
        partitions: Iterable[int] | None = None,
    ) -> Replay:
        """Read a range of ``topic``'s history across its partitions; see :class:`~logbroker.client.Replay`."""
        return Replay(self, topic, start=start, stop=stop, partitions=partitions)


async def _call(fn: PartitionCallback, arg: set[TopicPartition]) -> None:
    result = fn(arg)
    if inspect.isawaitable(result):
        await result
