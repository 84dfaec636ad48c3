"""Malformed input on one connection closes only that connection.

Bystanders opened beforehand (a raw connection, a kafka-python producer and a
consumer) must keep working after each bad connection: the raw one on the very
same socket, which proves the broker did not drop it. Also: an ApiVersions
request of a version the broker does not serve gets UNSUPPORTED_VERSION (35) in
the version-0 response shape, listing the supported range.
"""

from __future__ import annotations

import itertools
import socket
import struct

import pytest

from interop_support import KP, consume, create_topic, make_consumer, make_producer, unique_topic

API_VERSIONS = 18
METADATA = 3
UNSUPPORTED_VERSION = 35

_correlation = itertools.count(1)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _header_v1(api_key: int, version: int, correlation_id: int, client_id: bytes = b"raw-test") -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _read_response(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", _read_exact(sock, 4))
    return _read_exact(sock, size)


def _api_versions_v0(sock: socket.socket) -> dict[int, tuple[int, int]]:
    """Send ApiVersions v0 on ``sock``; return {api_key: (min, max)} from an error-free answer."""
    cid = next(_correlation)
    sock.sendall(_frame(_header_v1(API_VERSIONS, 0, cid)))
    resp = _read_response(sock)
    corr, error, count = struct.unpack_from(">ihi", resp, 0)
    assert (corr, error) == (cid, 0)
    entries = [struct.unpack_from(">hhh", resp, 10 + 6 * i) for i in range(count)]
    assert len(resp) == 10 + 6 * count
    return {k: (lo, hi) for k, lo, hi in entries}


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _assert_closed_by_broker(sock: socket.socket, timeout: float = 5.0) -> None:
    """The broker closes its side within ``timeout`` (anything it sent first is ignored)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError(f"the broker kept the connection open for {timeout}s") from None
    finally:
        sock.close()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Bystanders:
    def __init__(self, broker):
        self.broker = broker
        self.topic = unique_topic("raw-bystanders")
        create_topic(broker.bootstrap, self.topic)
        self.raw = _connect(broker.port)
        assert API_VERSIONS in _api_versions_v0(self.raw)
        self.producer = make_producer(KP, broker.bootstrap)
        self.consumer = make_consumer(KP, broker.bootstrap, self.topic)
        self.sent = 0
        self.check()

    def check(self):
        assert self.broker.running, self.broker.log
        assert API_VERSIONS in _api_versions_v0(self.raw)  # same socket as before
        value = b"still-alive-%d" % self.sent
        assert self.producer.send_many(self.topic, [dict(key=b"k", value=value, partition=0)]) == [(0, self.sent)]
        [rec] = consume(self.consumer, 1)
        assert (rec.offset, rec.value) == (self.sent, value)
        self.sent += 1
        fresh = _connect(self.broker.port)  # and new connections are still accepted
        try:
            assert API_VERSIONS in _api_versions_v0(fresh)
        finally:
            fresh.close()

    def close(self):
        self.raw.close()
        self.producer.close()
        self.consumer.close()


@pytest.fixture(scope="module")
def bystanders(module_broker):
    b = Bystanders(module_broker)
    yield b
    b.close()


def test_http_garbage_closes_connection(module_broker, bystanders):
    sock = _connect(module_broker.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # "GET " read as a ~1.2 GB frame size
    _assert_closed_by_broker(sock)
    bystanders.check()


def test_garbage_body_closes_connection(module_broker, bystanders):
    # A Metadata v4 request whose topic array claims 1000 entries and holds none.
    body = _header_v1(METADATA, 4, next(_correlation)) + struct.pack(">i", 1000) + b"\xde\xad\xbe\xef"
    sock = _connect(module_broker.port)
    sock.sendall(_frame(body))
    _assert_closed_by_broker(sock)
    bystanders.check()


def test_truncated_frame_then_close(module_broker, bystanders):
    frame = _frame(_header_v1(API_VERSIONS, 0, next(_correlation)))
    sock = _connect(module_broker.port)
    sock.sendall(frame[:7])  # size plus half a header
    sock.close()
    bystanders.check()


def test_truncated_frame_then_half_close(module_broker, bystanders):
    sock = _connect(module_broker.port)
    sock.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00")  # 6 of 100 promised bytes
    sock.shutdown(socket.SHUT_WR)  # EOF mid-frame: the broker must give up on this connection
    _assert_closed_by_broker(sock)
    bystanders.check()


@pytest.mark.parametrize("size_bytes", [b"\x80\x00\x00\x00", b"\x7f\xff\xff\xff"], ids=["2GiB", "2GiB-1"])
def test_huge_declared_size_closes_connection(module_broker, bystanders, size_bytes):
    rss_before = _rss_kib(module_broker.proc.pid)
    sock = _connect(module_broker.port)
    sock.sendall(size_bytes + _header_v1(API_VERSIONS, 0, next(_correlation)))
    _assert_closed_by_broker(sock)
    growth_mib = (_rss_kib(module_broker.proc.pid) - rss_before) / 1024
    assert growth_mib < 100, f"broker RSS grew by {growth_mib:.0f} MiB for a declared 2 GiB frame"
    bystanders.check()


def test_unknown_api_key_closes_connection(module_broker, bystanders):
    sock = _connect(module_broker.port)
    sock.sendall(_frame(_header_v1(9999, 0, next(_correlation))))
    _assert_closed_by_broker(sock)
    bystanders.check()


def test_api_versions_unsupported_version_gets_v0_error(module_broker, bystanders):
    cid = next(_correlation)
    # ApiVersions v5 (flexible: header v2 with empty tagged fields; body like v3+).
    header = struct.pack(">hhih", API_VERSIONS, 5, cid, 3) + b"raw" + b"\x00"
    body = b"\x04raw" + b"\x041.0" + b"\x00"
    sock = _connect(module_broker.port)
    try:
        sock.sendall(_frame(header + body))
        resp = _read_response(sock)
        # v0 shape: correlation id, error code, [api_key, min, max] -- no tagged fields, no throttle time.
        corr, error, count = struct.unpack_from(">ihi", resp, 0)
        assert (corr, error) == (cid, UNSUPPORTED_VERSION)
        assert 1 <= count <= 100 and len(resp) == 10 + 6 * count, resp.hex()
        ranges = {k: (lo, hi) for k, lo, hi in (struct.unpack_from(">hhh", resp, 10 + 6 * i) for i in range(count))}
        assert ranges[API_VERSIONS][0] == 0 and 3 <= ranges[API_VERSIONS][1] < 5, ranges
        # The connection stays usable: the client retries with a version from that range.
        assert API_VERSIONS in _api_versions_v0(sock)
    finally:
        sock.close()
    bystanders.check()
