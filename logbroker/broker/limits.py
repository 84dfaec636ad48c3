"""Bounds on what one request or one second of requests may make the broker do.

Auto-creation turns a cheap, possibly unauthenticated Metadata request into
directories, files and descriptors; :class:`AutoCreateLimiter` caps it per
request and per second (a token bucket refilled at ``per_second``, holding at
most ``per_second`` tokens). Time is a parameter, in milliseconds.
"""

from __future__ import annotations

import logging

from logbroker.errors import ThrottledError

log = logging.getLogger("logbroker.broker")

_LOG_EVERY_MS = 10_000


class AutoCreateLimiter:
    """How many topics may still be auto-created, now and in this request."""

    class Request:
        """One request's allowance; :meth:`take` raises ThrottledError once spent."""

        def __init__(self, limiter: AutoCreateLimiter, allowance: int) -> None:
            self._limiter = limiter
            self._left = allowance

        def take(self, now_ms: int) -> None:
            if self._left <= 0:
                self._limiter.refused(now_ms, "request")
                raise ThrottledError(
                    f"one request may auto-create at most {self._limiter.per_request} topics "
                    f"(auto.create.topics.max.per.request); create them with CreateTopics instead"
                )
            self._limiter.take(now_ms)
            self._left -= 1

    def __init__(self, per_request: int, per_second: int) -> None:
        self.per_request = per_request
        self.per_second = per_second
        self._tokens = float(per_second)
        self._updated_ms: int | None = None
        self._refused = 0
        self._logged_ms: int | None = None

    def request(self) -> AutoCreateLimiter.Request:
        return AutoCreateLimiter.Request(self, self.per_request)

    def take(self, now_ms: int) -> None:
        """Spend one token; ThrottledError (nothing spent) when none is left."""
        if self._updated_ms is not None:
            elapsed = max(0, now_ms - self._updated_ms)
            self._tokens = min(float(self.per_second), self._tokens + elapsed * self.per_second / 1000)
        self._updated_ms = now_ms
        if self._tokens < 1:
            self.refused(now_ms, "second")
            raise ThrottledError(
                f"the broker auto-creates at most {self.per_second} topics per second "
                f"(auto.create.topics.max.per.second); try again later"
            )
        self._tokens -= 1

    def refused(self, now_ms: int, which: str) -> None:
        """Count a refusal; log at most one line per 10 s with the count since the last."""
        self._refused += 1
        if self._logged_ms is None or now_ms - self._logged_ms >= _LOG_EVERY_MS:
            log.warning(
                "refused to auto-create %d topic(s): the per-%s limit was reached "
                "(auto.create.topics.max.per.request=%d, auto.create.topics.max.per.second=%d)",
                self._refused, which, self.per_request, self.per_second,
            )
            self._refused = 0
            self._logged_ms = now_ms
