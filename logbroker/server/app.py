"""The trio server: one nursery owns the listener, the connections and the
maintenance tasks; each connection handles its requests in order.

Pipelined requests: a connection handles every complete frame already
received before it sends, and sends the responses it has ready together (one
``send``/``sendmsg`` for many small responses). A request that must wait (a
long-poll Fetch, a JoinGroup or SyncGroup, an fsync) first sends whatever is
ready, so no response is held back behind another request's wait.

Shutdown (``Server.shutdown``): stop accepting, let every connection finish
the request it is handling, wake long polls, flush, write the clean marker.
"""

from __future__ import annotations

import logging
import ssl
import os
import math
from collections.abc import Sequence

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
from logbroker.errors import InvalidConfigError, LogbrokerError, ProtocolError, UnsupportedVersionError
from logbroker.protocol import (
    ApiKey,
    FrameDecoder,
    decode_request,
    encode_response,
    encode_unsupported_api_versions,
)
from logbroker.server.cleaner import run_cleaner
from logbroker.server.waiters import AppendWaiters

log = logging.getLogger("logbroker.server")

_RECEIVE_CHUNK = 256 * 1024
_BEFORE_AUTHENTICATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
_COALESCE_BELOW = 16 * 1024
_MAX_IOV = 512
# Send the responses gathered from pipelined requests once there are this many
# buffers or bytes, even if more complete frames are buffered (bounds the
# delay of the first response behind the later requests' handling).
_SEND_AFTER_BUFFERS = 64
_SEND_AFTER_BYTES = 256 * 1024
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
        self.port: int | None = None
        self._closing = False
        self._accept_scope = trio.CancelScope()
        self._idle_scopes: set[trio.CancelScope] = set()
        self._connections = 0
        self._drained = trio.Event()
        self._shutdown_requested = trio.Event()
        self._timers_changed = trio.Event()

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
            broker.fire_deadlines(broker.clock())
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
        self._connections += 1
        peer = _peer(stream)
        peer_host = "/" + peer.rsplit(":", 1)[0]
        try:
            # One scope per connection, cancelled by shutdown only while the
            # connection waits for its next request (it is in _idle_scopes then).
            with trio.CancelScope() as idle:
                await self._serve_requests(stream, peer_host, idle)
        except ProtocolError as exc:
            log.info("closing connection from %s: %s", peer, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._connections -= 1
            if self._closing and self._connections == 0:
                self._drained.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _serve_requests(self, stream: trio.SocketStream, peer_host: str, idle: trio.CancelScope) -> None:
        """Answer requests in order until EOF or shutdown; see the module docstring."""
        decoder = FrameDecoder(self.config.socket_request_max_bytes)
        session = Session(peer=peer_host)
        out: list = []  # buffers of responses ready to send, in request order
        out_bytes = 0

        async def send_ready() -> bool:
            """Send the responses held, if any; True if there were some."""
            nonlocal out, out_bytes
            if not out:
                return False
            ready, out, out_bytes = out, [], 0
            await _send_buffers(stream, ready)
            return True

        while not self._closing:  # checked after every receive: nothing is sent once idle is cancelled
            try:
                frame = decoder.next_frame()
                if frame is not None:
                    parts = await self._handle_frame(frame, peer_host, send_ready, session)
            except Exception:
                await send_ready()  # answer the requests before this one
                raise
            if frame is None:
                await send_ready()
                self._idle_scopes.add(idle)
                try:
                    data = await stream.receive_some(_RECEIVE_CHUNK)
                finally:
                    self._idle_scopes.discard(idle)
                if not data:
                    return
                decoder.receive_data(data)
                continue
            if parts:
                out += parts
                out_bytes += sum(map(len, parts))
                if len(out) >= _SEND_AFTER_BUFFERS or out_bytes >= _SEND_AFTER_BYTES:
                    await send_ready()
            if session.close_after_reply:  # failed authentication: answer, then hang up
                await send_ready()
                raise ProtocolError(f"authentication failed for {peer_host}")
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
        request, result = self._dispatch_frame(frame, peer, session)
        if request is None:
            return result
        parts = self._ready(request, result)
        if parts is _PENDING and before_wait is not None and await before_wait():
            # Data may have been appended (its wake-up missed) while we sent.
            parts = self._ready(request, result)
        if parts is not _PENDING:
            return parts
        return await self._complete(request, result)

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
            if exc.api_key is not None and exc.correlation_id is not None:
                parts = unsupported_version_response(exc.api_key, exc.api_version, exc.correlation_id)
                if parts is not None:
                    return None, parts
            raise
        if not is_served(request.api_key, request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return None, encode_unsupported_api_versions(request.correlation_id, SERVED_VERSIONS)
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

    def _ready(self, request, result):
        """The response buffers (None: no response) if ``result`` is complete
        without waiting (a FetchOperation is attempted once), else ``_PENDING``."""
        if isinstance(result, Deferred):
            if not result.done:
                return _PENDING
            result = result.value
        if isinstance(result, FetchOperation):
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
            body = await self._long_poll(result)
        elif isinstance(result, Reply):
            if result.appended:
                self.waiters.notify(result.appended)
            for plog, offset in result.flush:
                await trio.to_thread.run_sync(plog.flush, offset)
            body = result.body
        else:
            body = result
        if body is None:
            return None
        return encode_response(request, body)

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


async def _send_buffers(stream: trio.SocketStream, parts: Sequence) -> None:
    """Send responses given as buffers (none: nothing to do): small ones joined,
    large ones by sendmsg without a copy."""
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
    if len(chunks) == 1:
        await stream.send_all(chunks[0])
        return
    sock = getattr(stream, "socket", None)
    if sock is None:  # a TLS stream: the bytes go through the SSL object anyway
        await stream.send_all(b"".join(chunks))
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
            if config.log_cleaner_enable:
                nursery.start_soon(run_cleaner, broker, config.log_cleaner_backoff_ms)
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
            await trio.to_thread.run_sync(broker.close)
        log.info("clean shutdown complete")
