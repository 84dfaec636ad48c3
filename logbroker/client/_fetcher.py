"""The consumer's fetcher: positions found, one Fetch in flight per leader, answers queued.

:class:`Fetcher` is held by :class:`~logbroker.client.Consumer` and works on
the consumer's :class:`~._subscription.SubscriptionState`. :meth:`Fetcher.run`
finds positions that are missing (committed offsets from the group member,
then the reset policy) and starts a fetch task per leader for every partition
that has a position, is not paused, and has less than ``prefetch_bytes``
waiting to be read. Answers become :class:`Chunk` objects queued for the
reader (:meth:`Fetcher.take`); nothing is decoded here. Under read_committed
a chunk keeps its answer's aborted transactions, which the decoder needs to
drop their batches. Errors for the application wait in the same queue and
are raised by the next :meth:`Fetcher.take`.

Taking a chunk releases its bytes from the partition's prefetch budget and
wakes the loop, so the next Fetch is on its way while the application reads
the chunk just taken.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import trio

from logbroker.errors import (
    ClientClosedError,
    CorruptRecordError,
    FetchOffsetOutOfRangeError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoOffsetError,
)
from logbroker.protocol import ApiKey, ErrorCode
from logbroker.records import iter_batches
from logbroker.records.decoder import RecordColumns

from . import _wire
from ._errors import kafka_error
from ._offsets import list_offsets
from ._subscription import CommittedOffsets, PartitionState, SubscriptionState
from .cluster import Cluster
from .config import ConsumerConfig
from .types import TopicPartition

__all__ = ["Chunk", "Fetcher"]

log = logging.getLogger("logbroker.client.consumer")

_REFRESH_CODES = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.leader_not_available,
        ErrorCode.fenced_leader_epoch,
        ErrorCode.unknown_leader_epoch,
        ErrorCode.kafka_storage_error,
        ErrorCode.replica_not_available,
    }
)
_HELD_MAX_WAIT_MS = 20
_CORRUPT_RETRY_S = 1.0  # a damaged batch stays damaged until a repair: report it about once a second


class Chunk:
    """One partition's records from one Fetch answer: raw batches, decoded on demand."""

    __slots__ = ("state", "epoch", "data", "next_offset", "columns", "aborted")

    def __init__(self, state: PartitionState, epoch: int, data: bytes | None, next_offset: int,
                 columns: RecordColumns | None = None,
                 aborted: tuple[tuple[int, int], ...] | None = None) -> None:
        self.state = state
        self.epoch = epoch
        self.data = data  # None for the decoded rest of a chunk put aside by pause()
        self.next_offset = next_offset
        self.columns = columns
        self.aborted = aborted  # read_committed: (producer id, first offset) of aborted transactions

    def __repr__(self) -> str:
        size = len(self.data) if self.data is not None else 0
        return f"<Chunk {self.state.tp} epoch={self.epoch} bytes={size} next_offset={self.next_offset}>"


