"""A loopback TCP proxy that counts requests and can lose a Produce response on purpose.

The broker is started with ``--advertised-port`` set to the proxy's port, so
clients reach it only through the proxy. When armed, the proxy forwards the
next Produce request to the broker, swallows the broker's response and closes
both sides: the client saw its request go out and no answer come back, so it
retries a batch the broker has already appended.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading

PRODUCE = 0


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _read_exact(sock, size)
    return None if body is None else head + body


class DropProxy:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target: tuple[str, int] | None = None
        self.lock = threading.Lock()
        self.armed = 0
        self.dropped = 0
        self.requests: collections.Counter[int] = collections.Counter()  # api key -> requests seen
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arm(self, count: int = 1) -> None:
        """Lose the responses of the next ``count`` Produce requests; ``dropped`` counts from here."""
        with self.lock:
            self.armed = count
            self.dropped = 0

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in list(self.sockets):
            _close(s)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, upstream]
            doomed: set[int] = set()
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client, upstream, doomed) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, _version, correlation_id = struct.unpack_from(">hhi", frame, 4)
                with self.lock:
                    self.requests[api_key] += 1
                    if api_key == PRODUCE and self.armed:
                        self.armed -= 1
                        doomed.add(correlation_id)
                upstream.sendall(frame)
        except OSError:
            pass
        _close(client)
        _close(upstream)

    def _responses(self, upstream, client, doomed) -> None:
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation_id,) = struct.unpack_from(">i", frame, 4)
                if correlation_id in doomed:
                    with self.lock:
                        self.dropped += 1
                    break
                client.sendall(frame)
        except OSError:
            pass
        _close(client)
        _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
