"""The trio server: one nursery owns the listener, the connections and the
maintenance tasks; each connection handles its requests in order.

Pipelined requests: a connection handles every complete frame already
received before it sends, and sends the responses it has ready together (one
``send``/``sendmsg`` for many small responses). A request that must wait (a
long-poll Fetch, a JoinGroup or SyncGroup, an fsync) first sends whatever is
ready, so no response is held back behind another request's wait.

Limits (docs/operations.md, "Connection limits"): connections beyond
``max.connections`` or ``max.connections.per.ip`` are closed as soon as they
are accepted; a connection reads at most ``queued.max.bytes`` at a time and
only once it has answered what it read before, so a client that pipelines
without reading is held back by TCP flow control, not by broker memory; a
connection idle, or whose peer takes no response bytes, for
``connections.max.idle.ms`` is closed by one watchdog task (the connection
loop only notes since when it waits).

Before a connection to a SASL listener has authenticated it may cost little:
its frames are capped at ``sasl.server.max.receive.size``, at most
``max.unauthenticated.connections.per.ip`` such connections per address are
kept, the watchdog closes it after ``sasl.authentication.timeout.ms``, and a
failed login is answered after ``connection.failed.authentication.delay.ms``
(a sleep of that connection only), then the connection is closed.

Shutdown (``Server.shutdown``): stop accepting, let every connection finish
the request it is handling, wake long polls, flush, write the clean marker.
"""

from __future__ import annotations

import logging
import ssl
import os
import math
from collections.abc import Sequence
from time import perf_counter

import trio

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.deferred import Deferred
from logbroker.broker.session import Session
from logbroker.broker.handlers import (
    SERVED_VERSIONS,
    FetchOperation,
    Reply,
    dispatch,
    is_served,
    unsupported_version_response,
)
from logbroker.errors import (
    FrameTooLargeError, InvalidConfigError, LogbrokerError, ProtocolError, UnsupportedVersionError,
)
from logbroker.protocol import (
    ApiKey,
    FrameDecoder,
    decode_request,
    encode_response,
    encode_unsupported_api_versions,
)
from logbroker.server.cleaner import run_cleaner
from logbroker.server.metrics import Metrics, serve_metrics
from logbroker.server.waiters import AppendWaiters

log = logging.getLogger("logbroker.server")

_UNSERVED_LOG_LIMIT = 10_000  # distinct (client id, API, version) pairs remembered
_BEFORE_AUTHENTICATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
_COALESCE_BELOW = 16 * 1024
_MAX_IOV = 512
# Send the responses gathered from pipelined requests once there are this many
# buffers, even if more complete frames are buffered (bounds the delay of the
# first response behind the later requests' handling). The config's
# queued_max_requests and queued_max_bytes bound them too.
_SEND_AFTER_BUFFERS = 64
# A TLS send goes through the SSL object in steps of this many bytes, so that
# each step that completes counts as progress (connections_max_idle_ms).
_TLS_SEND_STEP = 256 * 1024
# Requests whose handling never moves a coordinator deadline: no need to wake
# the timer task after them.
_NO_DEADLINE_CHANGE = frozenset({ApiKey.PRODUCE, ApiKey.FETCH})
_PENDING = object()  # _ready(): the request must wait; complete it with _complete()


