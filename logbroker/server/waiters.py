"""Wake long-polling fetches the moment one of their partitions grows."""

from __future__ import annotations

from collections.abc import Iterable

import trio


class AppendWaiters:
    """Map (topic, partition) -> events of the fetches waiting on it."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, int], set[trio.Event]] = {}
        self._all: set[trio.Event] = set()  # includes fetches watching no partition

    def __repr__(self) -> str:
        return f"AppendWaiters(partitions={len(self._waiting)})"

    def register(self, partitions: Iterable[tuple[str, int]]) -> trio.Event:
        event = trio.Event()
        self._all.add(event)
        for tp in partitions:
            self._waiting.setdefault(tp, set()).add(event)
        return event

    def unregister(self, partitions: Iterable[tuple[str, int]], event: trio.Event) -> None:
        self._all.discard(event)
        for tp in partitions:
            waiting = self._waiting.get(tp)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[tp]

    def notify(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            waiting = self._waiting.get(tp)
            if waiting:
                for event in waiting:
                    event.set()

    def notify_all(self) -> None:
        for event in self._all:
            event.set()
