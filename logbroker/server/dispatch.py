"""One request frame -> handler -> response buffers.

:class:`Dispatcher` decodes a frame, checks that the API and version are served
and that the connection may send it (SASL), makes the request's
:class:`~logbroker.broker.session.RequestContext`, runs the handler and then
completes its result in one place (:meth:`Dispatcher.resolve`): a
:class:`~logbroker.broker.handlers.Reply` is sent after its fsyncs, a
:class:`~logbroker.broker.handlers.FetchOperation` is attempted now and again
whenever a watched partition grows (a long poll), a
:class:`~logbroker.broker.deferred.Deferred` is waited for and then resolved
like any other result.

A long poll also ends when the connection's peer hangs up (``hung_up``, the
connection's): without an answer and without a last attempt, so a ShareFetch
parked for a client that closed its connection acquires nothing for it.

Errors, by whose doing:

* the peer's bytes or its order of requests (a malformed frame, an API it may
  not send before authenticating, a version not served that cannot be answered):
  :class:`~logbroker.errors.ProtocolError`, and the connection is closed;
* the broker's own failure (a handler raising, a response that does not
  encode): logged with its traceback and answered UNKNOWN_SERVER_ERROR where the
  response has a top-level error code (Kafka's ``getErrorResponse``); elsewhere,
  and when an fsync a response waits for fails, :class:`~logbroker.errors.InternalError`
  closes the connection (logged as an error).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

import trio

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.deferred import Deferred
from logbroker.broker.handlers import (
    SERVED_VERSIONS,
    FetchOperation,
    HandlerResult,
    Reply,
    as_result,
    dispatch,
    error_response,
    is_served,
    unsupported_version_response,
)
from logbroker.broker.handlers._result import Body, FlushPoint
from logbroker.broker.session import RequestContext, Session
from logbroker.errors import InternalError, LogbrokerError, ProtocolError, UnsupportedVersionError
from logbroker.protocol import (
    ApiKey,
    ErrorCode,
    Request,
    decode_request,
    encode_response,
    encode_unsupported_api_versions,
)
from logbroker.server.metrics import Metrics
from logbroker.server.waiters import AppendWaiters

log = logging.getLogger("logbroker.server")

Buffers = Sequence[Any]
"""Response buffers (bytes and memoryviews) in sending order."""

BeforeWait = Callable[[], Awaitable[bool]]
"""Called before a request waits: the connection sends what it holds; True if it
sent something (and so may have let other tasks run)."""

HungUp = Callable[[], Awaitable[None]]
"""Returns once the connection's peer closed its end (awaited only while a
request waits, and cancelled when the wait ends)."""

_UNSERVED_LOG_LIMIT = 10_000  # distinct (client id, API, version) pairs remembered
_BEFORE_AUTHENTICATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
# Requests whose handling never moves a coordinator deadline: no need to wake
# the timer task after them.
_NO_DEADLINE_CHANGE = frozenset({ApiKey.PRODUCE, ApiKey.FETCH})


async def _no_wait() -> bool:
    return False


class Dispatcher:
    """Turns request frames into response buffers for one broker.

    ``closing()`` says whether the server shuts down (long polls then answer
    with what they have); ``deadlines_moved()`` is called after a request that
    may have moved a coordinator deadline.
    """

    def __init__(
        self,
        broker: Broker,
        config: BrokerConfig,
        waiters: AppendWaiters,
        metrics: Metrics | None,
        *,
        closing: Callable[[], bool],
        deadlines_moved: Callable[[], None],
    ) -> None:
        self.broker = broker
        self.config = config
        self.waiters = waiters
        self.metrics = metrics
        self._closing = closing
        self._deadlines_moved = deadlines_moved
        # (client id, API key, version) pairs already logged as not served: once each.
        self._unserved_logged: set[tuple[str | None, int, int]] = set()

    def __repr__(self) -> str:
        return f"Dispatcher(broker={self.broker!r}, unserved_logged={len(self._unserved_logged)})"

    async def handle_frame(
        self, frame: bytes | memoryview, session: Session, before_wait: BeforeWait = _no_wait, hung_up: HungUp | None = None,
    ) -> Buffers | None:
        """Handle one request frame from the connection of ``session``; return its
        response buffers (None: no response).

        Returns without suspending unless the request must wait (a long-poll
        Fetch, a Deferred, an fsync); it then first awaits ``before_wait()``.
        A long poll returns None once ``hung_up()`` returns (the peer is gone).

        :raises ProtocolError: the peer's bytes are wrong; close the connection.
        :raises InternalError: the broker failed and cannot say so in the
            response; close the connection.
        """
        metrics = self.metrics
        started = perf_counter() if metrics is not None else 0.0
        decoded = self._decode(frame, session)
        if not isinstance(decoded, Request):
            return decoded
        request = decoded
        ctx = RequestContext.for_request(request, session, listener=self.config.security_protocol)
        try:
            result = dispatch(self.broker, request, ctx)
        except Exception as exc:
            return self._internal_failure(request, exc)
        finally:
            if request.api_key not in _NO_DEADLINE_CHANGE:
                self._deadlines_moved()
        try:
            body = await self.resolve(request, result, before_wait, hung_up)
            parts = None if body is None else encode_response(request, body)
        except (InternalError, trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception as exc:
            return self._internal_failure(request, exc)
        if metrics is not None:
            metrics.observe_request(request.api_key, perf_counter() - started)
        return parts

    def _decode(self, frame: bytes | memoryview, session: Session) -> Request | Buffers:
        """The decoded request, or the buffers of an answer the decoder chose
        (UNSUPPORTED_VERSION).

        :raises ProtocolError: the connection must be closed.
        """
        peer = session.peer
        try:
            request = decode_request(frame, SERVED_VERSIONS)
        except UnsupportedVersionError as exc:
            if exc.api_key == ApiKey.API_VERSIONS and exc.correlation_id is not None:
                return encode_unsupported_api_versions(exc.correlation_id, SERVED_VERSIONS)
            if exc.api_key is not None and exc.api_version is not None:
                self._log_unserved(frame, exc.api_key, exc.api_version, peer)
                if exc.correlation_id is not None:
                    parts = unsupported_version_response(exc.api_key, exc.api_version, exc.correlation_id)
                    if parts is not None:
                        return parts
            raise
        if not is_served(request.api_key, request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_unsupported_api_versions(request.correlation_id, SERVED_VERSIONS)
            self._log_unserved(frame, request.api_key, request.api_version, peer)
            raise UnsupportedVersionError(
                f"API key {request.api_key} v{request.api_version} is not served",
                api_key=request.api_key, api_version=request.api_version, correlation_id=request.correlation_id,
            )
        if (
            self.config.requires_sasl
            and not session.authenticated
            and request.api_key not in _BEFORE_AUTHENTICATION
        ):
            raise ProtocolError(f"{request.api_key.name} from {peer} before SASL authentication")
        return request

    def _internal_failure(self, request: Request, exc: Exception) -> Buffers:
        """Log the broker's failure at ``request`` and answer UNKNOWN_SERVER_ERROR.

        :raises InternalError: the response cannot carry one error code.
        """
        log.error("handling %s v%d (correlation id %d) failed", request.api_key.name, request.api_version,
                  request.correlation_id, exc_info=exc)
        try:
            parts = error_response(request, ErrorCode.unknown_server_error)
        except LogbrokerError:
            parts = None
        if parts is None:
            raise InternalError(
                f"internal error handling {request.api_key.name} (no error response to send)"
            ) from exc
        return parts

    def _log_unserved(self, frame: bytes | memoryview, api_key: int, api_version: int, peer: str) -> None:
        """Say once per client id and (API, version) that a client asked for
        something this broker does not serve (ApiVersions negotiation aside)."""
        client_id = peek_client_id(frame)
        seen = (client_id, api_key, api_version)
        if seen in self._unserved_logged or len(self._unserved_logged) >= _UNSERVED_LOG_LIMIT:
            return
        self._unserved_logged.add(seen)
        try:
            key: ApiKey | None = ApiKey(api_key)
        except ValueError:
            key = None
        served = SERVED_VERSIONS.get(key) if key is not None else None
        log.warning(
            "client %r at %s asked for %s v%d, which this broker does not serve (%s); "
            "logged once per client id and version",
            client_id, peer, key.name if key is not None else f"API key {api_key}", api_version,
            f"served: v{served[0]}-v{served[1]}" if served else "API not served",
        )

    # -- completing a handler's result: the one place that tells the kinds apart ----------

    async def resolve(
        self, request: Request, result: HandlerResult, before_wait: BeforeWait = _no_wait,
        hung_up: HungUp | None = None,
    ) -> Body:
        """The response body of ``result`` (None: no response), once what it
        needs is done: a Reply's fsyncs, a FetchOperation's data or wait, a
        Deferred's completion. Does not suspend when nothing must wait; before
        waiting it awaits ``before_wait()``, and attempts a FetchOperation again
        if that let other tasks run (data may have arrived, its wake-up missed).
        A FetchOperation's wait ends with None if ``hung_up()`` returns first.

        :raises InternalError: an fsync failed and the result has no answer for it.
        """
        if isinstance(result, Deferred):
            if not result.done:
                await before_wait()
                before_wait = _no_wait  # the connection sent what it held already
                finished = trio.Event()
                result.add_done_callback(lambda _: finished.set())
                await finished.wait()
            return await self.resolve(request, as_result(result.value), before_wait, hung_up)
        if isinstance(result, FetchOperation):
            flushed = not result.flush
            if flushed:
                body = result.attempt(final=self._closing())
                if body is not None:
                    return body
            if await before_wait() and flushed:
                body = result.attempt(final=self._closing())
                if body is not None:
                    return body
            if not flushed:
                await self._flush(request, result.flush)
                body = result.attempt(final=self._closing())
                if body is not None:
                    return body
            return await self._long_poll(result, hung_up)
        if isinstance(result, Reply):
            body = result.body
            if result.flush:
                await before_wait()
                try:
                    await self._flush(request, result.flush)
                except InternalError:
                    if result.if_flush_fails is None:
                        raise
                    body = result.if_flush_fails()
            if result.appended:  # after the fsync: fetches wake to records that are durable
                self.waiters.notify(result.appended)
            return body
        raise TypeError(f"not a handler result: {result!r}")  # pragma: no cover - mypy checks the union

    async def _flush(self, request: Request, flush: Sequence[FlushPoint]) -> None:
        """fsync ``(partition log, offset)`` pairs in worker threads.

        :raises InternalError: an fsync failed; what waited on it must not be acknowledged.
        """
        try:
            for plog, offset in flush:
                await trio.to_thread.run_sync(plog.flush, offset)
        except LogbrokerError as exc:
            log.error("not acknowledging %s: %s", request.api_key.name, exc)
            raise InternalError(f"fsync failed: {exc}") from exc

    async def _long_poll(self, op: FetchOperation, hung_up: HungUp | None = None) -> Body:
        """Attempt ``op`` again each time a watched partition grows, until it has
        enough data, ``wait_ms`` passed or the server shuts down (its first
        attempt found too little). None, without attempting again, once
        ``hung_up()`` returned: nobody would read the answer, and a ShareFetch
        must not acquire records for a client that is gone."""
        peer = _Peer()
        if hung_up is None:
            return await self._poll(op, peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer.watch, hung_up)
                try:
                    return await self._poll(op, peer)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The watcher raises nothing of its own: pass on the poll's error as it was raised.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _poll(self, op: FetchOperation, peer: _Peer) -> Body:
        deadline = trio.current_time() + op.wait_ms / 1000
        while not self._closing():
            session = getattr(op, "watch_session", None)
            event = peer.event = self.waiters.register(op.watch, session)
            try:
                with trio.move_on_at(deadline):
                    await event.wait()
            finally:
                self.waiters.unregister(op.watch, event, session)
                peer.event = None
            if peer.gone:
                return None
            if trio.current_time() >= deadline:
                break
            body = op.attempt(final=False)
            if body is not None:
                return body
        return op.attempt(final=True)


class _Peer:
    """Whether the peer of a long-polling request hung up, and the wait event
    to set when it does."""

    __slots__ = ("gone", "event")

    def __init__(self) -> None:
        self.gone = False
        self.event: trio.Event | None = None

    def __repr__(self) -> str:
        return f"_Peer(gone={self.gone})"

    async def watch(self, hung_up: HungUp) -> None:
        await hung_up()
        self.gone = True
        if self.event is not None:
            self.event.set()


def peek_client_id(frame: bytes | memoryview) -> str | None:
    """The client id of a request header (int16 length and UTF-8 after key,
    version and correlation id; -1 = null), or None if unreadable."""
    if len(frame) < 10:
        return None
    length = int.from_bytes(bytes(frame[8:10]), "big", signed=True)
    if length < 0 or len(frame) < 10 + length:
        return None
    return bytes(frame[10 : 10 + length]).decode("utf-8", "replace")
