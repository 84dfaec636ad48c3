"""Replay a range of a topic's history across its partitions, then stop.

``start`` and ``stop`` are offsets (the same for every partition) or
datetimes (each partition's first offset at or after that time, by
ListOffsets). ``stop`` is exclusive; None means "the end as of now". Both
are clamped to what the log holds when the replay begins, so a replay never
waits for records that do not exist yet: it ends once every partition
reached its stop offset. Records come in fetch order: in offset order
within a partition, interleaved across partitions.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from ._offsets import list_offsets, timestamp_ms
from .types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from .consumer import Consumer

__all__ = ["Replay", "replay"]


class Replay:
    """An async iterator over ``topic``'s records in [start, stop) of each partition.

    Made by :meth:`Consumer.replay`; it takes over the consumer's manual
    assignment (``assign()``), so the consumer must not be subscribed, and
    unassigns everything once it is exhausted.
    ``bounds`` (after the first record is asked for) maps each partition to
    its (start, stop) offsets.
    """

    def __init__(
        self,
        consumer: Consumer,
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
            cluster = self._consumer._cluster
            assert cluster is not None
            answers = await list_offsets(cluster, {tp: timestamp_ms(point) for tp in tps})
            return {tp: (answers[tp].offset if answers[tp].offset >= 0 else end[tp]) for tp in tps}
        return {tp: int(point) for tp in tps}

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> ConsumerRecord:
        if not self._prepared:
            await self._prepare()
        while True:
            if self._index < len(self._buffer):
                record = self._buffer[self._index]
                self._index += 1
                return record
            if not self._active:
                if self._prepared is True:
                    self._prepared = "done"
                    self._consumer.assign([])  # hand the consumer back without leftovers
                raise StopAsyncIteration
            await self._refill()

    async def _refill(self) -> None:
        consumer = self._consumer
        consumer._finish_current()  # past trailing control batches of the last fetch
        self._retire_finished()
        if not self._active:
            return
        records = await consumer._read_chunk()
        keep = []
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            bound = self.bounds.get(tp)
            if bound is not None and tp in self._active and record.offset < bound[1]:
                keep.append(record)
        self._buffer = keep
        self._index = 0
        self._retire_finished()

    def _retire_finished(self) -> None:
        """Partitions whose position reached their stop offset are done (and paused)."""
        consumer = self._consumer
        for tp in list(self._active):
            state = consumer._assigned.get(tp)
            if state is None or (state.position is not None and state.position >= self.bounds[tp][1]):
                self._active.discard(tp)
                if state is not None:
                    consumer.pause(tp)


@contextlib.asynccontextmanager
async def replay(
    bootstrap: str,
    topic: str,
    *,
    start: int | datetime.datetime = 0,
    stop: int | datetime.datetime | None = None,
    partitions: Iterable[int] | None = None,
    **options: Any,
) -> AsyncIterator[Replay]:
    """``async with replay(bootstrap, topic, start=..., stop=...) as records: async for r in records``.

    Opens a consumer of its own (no group; ``options`` go to it) for the
    duration of the block.
    """
    from .consumer import Consumer

    options.setdefault("enable_auto_commit", False)
    async with Consumer(bootstrap, **options) as consumer:
        yield consumer.replay(topic, start=start, stop=stop, partitions=partitions)
