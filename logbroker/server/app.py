"""The trio server: one nursery owns the listener, the connections and the
maintenance tasks; each connection handles its requests in order.

Shutdown (``Server.shutdown``): stop accepting, let every connection finish
the request it is handling, wake long polls, flush, write the clean marker.
"""

from __future__ import annotations

import logging
import os
import math
from collections.abc import Sequence

import trio

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.deferred import Deferred
from logbroker.broker.handlers import (
    SERVED_VERSIONS,
    FetchOperation,
    Reply,
    dispatch,
    is_served,
    unsupported_version_response,
)
from logbroker.errors import ProtocolError, UnsupportedVersionError
from logbroker.protocol import (
    ApiKey,
    FrameDecoder,
    decode_request,
    encode_response,
    encode_unsupported_api_versions,
)
from logbroker.server.waiters import AppendWaiters

log = logging.getLogger("logbroker.server")

_RECEIVE_CHUNK = 256 * 1024
_COALESCE_BELOW = 16 * 1024
_MAX_IOV = 512


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
            if now >= next_flush:
                await trio.to_thread.run_sync(broker.flush_dirty)
                next_flush = now + flush_every
            if now >= next_retention:
                deleted = broker.apply_retention()
                if deleted:
                    log.info("retention deleted %d segments", deleted)
                next_retention = now + retention_every

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
        decoder = FrameDecoder(self.config.socket_request_max_bytes)
        try:
            while not self._closing:
                frame = decoder.next_frame()
                if frame is None:
                    with trio.CancelScope() as idle:
                        self._idle_scopes.add(idle)
                        try:
                            data = await stream.receive_some(_RECEIVE_CHUNK)
                        finally:
                            self._idle_scopes.discard(idle)
                    if idle.cancelled_caught or not data:
                        return
                    decoder.receive_data(data)
                    continue
                with trio.CancelScope(shield=True):
                    parts = await self._handle_frame(frame, peer_host)
                    if parts:
                        await _send_buffers(stream, parts)
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

    async def _handle_frame(self, frame, peer: str = "") -> Sequence | None:
        try:
            request = decode_request(frame, SERVED_VERSIONS)
        except UnsupportedVersionError as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                return encode_unsupported_api_versions(exc.correlation_id, SERVED_VERSIONS)
            if exc.api_key is not None and exc.correlation_id is not None:
                parts = unsupported_version_response(exc.api_key, exc.api_version, exc.correlation_id)
                if parts is not None:
                    return parts
            raise
        if not is_served(request.api_key, request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_unsupported_api_versions(request.correlation_id, SERVED_VERSIONS)
            raise ProtocolError(f"API key {request.api_key} v{request.api_version} is not served")
        try:
            self.broker.request_peer = peer
            result = dispatch(self.broker, request)
        except Exception as exc:
            log.exception("handler for API key %s failed", request.api_key)
            raise ProtocolError(f"internal error handling API key {request.api_key}") from exc
        self._timers_changed.set()
        if isinstance(result, Deferred):
            if not result.done:
                finished = trio.Event()
                result.add_done_callback(lambda _: finished.set())
                await finished.wait()
            result = result.value
        if isinstance(result, FetchOperation):
            body = await self._complete_fetch(result)
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

    async def _complete_fetch(self, op: FetchOperation):
        body = op.attempt(final=self._closing)
        if body is not None:
            return body
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
    """Send a response given as buffers: small ones joined, large ones by sendmsg without a copy."""
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
    sock = stream.socket
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
        host, port = stream.socket.getpeername()[:2]
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
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        bound = listeners[0].socket.getsockname()
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
