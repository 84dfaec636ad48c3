"""Replies that a later event completes: a JoinGroup waits for the other
members, a SyncGroup for the leader's assignment. No trio here: the server
turns completion into a wake-up with :meth:`Deferred.add_done_callback`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Deferred:
    """A response body (or Reply) that is not known yet. Not thread-safe."""

    __slots__ = ("_callbacks", "done", "value")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Deferred], None]] = []
        self.done = False
        self.value: Any = None

    def __repr__(self) -> str:
        return f"Deferred(done={self.done})"

    def complete(self, value: Any) -> None:
        """Set the value once; later calls are ignored (first answer wins)."""
        if self.done:
            return
        self.done = True
        self.value = value
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback: Callable[[Deferred], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    @classmethod
    def completed(cls, value: Any) -> Deferred:
        d = cls()
        d.complete(value)
        return d
