"""The consumer's subscription state: which partitions it consumes and where it stands in each.

:class:`SubscriptionState` is the one owner of the per-partition state of a
consumer (:class:`PartitionState`: the position handed to the application,
the fetch offset, a pending offset reset, pausing, the last committed offset,
the bytes fetched but not read). The consumer, its fetcher, its group member
(through the consumer's :class:`PartitionOwner` interface) and a replay all
use it through its methods. It knows nothing of the network or of trio.

The lower interfaces the consumer's parts need of each other live here too,
so that no module has to import the consumer: :class:`PartitionOwner` (what
a group member asks of its consumer) and :class:`CommittedOffsets` (what the
fetcher asks of a group member).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from .types import TopicPartition

__all__ = ["CommittedOffsets", "PartitionOwner", "PartitionState", "SubscriptionState"]


class PartitionOwner(Protocol):
    """What a group member needs of its consumer (the consumer implements it)."""

    async def revoke_partitions(self, partitions: set[TopicPartition], *, lost: bool = False) -> None:
        """Stop consuming ``partitions``: commit them first (auto-commit, unless ``lost``), call on_revoke."""

    async def take_partitions(self, added: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        """Consume ``assigned`` from now on; ``added`` are the new ones (on_assign)."""

    def report_error(self, error: BaseException) -> None:
        """Hand ``error`` to the application (the next read raises it)."""


class CommittedOffsets(Protocol):
    """Where a consumer's committed offsets come from (its group member)."""

    async def fetch_committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Committed offsets of ``partitions`` (-1 for none)."""
        ...


class PartitionState:
    """What the consumer tracks for one assigned partition.

    ``position`` is the next offset for the application (None: to be found),
    ``fetch_offset`` the next one to fetch; ``epoch`` grows at every seek, reset
    and revocation, so that data fetched before it is recognised as stale.
    """

    __slots__ = ("tp", "position", "fetch_offset", "epoch", "paused", "buffered", "in_flight", "reset",
                 "high_watermark", "log_start_offset", "max_bytes", "retry_at", "committed")

    def __init__(self, tp: TopicPartition, max_bytes: int) -> None:
        self.tp = tp
        self.position: int | None = None
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
        """Read and fetch from ``offset`` on; what was fetched before becomes stale."""
        self.position = self.fetch_offset = offset
        self.epoch += 1
        self.reset = None
        self.retry_at = 0.0

    def request_reset(self, target: int) -> None:
        """Find the position again with ListOffsets ``target``; fetched data becomes stale."""
        self.fetch_offset = None
        self.reset = target
        self.epoch += 1

    def advance(self, offset: int) -> None:
        """The application read up to ``offset`` (exclusive), past records or control batches."""
        if self.position is None or offset > self.position:
            self.position = offset

    def __repr__(self) -> str:
        return (f"<PartitionState {self.tp.topic}[{self.tp.partition}] position={self.position} "
                f"fetch={self.fetch_offset} buffered={self.buffered} paused={self.paused}>")


class SubscriptionState:
    """The assigned partitions of one consumer and their :class:`PartitionState`.

    Not thread-safe (the consumer's trio loop only). Partitions are kept in
    the order they were assigned.
    """

    def __init__(self, max_partition_bytes: int) -> None:
        self._assigned: dict[TopicPartition, PartitionState] = {}
        self._max_bytes = max_partition_bytes

    def __repr__(self) -> str:
        return f"<SubscriptionState assigned={len(self._assigned)} paused={len(self.paused())}>"

    def __len__(self) -> int:
        return len(self._assigned)

    def __contains__(self, tp: object) -> bool:
        return tp in self._assigned

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(list(self._assigned.values()))

    # -- assignment ---------------------------------------------------------------------

    def partitions(self) -> set[TopicPartition]:
        return set(self._assigned)

    def topics(self) -> set[str]:
        return {tp.topic for tp in self._assigned}

    def add(self, partitions: Iterable[TopicPartition]) -> None:
        """Start tracking ``partitions`` (those already tracked keep their state)."""
        for tp in partitions:
            if tp not in self._assigned:
                self._assigned[tp] = PartitionState(tp, self._max_bytes)

    def drop(self, tp: TopicPartition) -> PartitionState | None:
        """Stop tracking ``tp``; return its state (its epoch bumped: its fetched data is stale)."""
        state = self._assigned.pop(tp, None)
        if state is not None:
            state.epoch += 1
        return state

    def get(self, tp: TopicPartition) -> PartitionState | None:
        return self._assigned.get(tp)

    def state(self, tp: TopicPartition | tuple[str, int]) -> PartitionState:
        """The state of ``tp``.

        :raises KeyError: ``tp`` is not assigned.
        """
        state = self._assigned.get(TopicPartition(*tp))
        if state is None:
            raise KeyError(f"{tp} is not assigned to this consumer")
        return state

    def is_current(self, state: PartitionState, epoch: int) -> bool:
        """True if ``state`` is still assigned and was not seeked, reset or revoked since ``epoch``."""
        return state.epoch == epoch and self._assigned.get(state.tp) is state

    # -- positions ----------------------------------------------------------------------

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset for the application, None if unknown or ``tp`` is not assigned."""
        state = self._assigned.get(tp)
        return None if state is None else state.position

    def unresolved(self, now: float) -> list[PartitionState]:
        """Partitions without a fetch offset whose retry time has come."""
        return [s for s in self._assigned.values() if s.fetch_offset is None and s.retry_at <= now]

    def to_commit(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Positions of ``partitions`` (default: all) that moved since this consumer last committed them."""
        states = self._assigned.values() if partitions is None else \
            [self._assigned[tp] for tp in partitions if tp in self._assigned]
        return {s.tp: s.position for s in states if s.position is not None and s.position != s.committed}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record that ``offsets`` were committed (for the partitions still assigned)."""
        for tp, offset in offsets.items():
            state = self._assigned.get(tp)
            if state is not None:
                state.committed = offset

    # -- pausing ------------------------------------------------------------------------

    def pause(self, tp: TopicPartition | tuple[str, int]) -> PartitionState:
        state = self.state(tp)
        state.paused = True
        return state

    def resume(self, tp: TopicPartition | tuple[str, int]) -> PartitionState:
        state = self.state(tp)
        state.paused = False
        return state

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._assigned.items() if s.paused}
