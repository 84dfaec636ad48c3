"""Wake long-polling fetches the moment one of their partitions grows."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio


class AppendWaiters:
    """Map (topic, partition) -> events of the fetches waiting on it, and
    fetch session id -> events of its fetches (a session of 10,000 partitions
    registers once, not 10,000 times; ``sessions_of`` says which sessions
    hold the partitions that grew)."""

    def __init__(self, sessions_of: Callable[[Iterable[tuple[str, int]]], Iterable[int]] | None = None) -> None:
        self._waiting: dict[tuple[str, int], set[trio.Event]] = {}
        self._sessions: dict[int, set[trio.Event]] = {}
        self._all: set[trio.Event] = set()  # includes fetches watching no partition
        self._sessions_of = sessions_of

    def __repr__(self) -> str:
        return f"AppendWaiters(partitions={len(self._waiting)}, sessions={len(self._sessions)})"

    def register(self, partitions: Iterable[tuple[str, int]], session: int | None = None) -> trio.Event:
        event = trio.Event()
        self._all.add(event)
        for tp in partitions:
            self._waiting.setdefault(tp, set()).add(event)
        if session is not None:
            self._sessions.setdefault(session, set()).add(event)
        return event

    def unregister(self, partitions: Iterable[tuple[str, int]], event: trio.Event, session: int | None = None) -> None:
        self._all.discard(event)
        if session is not None:
            events = self._sessions.get(session)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._sessions[session]
        for tp in partitions:
            waiting = self._waiting.get(tp)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[tp]

    def notify(self, partitions: Iterable[tuple[str, int]]) -> None:
        partitions = list(partitions)
        for tp in partitions:
            waiting = self._waiting.get(tp)
            if waiting:
                for event in waiting:
                    event.set()
        if self._sessions_of is not None:
            for session in self._sessions_of(partitions):
                for event in self._sessions.get(session, ()):
                    event.set()

    def notify_all(self) -> None:
        for event in self._all:
            event.set()
