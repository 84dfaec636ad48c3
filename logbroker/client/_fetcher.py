"""The consumer's fetching half: positions found, one Fetch in flight per leader, answers queued.

:class:`Fetcher` is a mixin of :class:`~logbroker.client.Consumer` (the
consumer's state is shared; this is where it is filled). ``_fetch_loop``
finds positions that are missing (committed offsets, then the reset
policy) and starts a fetch task per leader for every partition that has a
position, is not paused, and has less than ``prefetch_bytes`` waiting to be
read. Answers become :class:`Chunk` objects queued for the reader; nothing
is decoded here. Under read_committed a chunk keeps its answer's aborted
transactions, which the decoder needs to drop their batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
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

from . import _wire
from ._errors import kafka_error
from ._offsets import list_offsets
from .types import ConsumerRecord, TopicPartition

__all__ = ["Chunk", "Fetcher", "PartitionState"]

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


class PartitionState:
    """What the consumer tracks for one assigned partition."""

    __slots__ = ("tp", "position", "fetch_offset", "epoch", "paused", "buffered", "in_flight", "reset",
                 "high_watermark", "log_start_offset", "max_bytes", "retry_at", "committed")

    def __init__(self, tp: TopicPartition, max_bytes: int) -> None:
        self.tp = tp
        self.position: int | None = None  # next offset for the application; None = to be found
        self.fetch_offset: int | None = None
        self.epoch = 0
        self.paused = False
        self.buffered = 0
        self.in_flight = False
        self.reset: int | None = None  # pending ListOffsets target (timestamp, LATEST, EARLIEST)
        self.high_watermark = -1
        self.log_start_offset = -1
        self.max_bytes = max_bytes
        self.retry_at = 0.0
        self.committed = -1  # last offset committed by this consumer

    def seek(self, offset: int) -> None:
        self.position = self.fetch_offset = offset
        self.epoch += 1
        self.reset = None
        self.retry_at = 0.0

    def __repr__(self) -> str:
        return (f"<PartitionState {self.tp.topic}[{self.tp.partition}] position={self.position} "
                f"fetch={self.fetch_offset} buffered={self.buffered} paused={self.paused}>")


class Chunk:
    """One partition's records from one Fetch answer: raw batches, decoded on demand."""

    __slots__ = ("state", "epoch", "data", "next_offset", "records", "aborted")

    def __init__(self, state: PartitionState, epoch: int, data: bytes | None, next_offset: int,
                 records: list[ConsumerRecord] | None = None,
                 aborted: tuple[tuple[int, int], ...] | None = None) -> None:
        self.state = state
        self.epoch = epoch
        self.data = data
        self.next_offset = next_offset
        self.records = records
        self.aborted = aborted  # read_committed: (producer id, first offset) of aborted transactions


class Fetcher:
    """The fetching half of the consumer (a mixin; see the module docstring)."""

    async def _fetch_loop(self) -> None:
        assert self._cluster is not None
        while True:
            self._fetch_wake = trio.Event()
            now = trio.current_time()
            unresolved = [s for s in self._assigned.values() if s.fetch_offset is None and s.retry_at <= now]
            if unresolved:
                try:
                    await self._resolve_positions(unresolved)
                except (KafkaError, ClientClosedError, NoOffsetError) as exc:
                    if self._closed:
                        return
                    self._report(exc)
                    for s in unresolved:
                        s.retry_at = trio.current_time() + self.config.backoff(3)
                continue
            next_wake = self._start_fetches(now)
            if self._need_metadata or (self._cluster.stale and self._assigned):
                self._need_metadata = False
                with contextlib.suppress(KafkaError):
                    await self._cluster.refresh({tp.topic for tp in self._assigned})
                continue
            with trio.move_on_after(max(0.0, next_wake - now) if not math.isinf(next_wake) else math.inf):
                await self._fetch_wake.wait()

    def _start_fetches(self, now: float) -> float:
        """Start a Fetch for each leader with fetchable partitions; return the next retry time."""
        assert self._cluster is not None and self._nursery is not None
        plans: dict[int, list[PartitionState]] = {}
        held: set[int] = set()  # nodes with partitions waiting only for the application to read
        next_wake = math.inf
        prefetch = self.config.prefetch_bytes
        for state in self._assigned.values():
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
        assert self._cluster is not None
        c = self.config
        epochs = {s.tp: (s, s.epoch, s.fetch_offset) for s in states}
        try:
            by_topic: dict[str, list[tuple[int, int, int]]] = {}
            for s in states:
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
                    self._report(exc)
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
                if state.epoch != epoch or self._assigned.get(state.tp) is not state:
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
                    added = True
                elif code == ErrorCode.offset_out_of_range:
                    if self._reset_target is None:
                        self._report(FetchOffsetOutOfRangeError(
                            f"{state.tp} offset {offset} is out of range and auto_offset_reset is 'none'",
                            code=ErrorCode.offset_out_of_range))
                        state.retry_at = trio.current_time() + 1.0
                    else:
                        log.info("%s: offset %d out of range; resetting to %s", state.tp, offset,
                                 self.config.auto_offset_reset)
                        state.fetch_offset = None
                        state.reset = self._reset_target
                        state.epoch += 1
                elif code in _REFRESH_CODES:
                    self._backoff([state], refresh=True)
                elif code == ErrorCode.corrupt_message:
                    self._report(CorruptRecordError(
                        f"{state.tp.topic}[{state.tp.partition}] at offset {offset}: the broker found the batch "
                        f"there damaged (CORRUPT_MESSAGE); seek past it or have the broker's data repaired",
                        code=ErrorCode.corrupt_message))
                    state.retry_at = trio.current_time() + _CORRUPT_RETRY_S
                else:
                    self._report(kafka_error(code, context=f"fetch {state.tp.topic}[{state.tp.partition}]"))
                    self._backoff([state])
        if added:
            self._data_ready.set()

    async def _resolve_positions(self, states: list[PartitionState]) -> None:
        """Find positions: committed offsets first (with a group), then the reset policy."""
        assert self._cluster is not None
        need_committed = [s for s in states if s.reset is None and s.position is None]
        if need_committed and self._group is not None:
            committed = await self._group.fetch_committed([s.tp for s in need_committed])
            for s in need_committed:
                offset = committed.get(s.tp, -1)
                if offset >= 0:
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
                s = self._assigned.get(tp)
                if s is not None and s.fetch_offset is None:
                    s.seek(answer.offset if answer.offset >= 0 else 0)
        if missing:
            for s in missing:
                s.retry_at = math.inf  # until seek()
            raise NoOffsetError(
                f"no committed offset for {', '.join(f'{s.tp.topic}[{s.tp.partition}]' for s in missing)} "
                "and auto_offset_reset is 'none'; seek() first"
            )
        self._fetch_wake.set()
