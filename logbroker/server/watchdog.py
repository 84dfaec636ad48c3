"""The idle watchdog: one task closes the connections that waited too long.

A connection registers a :class:`Watch` and only stores timestamps in it on
its hot path (since when it waits for its peer, whether that wait is a send).
:meth:`Watchdog.run` passes over the watches every tenth of
``connections.max.idle.ms`` (at most every second) and cancels the scope of a
connection whose peer sent nothing while it owed no response, or took no
response bytes, for ``connections.max.idle.ms``; on a SASL listener also of a
connection not authenticated by its ``login_deadline``
(``sasl.authentication.timeout.ms``). A connection is closed at most one tick late.

Cancelling takes effect where the connection waits for its peer. A request
that arrives in the very tick the limit passes is read, and the connection is
closed before it is answered (as with Kafka, the client retries it on a new
connection).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from logbroker.broker import BrokerConfig


class Watch:
    """What :class:`Watchdog` needs of one connection: since when it has waited
    for its peer (``math.inf`` while it handles a request), whether that wait is
    a send, whether it waits for its next request (shutdown closes it then), by
    when it must have authenticated (``math.inf`` once it has, or when the
    listener has no SASL), and the scope to cancel to close it."""

    __slots__ = ("scope", "host", "since", "sending", "awaiting_request", "login_deadline", "expired")

    def __init__(self, scope: trio.CancelScope, host: str) -> None:
        self.scope = scope
        self.host = host
        self.since = math.inf
        self.sending = False
        self.awaiting_request = False
        self.login_deadline = math.inf
        # Why the watchdog cancelled the scope: "idle", "not reading" or "not authenticated".
        self.expired: str | None = None

    def __repr__(self) -> str:
        return (f"<Watch host={self.host} since={self.since} sending={self.sending} "
                f"awaiting_request={self.awaiting_request} login_deadline={self.login_deadline} "
                f"expired={self.expired}>")


class Watchdog:
    """Holds one :class:`Watch` per open connection and closes the expired ones."""

    def __init__(self, config: BrokerConfig, *, on_tick: Callable[[float], None] | None = None) -> None:
        self.config = config
        self._watches: set[Watch] = set()
        self._on_tick = on_tick  # called with trio.current_time() on every pass

    def __repr__(self) -> str:
        return f"Watchdog(connections={len(self._watches)})"

    def add(self, watch: Watch) -> None:
        self._watches.add(watch)

    def discard(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def close_awaiting(self) -> None:
        """Close the connections waiting for their next request (shutdown); the
        others finish the request they handle first."""
        for watch in list(self._watches):
            if watch.awaiting_request:
                watch.scope.cancel()

    def tick_seconds(self) -> float:
        idle_s = self.config.connections_max_idle_ms / 1000
        login_s = self.config.sasl_authentication_timeout_ms / 1000 if self.config.requires_sasl else math.inf
        return min(1.0, idle_s / 10 if idle_s > 0 else 1.0, login_s / 10)

    async def run(self) -> None:
        """Pass over the connections every :meth:`tick_seconds` until cancelled."""
        idle_s = self.config.connections_max_idle_ms / 1000
        tick = self.tick_seconds()
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            if self._on_tick is not None:
                self._on_tick(now)
            self.expire(now, now - idle_s if idle_s > 0 else -math.inf)

    def expire(self, now: float, too_old: float) -> None:
        """Cancel the connections not authenticated by ``now`` or waiting for
        their peer since before ``too_old``."""
        for watch in self._watches:
            if watch.expired is not None:
                continue
            if watch.login_deadline <= now:
                watch.expired = "not authenticated"
                watch.scope.cancel()
            elif watch.since <= too_old:
                watch.expired = "not reading" if watch.sending else "idle"
                watch.scope.cancel()
