"""Replay a range of a topic's history across its partitions, then stop.

``start`` and ``stop`` are offsets (the same for every partition) or
datetimes (each partition's first offset at or after that time, by
ListOffsets). ``stop`` is exclusive; None means "the end as of now". Both
are clamped to what the log holds when the replay begins, so a replay never
waits for records that do not exist yet: it ends once every partition
reached its stop offset. Records come in fetch order: in offset order
within a partition, interleaved across partitions.

:class:`Replay` drives a consumer through :class:`ReplaySource`, the part of
the consumer's public interface it needs (so this module does not import the
consumer), and reads positions from the consumer's subscription state.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from ._subscription import SubscriptionState
from .columns import ConsumerBatch
from .types import ConsumerRecord, OffsetAndTimestamp, TopicPartition

__all__ = ["Replay", "ReplaySource"]


class ReplaySource(Protocol):
    """What a replay needs of its consumer (:class:`~logbroker.client.Consumer` implements it)."""

    @property
    def subscription_state(self) -> SubscriptionState: ...

    async def partitions_for(self, topic: str) -> list[int]: ...

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition | tuple[str, int], datetime.datetime | int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]: ...

    def assign(self, partitions: Iterable[TopicPartition]) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    async def read_chunk(self) -> ConsumerBatch: ...


class Replay:
    """An async iterator over ``topic``'s records in [start, stop) of each partition.

    Made by :meth:`Consumer.replay`; it takes over the consumer's manual
    assignment (``assign()``), so the consumer must not be subscribed, and
    unassigns everything once it is exhausted.
    ``bounds`` (after the first record is asked for) maps each partition to
    its (start, stop) offsets. :meth:`next_records` returns what one fetch
    gave at once.
    """

    def __init__(
        self,
        consumer: ReplaySource,
        topic: str,
        *,
        start: int | datetime.datetime = 0,
        stop: int | datetime.datetime | None = None,
        partitions: Iterable[int] | None = None,
    ) -> None:
        if isinstance(start, int) and start < 0:
            raise ValueError(f"start offset must be >= 0, got {start}")
        if isinstance(stop, int) and stop < 0:
            raise ValueError(f"stop offset must be >= 0, got {stop}")
        self._consumer = consumer
        self.topic = topic
        self._start = start
        self._stop = stop
        self._partitions = None if partitions is None else sorted(set(partitions))
        self.bounds: dict[TopicPartition, tuple[int, int]] = {}
        self._active: set[TopicPartition] = set()
        self._buffer: list[ConsumerRecord] = []
        self._index = 0
        self._prepared = False
        self._done = False

    def __repr__(self) -> str:
        return f"<Replay {self.topic!r} start={self._start!r} stop={self._stop!r} active={len(self._active)}>"

    async def _prepare(self) -> None:
        consumer = self._consumer
        numbers = self._partitions if self._partitions is not None else await consumer.partitions_for(self.topic)
        tps = [TopicPartition(self.topic, p) for p in numbers]
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        starts = await self._resolve(self._start, tps, end)
        stops = dict(end) if self._stop is None else await self._resolve(self._stop, tps, end)
        for tp in tps:
            lo = min(max(starts[tp], begin[tp]), end[tp])
            hi = min(max(stops[tp], lo), end[tp])
            self.bounds[tp] = (lo, hi)
            if lo < hi:
                self._active.add(tp)
        consumer.assign(sorted(self._active))
        for tp in self._active:
            consumer.seek(tp, self.bounds[tp][0])
        consumer.resume(*self._active)  # an earlier replay paused what it finished
        self._prepared = True

    async def _resolve(self, point: int | datetime.datetime, tps: list[TopicPartition],
                       end: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        if isinstance(point, datetime.datetime):
            wanted: dict[TopicPartition | tuple[str, int], datetime.datetime | int] = {tp: point for tp in tps}
            answers = await self._consumer.offsets_for_times(wanted)
            found = {tp: answers.get(tp) for tp in tps}
            return {tp: (a.offset if a is not None else end[tp]) for tp, a in found.items()}
        return {tp: int(point) for tp in tps}

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> ConsumerRecord:
        while self._index >= len(self._buffer):
            records = await self.next_records()
            if records is None:
                raise StopAsyncIteration
            self._buffer, self._index = records, 0
        record = self._buffer[self._index]
        self._index += 1
        return record

    async def next_records(self) -> list[ConsumerRecord] | None:
        """The next records in range (those already read first), at least one; None once the
        replay is exhausted (the consumer is then unassigned)."""
        if self._index < len(self._buffer):
            rest = self._buffer[self._index:]
            self._buffer, self._index = [], 0
            return rest
        if not self._prepared:
            await self._prepare()
        while True:
            self._retire_finished()
            if not self._active:
                if not self._done:
                    self._done = True
                    self._consumer.assign([])  # hand the consumer back without leftovers
                return None
            batch = await self._consumer.read_chunk()
            keep: list[ConsumerRecord] = []
            for tp, columns in batch.partitions.items():
                bound = self.bounds.get(tp)
                if bound is None or tp not in self._active:
                    continue
                inside = int(np.searchsorted(columns.offsets, bound[1]))
                records = columns.records()
                keep += records[:inside] if inside < len(records) else records
            self._retire_finished()
            if keep:
                return keep

    def _retire_finished(self) -> None:
        """Partitions whose position reached their stop offset are done (and paused)."""
        positions = self._consumer.subscription_state
        for tp in list(self._active):
            if tp not in positions:
                self._active.discard(tp)
                continue
            position = positions.position(tp)
            if position is not None and position >= self.bounds[tp][1]:
                self._active.discard(tp)
                self._consumer.pause(tp)