class Server:
    """Serves one Broker on one listener. Create with :func:`serve`."""

    def __init__(self, broker: Broker, config: BrokerConfig) -> None:
        self.broker = broker
        self.config = config
        self.waiters = AppendWaiters()
        # Share-group records released by a lock expiry, a Release or a member
        # leaving wake the share fetches waiting on their partition.
        broker.share.wake = self.waiters.notify
        self.port: int | None = None
        # Request, connection and fsync metrics; None unless metrics_port is set.
        self.metrics: Metrics | None = Metrics() if config.metrics_port is not None else None
        self.metrics_port: int | None = None  # the bound metrics port, once serving
        self._closing = False
        self._accept_scope = trio.CancelScope()
        self._idle_scopes: set[trio.CancelScope] = set()
        self._connections = 0
        self._connections_per_host: dict[str, int] = {}
        self._unauthenticated_per_host: dict[str, int] = {}  # SASL listeners: not logged in yet
        self._watches: set[_Watch] = set()  # one per connection, for _close_idle
        self._refused = 0  # connections refused since the last log line about them
        self._refusal_reason = ""
        self._refusal_logged_at = -math.inf
        self._drained = trio.Event()
        self._shutdown_requested = trio.Event()
        self._timers_changed = trio.Event()
        # (client id, API key, version) pairs already logged as not served: once each.
        self._unserved_logged: set[tuple[str | None, int, int]] = set()

    def __repr__(self) -> str:
        return f"Server(port={self.port}, connections={self._connections}, closing={self._closing})"

    # -- lifecycle --------------------------------------------------------

    def shutdown(self) -> None:
        """Begin a graceful shutdown; :func:`serve` returns once it is done."""
        if self._closing:
            return
        log.info("shutting down: no new connections, finishing in-flight requests")
        self._closing = True
        self._shutdown_requested.set()
        self._accept_scope.cancel()
        for scope in list(self._idle_scopes):
            scope.cancel()
        self.waiters.notify_all()
        self.broker.shutdown_pending()
        if self._connections == 0:
            self._drained.set()

    async def _close_idle(self) -> None:
        """Close connections whose peer sent nothing while they owed no response,
        or took no response bytes, for ``connections_max_idle_ms`` (Kafka's
        ``connections.max.idle.ms``). One pass over the connections every tenth of
        that (at most every second), so a connection is closed at most one such
        tick late; the hot path only stores a timestamp (``_Watch.since``).

        Cancelling takes effect where the connection waits for its peer. A
        request that arrives in the very tick the limit passes is read, and
        the connection is closed before it is answered (as with Kafka, the
        client retries it on a new connection).

        On a SASL listener it also closes connections that have not
        authenticated by their ``_Watch.login_deadline``, whatever they do."""
        idle_s = self.config.connections_max_idle_ms / 1000
        login_s = self.config.sasl_authentication_timeout_ms / 1000 if self.config.requires_sasl else math.inf
        tick = min(1.0, idle_s / 10 if idle_s > 0 else 1.0, login_s / 10)
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            if self._refused and now - self._refusal_logged_at >= 1:  # the end of a burst of refusals
                log.warning("refused %d more connection(s) (%s)", self._refused, self._refusal_reason)
                self._refused, self._refusal_logged_at = 0, now
            too_old = now - idle_s if idle_s > 0 else -math.inf
            for watch in self._watches:
                if watch.expired is not None:
                    continue
                if watch.login_deadline <= now:
                    watch.expired = "not authenticated"
                    watch.scope.cancel()
                elif watch.since <= too_old:
                    watch.expired = "not reading" if watch.sending else "idle"
                    watch.scope.cancel()

    async def _timers(self) -> None:
        """Fire the broker's deadlines (session and rebalance timeouts)."""
        broker = self.broker
        while True:
            deadline_ms = broker.next_deadline_ms()
            self._timers_changed = trio.Event()
            if deadline_ms is None:
                await self._timers_changed.wait()
                continue
            delay = (deadline_ms - broker.clock()) / 1000
            if delay > 0:
                with trio.move_on_after(delay):
                    await self._timers_changed.wait()
                    continue
            grown = broker.fire_deadlines(broker.clock())
            if grown:  # transaction markers: read_committed fetches may advance
                self.waiters.notify(grown)
            await trio.sleep(0)

    async def _maintenance(self) -> None:
        broker = self.broker
        # With flush=always this only advances the recovery-point checkpoint.
        flush_every = self.config.flush_interval_ms / 1000 if self.config.flush != "never" else math.inf
        retention_every = self.config.log_retention_check_interval_ms / 1000
        next_flush = trio.current_time() + flush_every
        next_retention = trio.current_time() + retention_every
        while True:
            await trio.sleep_until(min(next_flush, next_retention))
            now = trio.current_time()
            # A full or failing disk must not stop the broker: produce answers
            # KAFKA_STORAGE_ERROR meanwhile, and these retry on the next tick.
            if now >= next_flush:
                next_flush = now + flush_every
                try:
                    await trio.to_thread.run_sync(broker.flush_dirty)
                except (LogbrokerError, OSError) as exc:
                    log.error("periodic flush failed: %s", exc)
            if now >= next_retention:
                next_retention = now + retention_every
                try:
                    deleted = broker.apply_retention()
                except (LogbrokerError, OSError) as exc:
                    log.error("retention failed: %s", exc)
                    deleted = 0
                if deleted:
                    log.info("retention deleted %d segments", deleted)

    async def _accept(self, listeners, connections, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with self._accept_scope:
            await trio.serve_listeners(
                self.handle_connection, listeners, handler_nursery=connections, task_status=task_status
            )

    # -- connections ------------------------------------------------------

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        if self._closing:
            await stream.aclose()
            return
        peer = _peer(stream)
        host = peer.rsplit(":", 1)[0]
        per_host = self._connections_per_host.get(host, 0)
        if self._connections >= self.config.max_connections:
            self._refuse(host, f"max.connections={self.config.max_connections} reached")
            await trio.aclose_forcefully(stream)
            return
        if per_host >= self.config.max_connections_per_ip:
            self._refuse(host, f"max.connections.per.ip={self.config.max_connections_per_ip} reached")
            await trio.aclose_forcefully(stream)
            return
        # One scope per connection, cancelled by shutdown only while the
        # connection waits for its next request (it is in _idle_scopes then),
        # and by _close_idle once its peer sent or took nothing for too long,
        # or did not authenticate in time.
        watch = _Watch(trio.CancelScope(), host)
        if self.config.requires_sasl:
            unauthenticated = self._unauthenticated_per_host.get(host, 0)
            limit = self.config.max_unauthenticated_connections_per_ip
            if unauthenticated >= limit:
                self._refuse(host, f"max.unauthenticated.connections.per.ip={limit} reached")
                await trio.aclose_forcefully(stream)
                return
            self._unauthenticated_per_host[host] = unauthenticated + 1
            watch.login_deadline = trio.current_time() + self.config.sasl_authentication_timeout_ms / 1000
        self._connections_per_host[host] = per_host + 1
        self._connections += 1
        metrics = self.metrics
        if metrics is not None:
            metrics.connections += 1
            metrics.connections_total += 1
        peer_host = "/" + host
        try:
            with watch.scope:
                self._watches.add(watch)
                try:
                    await self._serve_requests(stream, peer_host, watch)
                finally:
                    self._watches.discard(watch)
            if watch.expired is not None:
                if metrics is not None and watch.expired != "not authenticated":
                    metrics.connections_closed_idle += 1
                if watch.expired == "not reading":
                    log.info("closing connection from %s: it took no response bytes for %d ms (not reading)",
                             peer, self.config.connections_max_idle_ms)
                elif watch.expired == "not authenticated":
                    log.info("closing connection from %s: not authenticated within %d ms "
                             "(sasl.authentication.timeout.ms)", peer, self.config.sasl_authentication_timeout_ms)
                else:
                    log.debug("closing connection from %s: idle for %d ms", peer, self.config.connections_max_idle_ms)
        except ProtocolError as exc:
            log.info("closing connection from %s: %s", peer, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug serving one connection must not take the broker down
            log.exception("closing connection from %s after an unexpected error", peer)
        finally:
            self._logged_in(watch)  # or gone: no longer counts as unauthenticated
            left = self._connections_per_host[host] - 1
            if left:
                self._connections_per_host[host] = left
            else:
                del self._connections_per_host[host]
            self._connections -= 1
            if metrics is not None:
                metrics.connections -= 1
            if self._closing and self._connections == 0:
                self._drained.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

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

    def _logged_in(self, watch: _Watch) -> None:
        """The connection authenticated or closed: drop its login deadline and
        its count in ``max.unauthenticated.connections.per.ip`` (once)."""
        if watch.login_deadline == math.inf:
            return
        watch.login_deadline = math.inf
        left = self._unauthenticated_per_host[watch.host] - 1
        if left:
            self._unauthenticated_per_host[watch.host] = left
        else:
            del self._unauthenticated_per_host[watch.host]

    async def _serve_requests(self, stream: trio.SocketStream, peer_host: str, watch: _Watch) -> None:
        """Answer requests in order until EOF or shutdown; see the module docstring.

        Bounds per connection: it reads at most ``queued_max_bytes`` at a time,
        and only once every request read before is answered and its response
        handed to the socket; it holds at most ``queued_max_requests`` handled
        requests or ``queued_max_bytes`` of responses before sending them.
        ``watch.since`` says since when it waits for its peer (to send a request,
        or to take response bytes), for :meth:`_close_idle`.

        On a SASL listener, until the connection has authenticated, frames are
        capped at ``sasl_server_max_receive_size``; a failed login is answered
        after ``connection_failed_authentication_delay_ms``, then the
        connection is closed (ProtocolError naming the user).
        """
        config = self.config
        authenticating = config.requires_sasl
        decoder = FrameDecoder(
            min(config.sasl_server_max_receive_size, config.socket_request_max_bytes) if authenticating
            else config.socket_request_max_bytes
        )
        session = Session(peer=peer_host)
        receive_bytes = send_after_bytes = config.queued_max_bytes
        send_after_requests = config.queued_max_requests
        idle = watch.scope
        out: list = []  # buffers of responses ready to send, in request order
        out_bytes = 0
        handled = 0  # requests handled since the last send

        async def send_ready() -> bool:
            """Send the responses held, if any; True if there were some."""
            nonlocal out, out_bytes, handled
            handled = 0
            if not out:
                return False
            ready, out, out_bytes = out, [], 0
            await _send_buffers(stream, ready, watch)
            return True

        while not self._closing:  # checked after every receive: nothing is sent once idle is cancelled
            try:
                frame = decoder.next_frame()
                if frame is not None:
                    parts = await self._handle_frame(frame, peer_host, send_ready, session)
            except Exception as exc:
                await send_ready()  # answer the requests before this one
                if authenticating and isinstance(exc, FrameTooLargeError):
                    raise FrameTooLargeError(f"{exc} before authentication (sasl.server.max.receive.size)") from exc
                raise
            if frame is None:
                await send_ready()
                self._idle_scopes.add(idle)
                watch.since = trio.current_time()
                try:
                    data = await stream.receive_some(receive_bytes)
                finally:
                    watch.since = math.inf
                    self._idle_scopes.discard(idle)
                if not data:
                    return
                decoder.receive_data(data)
                continue
            handled += 1
            if parts:
                out += parts
                out_bytes += sum(map(len, parts))
            if session.close_after_reply:  # failed authentication: answer late, then hang up
                await trio.sleep(config.connection_failed_authentication_delay_ms / 1000)
                await send_ready()
                raise ProtocolError(session.failed_login or "authentication failed")
            if authenticating and session.authenticated:
                authenticating = False
                decoder.max_frame_bytes = config.socket_request_max_bytes
                self._logged_in(watch)
            if handled >= send_after_requests or len(out) >= _SEND_AFTER_BUFFERS or out_bytes >= send_after_bytes:
                if not await send_ready():  # nothing to send (acks=0 produce): still let others run
                    await trio.lowlevel.checkpoint()
        await send_ready()  # shutting down: answer what was handled

    async def _handle_frame(self, frame, peer: str = "", before_wait=None, session=None) -> Sequence | None:
        """Handle one request frame; return its response buffers (None: no response).

        Returns without suspending unless the request must wait (a long-poll
        Fetch, a Deferred, an fsync); it then first awaits ``before_wait()``
        (the connection sends the responses it holds; True if it did, and so
        may have let other tasks run). Shutdown never cancels a request being
        handled (only a connection waiting for its next request); cancelling
        :func:`serve` does, and closes the connection.
        """
        metrics = self.metrics
        started = perf_counter() if metrics is not None else 0.0
        request, result = self._dispatch_frame(frame, peer, session)
        if request is None:
            return result
        parts = self._ready(request, result)
        if parts is _PENDING and before_wait is not None and await before_wait():
            # Data may have been appended (its wake-up missed) while we sent.
            parts = self._ready(request, result)
        if parts is _PENDING:
            parts = await self._complete(request, result)
        if metrics is not None:
            metrics.observe_request(request.api_key, perf_counter() - started)
        return parts

    def _dispatch_frame(self, frame, peer: str, session=None):
        """Decode and dispatch one frame: ``(request, handler result)``, or
        ``(None, buffers)`` when the answer is an error the decoder chose.

        :raises ProtocolError: the connection must be closed.
        """
        try:
            request = decode_request(frame, SERVED_VERSIONS)
        except UnsupportedVersionError as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                return None, encode_unsupported_api_versions(exc.correlation_id, SERVED_VERSIONS)
            if exc.api_key is not None and exc.api_version is not None:
                self._log_unserved(frame, exc.api_key, exc.api_version, peer)
            if exc.api_key is not None and exc.correlation_id is not None:
                parts = unsupported_version_response(exc.api_key, exc.api_version, exc.correlation_id)
                if parts is not None:
                    return None, parts
            raise
        if not is_served(request.api_key, request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return None, encode_unsupported_api_versions(request.correlation_id, SERVED_VERSIONS)
            self._log_unserved(frame, request.api_key, request.api_version, peer)
            raise ProtocolError(f"API key {request.api_key} v{request.api_version} is not served")
        if session is None:
            session = Session(peer=peer)
        if (
            self.config.requires_sasl
            and not session.authenticated
            and request.api_key not in _BEFORE_AUTHENTICATION
        ):
            raise ProtocolError(f"{request.api_key.name} from {peer} before SASL authentication")
        try:
            self.broker.request_peer = peer
            self.broker.request_session = session
            result = dispatch(self.broker, request)
        except Exception as exc:
            log.exception("handler for API key %s failed", request.api_key)
            raise ProtocolError(f"internal error handling API key {request.api_key}") from exc
        if request.api_key not in _NO_DEADLINE_CHANGE:
            self._timers_changed.set()
        return request, result

    def _log_unserved(self, frame, api_key: int, api_version: int, peer: str) -> None:
        """Say once per client id and (API, version) that a client asked for
        something this broker does not serve (ApiVersions negotiation aside)."""
        client_id = _peek_client_id(frame)
        seen = (client_id, api_key, api_version)
        if seen in self._unserved_logged or len(self._unserved_logged) >= _UNSERVED_LOG_LIMIT:
            return
        self._unserved_logged.add(seen)
        try:
            name = ApiKey(api_key).name
        except ValueError:
            name = f"API key {api_key}"
        served = SERVED_VERSIONS.get(api_key)
        log.warning(
            "client %r at %s asked for %s v%d, which this broker does not serve (%s); "
            "logged once per client id and version",
            client_id, peer, name, api_version,
            f"served: v{served[0]}-v{served[1]}" if served else "API not served",
        )

    def _ready(self, request, result):
        """The response buffers (None: no response) if ``result`` is complete
        without waiting (a FetchOperation is attempted once), else ``_PENDING``."""
        if isinstance(result, Deferred):
            if not result.done:
                return _PENDING
            result = result.value
        if isinstance(result, FetchOperation):
            if result.flush:
                return _PENDING
            body = result.attempt(final=self._closing)
            if body is None:
                return _PENDING
        elif isinstance(result, Reply):
            if result.flush:
                return _PENDING
            if result.appended:
                self.waiters.notify(result.appended)
            body = result.body
        else:
            body = result
        return None if body is None else encode_response(request, body)

    async def _complete(self, request, result) -> Sequence | None:
        """After :meth:`_ready` said ``_PENDING``: wait for what ``result`` needs,
        then return the response buffers (None: no response)."""
        if isinstance(result, Deferred):
            if not result.done:
                finished = trio.Event()
                result.add_done_callback(lambda _: finished.set())
                await finished.wait()
            result = result.value
        if isinstance(result, FetchOperation):
            body = None
            if result.flush:
                await self._flush(request, result.flush)
                result.flush = []
                body = result.attempt(final=self._closing)
            if body is None:
                body = await self._long_poll(result)
        elif isinstance(result, Reply):
            body = result.body
            try:
                await self._flush(request, result.flush)
            except ProtocolError:
                if result.if_flush_fails is None:
                    raise
                body = result.if_flush_fails()
            if result.appended:  # after the fsync: fetches wake to records that are durable
                self.waiters.notify(result.appended)
        else:
            body = result
        if body is None:
            return None
        return encode_response(request, body)

    async def _flush(self, request, flush) -> None:
        """fsync ``(partition log, offset)`` pairs in worker threads.

        :raises ProtocolError: an fsync failed; what waited on it must not be acknowledged.
        """
        try:
            for plog, offset in flush:
                await trio.to_thread.run_sync(plog.flush, offset)
        except LogbrokerError as exc:
            log.error("not acknowledging %s: %s", request.api_key.name, exc)
            raise ProtocolError(f"fsync failed: {exc}") from exc

    async def _long_poll(self, op: FetchOperation):
        """Attempt ``op`` again each time a watched partition grows, until it has
        enough data, ``wait_ms`` passed or the server shuts down (its first
        attempt found too little)."""
        deadline = trio.current_time() + op.wait_ms / 1000
        while not self._closing:
            event = self.waiters.register(op.watch)
            try:
                with trio.move_on_at(deadline):
                    await event.wait()
            finally:
                self.waiters.unregister(op.watch, event)
            if trio.current_time() >= deadline:
                break
            body = op.attempt(final=False)
            if body is not None:
                return body
        return op.attempt(final=True)


async def _send_buffers(stream: trio.SocketStream, parts: Sequence, watch: _Watch) -> None:
    """Send responses given as buffers (none: nothing to do): small ones joined,
    large ones by sendmsg without a copy.

    ``watch.since`` is the time of the last progress while this waits for the
    peer to take bytes (``math.inf`` again once all is sent).

    :raises trio.BrokenResourceError: the peer reset the connection.
    """
    if not parts:
        return
    chunks: list = []
    small: list = []
    for part in parts:
        if len(part) < _COALESCE_BELOW:
            small.append(part)
        else:
            if small:
                chunks.append(b"".join(small))
                small = []
            chunks.append(part)
    if small:
        chunks.append(b"".join(small))
    watch.sending = True
    watch.since = trio.current_time()
    try:
        sock = getattr(stream, "socket", None)
        if sock is None:  # a TLS stream: the bytes go through the SSL object anyway
            data = memoryview(chunks[0] if len(chunks) == 1 else b"".join(chunks)).cast("B")
            for start in range(0, len(data), _TLS_SEND_STEP):
                await stream.send_all(data[start : start + _TLS_SEND_STEP])
                watch.since = trio.current_time()
            return
        views = [memoryview(c).cast("B") for c in chunks]
        while views:
            sent = await sock.sendmsg(views[:_MAX_IOV])
            while sent:
                head = views[0]
                if sent >= len(head):
                    sent -= len(head)
                    views.pop(0)
                else:
                    views[0] = head[sent:]
                    sent = 0
            if views:
                watch.since = trio.current_time()
    except OSError as exc:  # ECONNRESET, EPIPE: the peer's doing
        raise trio.BrokenResourceError(f"send failed: {exc}") from exc
    finally:
        watch.sending = False
        watch.since = math.inf


class _Watch:
    """What :meth:`Server._close_idle` needs of one connection: since when it has
    waited for its peer (``math.inf`` while it handles a request), whether that
    wait is a send, by when it must have authenticated (``math.inf`` once it
    has, or when the listener has no SASL), and the scope to cancel to close it."""

    __slots__ = ("scope", "host", "since", "sending", "login_deadline", "expired")

    def __init__(self, scope: trio.CancelScope, host: str) -> None:
        self.scope = scope
        self.host = host
        self.since = math.inf
        self.sending = False
        self.login_deadline = math.inf
        # Why _close_idle cancelled the scope: "idle", "not reading" or "not authenticated".
        self.expired: str | None = None

    def __repr__(self) -> str:
        return (f"<_Watch host={self.host} since={self.since} sending={self.sending} "
                f"login_deadline={self.login_deadline} expired={self.expired}>")


def _warn_if_too_few_descriptors(config: BrokerConfig) -> None:
    """Warn when RLIMIT_NOFILE cannot hold max.connections sockets: accept()
    would then fail with EMFILE before the limit closes anything."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft < config.max_connections + 100:
        log.warning(
            "the file descriptor limit (%d) is below max.connections (%d) plus the broker's own files: "
            "raise it (ulimit -n) or lower max.connections",
            soft, config.max_connections,
        )


def _check_security(config: BrokerConfig, broker: Broker) -> None:
    """At start-up: warn when SASL PLAIN sends passwords in clear text, and read
    users.json and acls.json once, so a broken one is logged now (in one line;
    the broker then fails closed until it is fixed)."""
    if config.security_protocol == "SASL_PLAINTEXT" and "PLAIN" in config.sasl_mechanisms:
        log.warning(
            "SASL PLAIN is offered on a SASL_PLAINTEXT listener: passwords cross the network in clear text; "
            "use SASL_SSL, or offer only SCRAM-SHA-256/512 (sasl.enabled.mechanisms)"
        )
    if config.requires_sasl:
        broker.users.check()
    if broker.authorizer is not None:
        broker.authorizer.check()


def _peer(stream: trio.SocketStream) -> str:
    try:
        sock = stream.socket if hasattr(stream, "socket") else stream.transport_stream.socket
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError):
        return "?"


async def serve(config: BrokerConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Open the broker, listen, and serve until cancelled or shut down.

    ``task_status.started(server)`` is called once the listener is bound.
    Cancellation closes connections abruptly but still flushes and writes the
    clean-shutdown marker.
    """
    broker = await trio.to_thread.run_sync(Broker, config)
    log.info("data directory %s", os.path.abspath(broker.config.data_dir))
    _warn_if_too_few_descriptors(config)
    _check_security(config, broker)
    try:
        if config.uses_ssl:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
            listeners = await trio.open_ssl_over_tcp_listeners(config.port, context, host=config.host)
            tcp = [listener.transport_listener for listener in listeners]
        else:
            listeners = await trio.open_tcp_listeners(config.port, host=config.host)
            tcp = listeners
        bound = tcp[0].socket.getsockname()
        server = Server(broker, config)
        server.port = bound[1]
        broker.advertised_port = config.advertised_port or bound[1]
        log.info(
            "listening on %s:%d, advertised as %s:%d",
            config.host, bound[1], broker.advertised_host, broker.advertised_port,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._maintenance)
            nursery.start_soon(server._timers)
            nursery.start_soon(server._close_idle)
            if config.log_cleaner_enable:
                nursery.start_soon(run_cleaner, broker, config.log_cleaner_backoff_ms)
            if server.metrics is not None:
                broker.log_manager.on_fsync = server.metrics.observe_fsync
                server.metrics_port = await nursery.start(
                    serve_metrics, server.metrics, broker, config.metrics_host, config.metrics_port
                )
            async with trio.open_nursery() as connections:
                await nursery.start(server._accept, listeners, connections)
                task_status.started(server)
                await server._shutdown_requested.wait()
                # Accepting stopped; connections finish their current request.
                with trio.move_on_after(30):
                    await server._drained.wait()
                connections.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            broker.share.wake = None  # closing runs in a worker thread: no trio events from there
            await trio.to_thread.run_sync(broker.close)
        log.info("clean shutdown complete")


def _peek_client_id(frame) -> str | None:
    """The client id of a request header (int16 length and UTF-8 after key,
    version and correlation id; -1 = null), or None if unreadable."""
    if len(frame) < 10:
        return None
    length = int.from_bytes(bytes(frame[8:10]), "big", signed=True)
    if length < 0 or len(frame) < 10 + length:
        return None
    return bytes(frame[10 : 10 + length]).decode("utf-8", "replace")
