"""Connection limits (docs/operations.md, "Connection limits").

:class:`ConnectionLimits` owns the counts of open connections: in all, per
client address and, on a SASL listener, not yet authenticated per address.
A connection beyond ``max.connections``, ``max.connections.per.ip`` or
``max.unauthenticated.connections.per.ip`` is refused (the server closes it as
soon as it is accepted); refusals are logged at most once a second, and the end
of a burst by :meth:`ConnectionLimits.log_refusals`, which the idle watchdog
calls on every tick.
"""

from __future__ import annotations

import logging
import math

import trio

from logbroker.broker import BrokerConfig
from logbroker.server.metrics import Metrics

log = logging.getLogger("logbroker.server")


class ConnectionLimits:
    """Counts connections and refuses those beyond the configured limits.
    Used from the trio thread only."""

    def __init__(self, config: BrokerConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.connections = 0
        self._per_host: dict[str, int] = {}
        self._unauthenticated_per_host: dict[str, int] = {}  # SASL listeners: not logged in yet
        self._refused = 0  # connections refused since the last log line about them
        self._refusal_reason = ""
        self._refusal_logged_at = -math.inf

    def __repr__(self) -> str:
        return (f"ConnectionLimits(connections={self.connections}, hosts={len(self._per_host)}, "
                f"unauthenticated={sum(self._unauthenticated_per_host.values())})")

    def admit(self, host: str, *, unauthenticated: bool) -> bool:
        """Count a new connection from ``host`` (also as not authenticated yet if
        ``unauthenticated``), or refuse it: False, logged and counted."""
        config = self.config
        if self.connections >= config.max_connections:
            self._refuse(host, f"max.connections={config.max_connections} reached")
            return False
        per_host = self._per_host.get(host, 0)
        if per_host >= config.max_connections_per_ip:
            self._refuse(host, f"max.connections.per.ip={config.max_connections_per_ip} reached")
            return False
        if unauthenticated:
            count = self._unauthenticated_per_host.get(host, 0)
            limit = config.max_unauthenticated_connections_per_ip
            if count >= limit:
                self._refuse(host, f"max.unauthenticated.connections.per.ip={limit} reached")
                return False
            self._unauthenticated_per_host[host] = count + 1
        self._per_host[host] = per_host + 1
        self.connections += 1
        return True

    def authenticated(self, host: str) -> None:
        """A connection from ``host`` admitted as unauthenticated logged in or
        closed: it no longer counts against ``max.unauthenticated.connections.per.ip``.
        Call once per such connection."""
        _decrement(self._unauthenticated_per_host, host)

    def release(self, host: str) -> None:
        """A connection admitted from ``host`` closed."""
        _decrement(self._per_host, host)
        self.connections -= 1

    def _refuse(self, host: str, why: str) -> None:
        """Count a connection refused by a limit; log at most one line a second."""
        self._refused += 1
        self._refusal_reason = f"the latest from {host}: {why}"
        if self.metrics is not None:
            self.metrics.connections_refused += 1
        now = trio.current_time()
        if now - self._refusal_logged_at >= 1:
            log.warning("refused %d connection(s), the latest from %s: %s", self._refused, host, why)
            self._refused = 0
            self._refusal_logged_at = now

    def log_refusals(self, now: float) -> None:
        """Log the refusals not logged yet once a burst of them ended (a second
        after the last line about them)."""
        if self._refused and now - self._refusal_logged_at >= 1:
            log.warning("refused %d more connection(s) (%s)", self._refused, self._refusal_reason)
            self._refused, self._refusal_logged_at = 0, now


def _decrement(counts: dict[str, int], host: str) -> None:
    left = counts[host] - 1
    if left:
        counts[host] = left
    else:
        del counts[host]
