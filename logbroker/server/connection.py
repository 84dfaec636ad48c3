"""One client connection: the read loop, pipelining and the order of responses.

Pipelined requests: a connection handles every complete frame already
received before it sends, and sends the responses it has ready together (one
``send``/``sendmsg`` for many small responses), always in request order. A
request that must wait (a long-poll Fetch, a JoinGroup or SyncGroup, an
fsync) first sends whatever is ready, so no response is held back behind
another request's wait.

Bounds: a connection reads at most ``queued.max.bytes`` at a time (the rest
of a large frame whose buffer it already holds in one read) and only once it
has answered what it read before, so a client that pipelines without
reading is held back by TCP flow control, not by broker memory; it holds at
most ``queued.max.requests`` handled requests or ``queued.max.bytes`` of
responses before sending them. Its :class:`~logbroker.server.watchdog.Watch`
says since when it waits for its peer, for the idle watchdog.

A peer that closes its end while one of its requests waits (a long poll) is
gone: while a request waits the connection keeps reading (into the frame
buffer, at most ``queued.max.bytes``) only to see the end of the stream; at
the end the wait stops unanswered (a ShareFetch acquires nothing for a
client that left) and the connection closes, as Kafka drops a closed
connection's requests.

Before a connection to a SASL listener has authenticated, its frames are
capped at ``sasl.server.max.receive.size``; a failed login is answered after
``connection.failed.authentication.delay.ms`` (a sleep of this connection
only), then the connection is closed.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from logbroker.broker import BrokerConfig
from logbroker.broker.session import Session
from logbroker.errors import FrameTooLargeError
from logbroker.protocol import FrameDecoder
from logbroker.server.watchdog import Watch

log = logging.getLogger("logbroker.server")

HandleFrame = Callable[
    [bytes | memoryview, str, Callable[[], Awaitable[bool]], Session, Callable[[], Awaitable[None]]],
    Awaitable["Sequence[Any] | None"],
]
"""``handle_frame(frame, peer, before_wait, session, hung_up)`` -> response buffers or None."""

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
# A read of a large frame's rest waits for this much of it at most (the socket
# grows its receive buffer to hold it); below the minimum it is not worth two setsockopt calls.
_RCVLOWAT_MAX = 2 * 1024 * 1024
_RCVLOWAT_MIN = 32 * 1024
# A connection that sent nothing for this long drops its spare frame buffer (up to a request's size).
_SPARE_IDLE_SECONDS = 1.0


class Connection:
    """Serves the requests of one accepted stream in order (:meth:`serve`).

    ``handle_frame`` turns a frame into response buffers (the server's
    dispatcher); ``closing()`` says whether the server shuts down;
    ``on_authenticated()`` is called once the connection logged in.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        config: BrokerConfig,
        peer: str,
        watch: Watch,
        *,
        handle_frame: HandleFrame,
        closing: Callable[[], bool],
        on_authenticated: Callable[[], None],
    ) -> None:
        self.stream = stream
        self.config = config
        self.peer = peer  # "host:port", for the log
        self.watch = watch
        self.session = Session(peer="/" + watch.host)  # Kafka's "/host"
        self._handle_frame = handle_frame
        self._closing = closing
        self._on_authenticated = on_authenticated
        self._out: list[Any] = []  # buffers of responses ready to send, in request order
        self._out_bytes = 0
        self._handled = 0  # requests handled since the last send
        self._decoder = FrameDecoder(
            min(config.sasl_server_max_receive_size, config.socket_request_max_bytes) if config.requires_sasl
            else config.socket_request_max_bytes
        )
        self._peer_closed = False  # the peer ended the stream while a request waited
        self._socket: trio.socket.SocketType | None = getattr(stream, "socket", None)  # None: TLS

    def __repr__(self) -> str:
        return f"Connection(peer={self.peer!r}, session={self.session!r}, held={len(self._out)})"

    async def send_ready(self) -> bool:
        """Send the responses held, if any; True if there were some."""
        self._handled = 0
        if not self._out:
            return False
        ready, self._out, self._out_bytes = self._out, [], 0
        await send_buffers(self.stream, ready, self.watch)
        return True

    async def hung_up(self) -> None:
        """Return once the peer ends the stream (or resets it); for a request
        that waits, while nothing else reads. What the peer pipelines meanwhile
        is kept for the next frames, at most ``queued.max.bytes`` buffered in
        all (then it only waits to be cancelled)."""
        decoder = self._decoder
        while True:
            room = self.config.queued_max_bytes - decoder.buffered_bytes
            if room <= 0:
                await trio.sleep_forever()
            try:
                data = await self.stream.receive_some(room)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if not data:
                self._peer_closed = True
                return
            decoder.receive_data(data)

    async def serve(self) -> None:
        """Answer requests in order until EOF, a failed login or shutdown.

        :raises ProtocolError: the peer's bytes are wrong (a frame too large...).
        :raises InternalError: the broker failed and could not say so.
        :raises trio.BrokenResourceError: the peer reset the connection.
        """
        config = self.config
        session = self.session
        watch = self.watch
        authenticating = config.requires_sasl
        decoder = self._decoder
        receive_bytes = send_after_bytes = config.queued_max_bytes
        send_after_requests = config.queued_max_requests
        while not self._closing():  # checked after every receive: nothing is sent once cancelled
            try:
                frame = decoder.next_frame()
                if frame is not None:
                    parts = await self._handle_frame(frame, session.peer, self.send_ready, session, self.hung_up)
            except Exception as exc:
                await self.send_ready()  # answer the requests before this one
                if authenticating and isinstance(exc, FrameTooLargeError):
                    raise FrameTooLargeError(f"{exc} before authentication (sasl.server.max.receive.size)") from exc
                raise
            if frame is None:
                await self.send_ready()
                watch.awaiting_request = True
                watch.since = trio.current_time()
                try:
                    if not await self._receive(receive_bytes):
                        return
                finally:
                    watch.since = math.inf
                    watch.awaiting_request = False
                continue
            if self._peer_closed:  # while its request waited: nobody to answer
                log.debug("connection from %s closed by its peer during a wait", self.peer)
                return
            frame = None  # let the decoder reuse a large frame's buffer for the next one
            self._handled += 1
            if parts:
                self._out += parts
                self._out_bytes += sum(map(len, parts))
            if session.close_after_reply:  # failed authentication: answer late, then hang up
                await trio.sleep(config.connection_failed_authentication_delay_ms / 1000)
                await self.send_ready()
                log.info("closing connection from %s: %s", self.peer, session.failed_login or "authentication failed")
                return
            if authenticating and session.authenticated:
                authenticating = False
                decoder.max_frame_bytes = config.socket_request_max_bytes
                self._on_authenticated()
            if (self._handled >= send_after_requests or len(self._out) >= _SEND_AFTER_BUFFERS
                    or self._out_bytes >= send_after_bytes):
                if not await self.send_ready():  # nothing to send (acks=0 produce): still let others run
                    await trio.lowlevel.checkpoint()
        await self.send_ready()  # shutting down: answer what was handled


    async def _receive(self, max_bytes: int) -> bool:
        """Read what the peer sent into the decoder; False at the end of the stream.

        A plain socket reads straight into the decoder's buffer (no
        intermediate ``bytes``); a TLS stream hands over what it decrypted.
        A connection idle for a second gives up its spare frame buffer.
        """
        decoder = self._decoder
        sock = self._socket
        if sock is None:
            data = await self.stream.receive_some(max_bytes)
            decoder.receive_data(data)
            return bool(data)
        try:
            if decoder.holds_spare:
                with trio.move_on_after(_SPARE_IDLE_SECONDS) as idle:
                    await trio.lowlevel.wait_readable(sock)
                if idle.cancelled_caught:
                    decoder.release_spare()
            view = decoder.receive_buffer()
            if decoder.filling_large:  # bytes of a frame already held whole: no cap on the read
                count = await _recv_large_rest(sock, view)
            else:
                count = await sock.recv_into(view[:max_bytes] if len(view) > max_bytes else view)
        except OSError as exc:  # ECONNRESET: the peer's doing
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        decoder.received(count)
        return count > 0