class Fetcher:
    """Fetches for one consumer (see the module docstring). Driven by :meth:`run`."""

    def __init__(self, config: ConsumerConfig, cluster: Cluster, subscription: SubscriptionState, *,
                 reset_target: int | None) -> None:
        self.config = config
        self.group: CommittedOffsets | None = None  # set by the consumer once it has a group member
        self._cluster = cluster
        self._subscription = subscription
        self._isolation = 1 if config.isolation_level == "read_committed" else 0
        self._reset_target = reset_target
        self._chunks: deque[Chunk] = deque()
        self._parked: list[Chunk] = []
        # Errors with the count of chunks queued before them: an error about a fetch is
        # raised after the records fetched before it (the application sees a partition's
        # records up to a damaged batch, then the error), not ahead of them.
        self._errors: deque[tuple[int, BaseException]] = deque()
        self._queued = 0  # chunks ever queued
        self._taken = 0  # chunks ever taken off the queue
        self._data_ready = trio.Event()
        self._fetch_wake = trio.Event()
        self._fetching_nodes: set[int] = set()
        self._need_metadata = False
        self._closed = False
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return (f"<Fetcher chunks={len(self._chunks)} parked={len(self._parked)} "
                f"fetching={sorted(self._fetching_nodes)} closed={self._closed}>")

    @property
    def buffered_chunks(self) -> int:
        return len(self._chunks) + len(self._parked)

    # -- what the consumer asks -------------------------------------------------------------

    def wake(self) -> None:
        """Look for partitions to fetch now (assignment, seek, resume or room changed)."""
        self._fetch_wake.set()

    def report(self, error: BaseException, *, after_queued: bool = True) -> None:
        """Hand an error to the application: :meth:`take` raises it once the chunks
        queued before it are taken (``after_queued``), or at its next call."""
        self._errors.append((self._queued if after_queued else self._taken, error))
        self._data_ready.set()

    def close(self) -> None:
        """Stop reporting errors; wake a reader waiting in :meth:`wait`."""
        self._closed = True
        self._data_ready.set()

    def take(self) -> Chunk | None:
        """The next chunk to read, None if none is queued. Stale chunks (a seek, reset or
        revocation since the fetch) are dropped; chunks of paused partitions are put aside.

        :raises BaseException: an error reported since the last call.
        """
        errors = self._errors
        subscription = self._subscription
        while self._chunks:
            if errors and errors[0][0] <= self._taken:
                raise errors.popleft()[1]
            chunk = self._chunks.popleft()
            self._taken += 1
            state = chunk.state
            current = subscription.is_current(state, chunk.epoch)
            if state.paused and current:
                self._parked.append(chunk)  # still counts as buffered
                continue
            if chunk.data is not None:
                state.buffered -= len(chunk.data)
                self._fetch_wake.set()
            if current:
                return chunk
        if errors:
            raise errors.popleft()[1]
        return None

    async def wait(self) -> None:
        """Wait until a chunk or an error is queued (or the fetcher is closed)."""
        if self._chunks or self._errors or self._closed:
            return
        self._data_ready = trio.Event()
        self._fetch_wake.set()
        await self._data_ready.wait()

    def put_aside(self, chunk: Chunk) -> None:
        """Keep ``chunk`` (of a paused partition) until its partition is resumed."""
        self._parked.append(chunk)

    def resumed(self, states: Iterable[PartitionState]) -> None:
        """``states`` were resumed: their chunks put aside are read first again."""
        ids = {id(s) for s in states}
        back = [c for c in self._parked if id(c.state) in ids]
        self._parked = [c for c in self._parked if id(c.state) not in ids]
        self._chunks.extendleft(reversed(back))
        self._taken -= len(back)  # to be taken again
        if back:
            self._data_ready.set()
        self._fetch_wake.set()

    def dropped(self, state: PartitionState) -> None:
        """``state`` is no longer assigned: forget the chunks put aside for it."""
        self._parked = [c for c in self._parked if c.state is not state]

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Resolve positions and fetch until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._fetch_loop()

    async def _fetch_loop(self) -> None:
        while True:
            self._fetch_wake = trio.Event()
            now = trio.current_time()
            unresolved = self._subscription.unresolved(now)
            if unresolved:
                try:
                    await self.resolve_positions(unresolved)
                except (KafkaError, ClientClosedError, NoOffsetError) as exc:
                    if self._closed:
                        return
                    self.report(exc)
                    for s in unresolved:
                        s.retry_at = trio.current_time() + self.config.backoff(3)
                continue
            next_wake = self._start_fetches(now)
            if self._need_metadata or (self._cluster.stale and len(self._subscription)):
                self._need_metadata = False
                try:
                    await self._cluster.refresh(self._subscription.topics())
                except ClientClosedError:
                    return
                except KafkaError as exc:
                    if not exc.retriable:  # a refused login: the application must hear of it
                        self.report(exc)
                    self._need_metadata = True
                    await trio.sleep(self.config.backoff(3))  # not a busy loop while no broker answers
                continue
            with trio.move_on_after(max(0.0, next_wake - now) if not math.isinf(next_wake) else math.inf):
                await self._fetch_wake.wait()

    def _start_fetches(self, now: float) -> float:
        """Start a Fetch for each leader with fetchable partitions; return the next retry time."""
        assert self._nursery is not None
        plans: dict[int, list[PartitionState]] = {}
        held: set[int] = set()  # nodes with partitions waiting only for the application to read
        next_wake = math.inf
        prefetch = self.config.prefetch_bytes
        for state in self._subscription:
            if state.paused or state.in_flight or state.fetch_offset is None:
                continue
            if state.buffered >= prefetch:
                held.add(self._cluster.leader(state.tp.topic, state.tp.partition))
                continue
            if state.retry_at > now:
                next_wake = min(next_wake, state.retry_at)
                continue
            node = self._cluster.leader(state.tp.topic, state.tp.partition)
            if node < 0:
                self._need_metadata = True
                state.retry_at = now + self.config.backoff(1)
                next_wake = min(next_wake, state.retry_at)
                continue
            if node in self._fetching_nodes:
                continue
            plans.setdefault(node, []).append(state)
        for node, states in plans.items():
            self._fetching_nodes.add(node)
            for s in states:
                s.in_flight = True
            # A long poll would keep the held partitions waiting on this node's one
            # connection after the application made room: poll briefly instead.
            max_wait = min(self.config.fetch_max_wait_ms, _HELD_MAX_WAIT_MS) if node in held \
                else self.config.fetch_max_wait_ms
            self._nursery.start_soon(self._fetch, node, states, max_wait)
        return next_wake

    async def _fetch(self, node: int, states: list[PartitionState], max_wait_ms: int) -> None:
        c = self.config
        epochs: dict[TopicPartition, tuple[PartitionState, int, int]] = {}
        try:
            by_topic: dict[str, list[tuple[int, int, int]]] = {}
            for s in states:
                assert s.fetch_offset is not None  # _start_fetches plans only partitions with one
                epochs[s.tp] = (s, s.epoch, s.fetch_offset)
                by_topic.setdefault(s.tp.topic, []).append((s.tp.partition, s.fetch_offset, s.max_bytes))
            try:
                conn = await self._cluster.connection(node, "fetch")
                version = conn.version(ApiKey.FETCH)
                body = _wire.fetch_request(
                    version, max_wait_ms=max_wait_ms, min_bytes=c.fetch_min_bytes,
                    max_bytes=c.fetch_max_bytes, isolation_level=self._isolation, partitions=by_topic,
                )
                answer = await conn.request(ApiKey.FETCH, version, body, extra_timeout_ms=max_wait_ms)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                if not self._closed:
                    log.debug("fetch from node %d failed: %s", node, exc)
                self._backoff(states, refresh=True)
                return
            except (KafkaError, ClientClosedError) as exc:
                if not self._closed:
                    self.report(exc)
                self._backoff(states)
                return
            top = getattr(answer, "error_code", ErrorCode.none)
            if top != ErrorCode.none:
                self._backoff(states, refresh=True)
                return
            self._take(answer, epochs)
        finally:
            self._fetching_nodes.discard(node)
            for s in states:
                s.in_flight = False
            self._fetch_wake.set()

    def _backoff(self, states: list[PartitionState], *, refresh: bool = False) -> None:
        at = trio.current_time() + self.config.backoff(2)
        for s in states:
            s.retry_at = at
        if refresh:
            self._need_metadata = True

    def _take(self, answer: Any, epochs: dict[TopicPartition, tuple[PartitionState, int, int]]) -> None:
        """Queue the records of a Fetch answer; handle per-partition errors."""
        added = False
        for topic in answer.responses:
            name = topic.topic
            for p in topic.partitions:
                entry = epochs.get(TopicPartition(name, p.partition_index))
                if entry is None:
                    continue
                state, epoch, offset = entry
                if not self._subscription.is_current(state, epoch):
                    continue  # seeked or revoked meanwhile
                code = p.error_code
                if code == ErrorCode.none:
                    state.high_watermark = p.high_watermark
                    state.log_start_offset = getattr(p, "log_start_offset", -1)
                    data = p.records
                    if not data:
                        continue
                    next_offset = None
                    for _, header in iter_batches(data):
                        next_offset = header.base_offset + header.last_offset_delta + 1
                    if next_offset is None:  # one batch larger than we asked for
                        state.max_bytes = min(state.max_bytes * 2, self.config.fetch_max_bytes)
                        continue
                    if next_offset <= offset:
                        continue
                    if not isinstance(data, bytes):
                        data = bytes(data)
                    aborted = None
                    if self._isolation:
                        aborted = tuple((a.producer_id, a.first_offset) for a in p.aborted_transactions or ())
                    state.fetch_offset = next_offset
                    state.buffered += len(data)
                    self._chunks.append(Chunk(state, epoch, data, next_offset, aborted=aborted))
                    self._queued += 1
                    added = True
                elif code == ErrorCode.offset_out_of_range:
                    if self._reset_target is None:
                        self.report(FetchOffsetOutOfRangeError(
                            f"{state.tp} offset {offset} is out of range and auto_offset_reset is 'none'",
                            code=ErrorCode.offset_out_of_range))
                        state.retry_at = trio.current_time() + 1.0
                    else:
                        log.info("%s: offset %d out of range; resetting to %s", state.tp, offset,
                                 self.config.auto_offset_reset)
                        state.request_reset(self._reset_target)
                elif code in _REFRESH_CODES:
                    self._backoff([state], refresh=True)
                elif code == ErrorCode.corrupt_message:
                    self.report(CorruptRecordError(
                        f"{state.tp.topic}[{state.tp.partition}] at offset {offset}: the broker found the batch "
                        f"there damaged (CORRUPT_MESSAGE); seek past it or have the broker's data repaired",
                        code=ErrorCode.corrupt_message))
                    state.retry_at = trio.current_time() + _CORRUPT_RETRY_S
                else:
                    self.report(kafka_error(code, context=f"fetch {state.tp.topic}[{state.tp.partition}]"))
                    self._backoff([state])
        if added:
            self._data_ready.set()

    async def resolve_positions(self, states: list[PartitionState]) -> None:
        """Find positions: committed offsets first (with a group), then the reset policy.

        :raises NoOffsetError: a partition has none and ``auto_offset_reset`` is "none".
        :raises KafkaError: the lookups failed.
        """
        need_committed = [s for s in states if s.reset is None and s.position is None]
        if need_committed and self.group is not None:
            epochs = [s.epoch for s in need_committed]
            committed = await self.group.fetch_committed([s.tp for s in need_committed])
            for s, epoch in zip(need_committed, epochs):
                offset = committed.get(s.tp, -1)
                if offset >= 0 and s.epoch == epoch:  # not if the application seeked meanwhile
                    s.seek(offset)
                    s.committed = offset
        targets = {}
        missing = []
        for s in states:
            if s.fetch_offset is not None and s.position is not None:
                continue
            target = s.reset if s.reset is not None else self._reset_target
            if target is None:
                missing.append(s)
            else:
                targets[s.tp] = target
        if targets:
            answers = await list_offsets(self._cluster, targets, isolation_level=self._isolation)
            for tp, answer in answers.items():
                found = self._subscription.get(tp)
                if found is not None and found.fetch_offset is None:
                    found.seek(answer.offset if answer.offset >= 0 else 0)
        if missing:
            for s in missing:
                s.retry_at = math.inf  # until seek()
            raise NoOffsetError(
                f"no committed offset for {', '.join(f'{s.tp.topic}[{s.tp.partition}]' for s in missing)} "
                "and auto_offset_reset is 'none'; seek() first"
            )
        self._fetch_wake.set()