async def send_buffers(stream: trio.abc.Stream, parts: Sequence[Any], watch: Watch) -> None:
    """Send responses given as buffers (none: nothing to do): small ones joined,
    large ones by sendmsg without a copy.

    ``watch.since`` is the time of the last progress while this waits for the
    peer to take bytes (``math.inf`` again once all is sent).

    :raises trio.BrokenResourceError: the peer reset the connection.
    """
    if not parts:
        return
    chunks: list[Any] = []
    small: list[Any] = []
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


async def _recv_large_rest(sock: trio.socket.SocketType, view: memoryview) -> int:
    """Receive more of a large frame (``view`` is what is missing of it): if
    the socket must be waited for, it wakes this task only once all of it has
    arrived, or :data:`_RCVLOWAT_MAX` bytes (``SO_RCVLOWAT``), so a megabyte
    request costs one wake-up and one read rather than one per TCP segment
    burst. What a read finds already there it takes as usual."""
    lowat = min(len(view), _RCVLOWAT_MAX)
    if lowat < _RCVLOWAT_MIN:
        return await sock.recv_into(view)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
    try:
        return await sock.recv_into(view)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def peer_address(stream: trio.abc.Stream) -> str:
    """``host:port`` of the peer of a TCP or TLS-over-TCP stream, ``?`` if unknown."""
    try:
        sock = stream.socket if hasattr(stream, "socket") else stream.transport_stream.socket  # type: ignore[attr-defined]  # SocketStream or SSLStream over one
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError):
        return "?"
