"""Before authentication a connection costs little, and failed logins are slow
and named: a real ``logbroker serve`` on a SASL_PLAINTEXT listener, raw sockets
for what real clients would never send, kafka-python for the good logins.

Limits tested: frames of at most ``sasl.server.max.receive.size`` before
login, ``max.unauthenticated.connections.per.ip``,
``sasl.authentication.timeout.ms``, ``connection.failed.authentication.delay.ms``.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from brokerproc import wait_until
from logbroker.broker.security import UserStore

SASL_AUTHENTICATION_FAILED = 58
MIB = 1024 * 1024


def _secured(broker_factory, tmp_path, **settings):
    data = tmp_path / "data"
    UserStore(data).add("alice", "s3cret")
    config = tmp_path / "broker.toml"
    tmp_path.mkdir(exist_ok=True)
    lines = ['security_protocol = "SASL_PLAINTEXT"'] + [f"{k} = {v}" for k, v in settings.items()]
    config.write_text("\n".join(lines) + "\n")
    return broker_factory("--config", str(config), data_dir=data)


# ----------------------------------------------------------------- raw protocol


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _header(api_key: int, version: int, correlation_id: int) -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, 3) + b"raw"


def _api_versions(correlation_id: int) -> bytes:
    return _frame(_header(18, 0, correlation_id))


def _handshake(mechanism: str, correlation_id: int = 1) -> bytes:
    return _frame(_header(17, 1, correlation_id) + struct.pack(">h", len(mechanism)) + mechanism.encode())


def _authenticate(auth_bytes: bytes, correlation_id: int = 2) -> bytes:
    """SaslAuthenticate v1 (not flexible): auth_bytes as int32-length bytes."""
    return _frame(_header(36, 1, correlation_id) + struct.pack(">i", len(auth_bytes)) + auth_bytes)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _response(sock: socket.socket) -> bytes:
    """The next response body after its correlation id."""
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return _read_exactly(sock, size)[4:]


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _answered(sock: socket.socket, correlation_id: int = 9) -> bool:
    """An ApiVersions on ``sock`` is answered (False: the broker closed it)."""
    try:
        sock.sendall(_api_versions(correlation_id))
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        return struct.unpack_from(">i", _read_exactly(sock, size))[0] == correlation_id
    except OSError:
        return False


def _plain_login(port: int, user: str, password: str, source: str = "127.0.0.1") -> tuple[socket.socket, int]:
    """Connect and log in with PLAIN; (the socket, SaslAuthenticate's error code)."""
    sock = _connect(port, source)
    sock.sendall(_handshake("PLAIN"))
    assert struct.unpack_from(">h", _response(sock))[0] == 0
    sock.sendall(_authenticate(b"\0" + user.encode() + b"\0" + password.encode()))
    return sock, struct.unpack_from(">h", _response(sock))[0]


def _try_login(port: int) -> socket.socket | None:
    """A logged-in connection, or None if the broker closed it first."""
    try:
        sock, error = _plain_login(port, "alice", "s3cret")
    except OSError:
        return None
    assert error == 0
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """The broker closed ``sock`` (EOF or reset) within ``seconds``; data is dropped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(1 << 16):
                    return True
            except OSError:
                return True
    return False


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _round_trip(bootstrap: str, topic: str, value: bytes) -> list[bytes]:
    login = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                 sasl_plain_username="alice", sasl_plain_password="s3cret")
    producer = KafkaProducer(bootstrap_servers=bootstrap, **login)
    producer.send(topic, value).get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000, **login)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    return values


# ----------------------------------------------------------------------- tests


def test_unauthenticated_large_frames_do_not_grow_the_broker(broker_factory, tmp_path):
    """5 connections that have not logged in declare 100 MB frames and send 20 MB
    each: each is closed after its first 4 bytes, the broker's RSS does not grow
    by their 100 MB, and a client that logged in works meanwhile."""
    broker = _secured(broker_factory, tmp_path)
    assert _round_trip(broker.bootstrap, "warm", b"w") == [b"w"]  # code paths loaded before the baseline
    pid = broker.proc.pid
    baseline = _rss_kib(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kib(pid))
            stop.wait(0.01)

    sent = [0] * 5
    closed = [False] * 5

    def flood(i: int) -> None:
        sock = _connect(broker.port)
        chunk = b"\0" * MIB
        try:
            sock.sendall(struct.pack(">i", 100 * MIB))
            for _ in range(20):
                sock.sendall(chunk)
                sent[i] += len(chunk)
            closed[i] = _closed_within(sock, 10)
        except OSError:  # reset: the broker closed it while we sent
            closed[i] = True
        finally:
            sock.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    floods = [threading.Thread(target=flood, args=(i,)) for i in range(5)]
    for thread in floods:
        thread.start()
    try:
        assert _round_trip(broker.bootstrap, "meanwhile", b"still served") == [b"still served"]
    finally:
        for thread in floods:
            thread.join(60)
        stop.set()
        sampler.join()
    growth_mib = (peak[0] - baseline) / 1024
    print(f"RSS baseline {baseline // 1024} MiB, peak growth {growth_mib:.1f} MiB, "
          f"sent before the close {[s // MIB for s in sent]} MiB")
    assert all(closed), closed
    assert growth_mib < 16, f"the broker grew by {growth_mib:.1f} MiB for unauthenticated connections"
    assert broker.log.count("before authentication (sasl.server.max.receive.size)") == 5
    assert "Traceback" not in broker.log


def test_unauthenticated_connections_per_ip_are_bounded(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path, max_unauthenticated_connections_per_ip=3)
    waiting = [_connect(broker.port) for _ in range(3)]
    assert all(_answered(sock) for sock in waiting)
    fourth = _connect(broker.port)
    assert _closed_within(fourth, 5), "a 4th unauthenticated connection from one address must be closed"
    assert _answered(_connect(broker.port, source="127.0.0.2")), "another address has its own allowance"
    # A closed connection frees its place; one that logs in no longer takes one.
    waiting[0].close()
    logged_in = wait_until(lambda: _try_login(broker.port), timeout=5, what="a login after a close")
    waiting.append(_connect(broker.port))  # kept open: a socket that is collected is closed
    assert _answered(waiting[-1]), "the logged-in connection still counted"
    assert _closed_within(_connect(broker.port), 5)
    assert _answered(logged_in)
    assert "max.unauthenticated.connections.per.ip=3 reached" in broker.log


def test_a_connection_that_does_not_log_in_in_time_is_closed(broker_factory, tmp_path):
    """A peer that keeps sending a frame byte by byte is never idle, yet is
    closed by sasl.authentication.timeout.ms; a logged-in one stays."""
    broker = _secured(broker_factory, tmp_path, sasl_authentication_timeout_ms=1000)
    slow = _connect(broker.port)
    assert _answered(slow)
    logged_in, error = _plain_login(broker.port, "alice", "s3cret")
    assert error == 0
    started = time.monotonic()
    slow.sendall(struct.pack(">i", 100))
    closed_after = None
    for _ in range(40):
        try:
            slow.sendall(b"\0")
        except OSError:
            closed_after = time.monotonic() - started
            break
        if _closed_within(slow, 0.1):
            closed_after = time.monotonic() - started
            break
    assert closed_after is not None and closed_after < 3.5, closed_after
    assert _answered(logged_in), "a connection that logged in is not subject to the login deadline"
    # The log line is read from the broker's stderr by another thread: give it a moment.
    wait_until(lambda: "not authenticated within 1000 ms" in broker.log, 5, what="the login-deadline log line")


def test_failed_logins_are_delayed_per_connection_and_named(broker_factory, tmp_path):
    """20 wrong PLAIN guesses in a row take at least 20 delays, each answered
    SASL_AUTHENTICATION_FAILED and then closed; good logins in parallel are not
    delayed; the log names the user (escaped) and never holds a password."""
    delay_ms = 200
    broker = _secured(broker_factory, tmp_path, connection_failed_authentication_delay_ms=delay_ms)
    good_times: list[float] = []
    stop = threading.Event()

    def good_logins() -> None:
        while not stop.is_set():
            started = time.monotonic()
            sock, error = _plain_login(broker.port, "alice", "s3cret")
            good_times.append(time.monotonic() - started)
            sock.close()
            assert error == 0

    helper = threading.Thread(target=good_logins, daemon=True)
    helper.start()
    started = time.monotonic()
    try:
        for i in range(20):
            sock, error = _plain_login(broker.port, "mallory\nINFO forged line", f"hunter2-guess-{i}")
            assert error == SASL_AUTHENTICATION_FAILED
            assert _closed_within(sock, 2), "the connection is closed after a failed login"
            sock.close()
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        helper.join(10)
    print(f"20 wrong guesses: {elapsed:.2f} s; {len(good_times)} good logins meanwhile, "
          f"slowest {max(good_times) * 1000:.0f} ms")
    assert elapsed >= 20 * delay_ms / 1000
    assert len(good_times) >= 5 and max(good_times) < delay_ms / 1000

    def failure_lines() -> list[str]:
        return [line for line in broker.log_lines if "login of user 'mallory\\nINFO forged line' failed" in line]

    # The log is read from the broker's stderr by a thread: give the last line time to arrive.
    wait_until(lambda: len(failure_lines()) >= 20, timeout=10, message="20 failed logins logged")
    failures = failure_lines()
    assert len(failures) == 20, broker.tail()
    assert "PLAIN login" in failures[0]
    assert "hunter2" not in broker.log
    assert "INFO forged line" not in broker.log.replace("mallory\\nINFO forged line", "")


def test_failed_scram_login_names_the_user(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path)
    producer = None
    with pytest.raises(Exception):
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                                 sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                                 sasl_plain_password="not-her-password", max_block_ms=3000,
                                 **({"bootstrap_timeout_ms": 3000}
                                    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG else {}))
        producer.send("t", b"x").get(timeout=5)
    if producer is not None:
        producer.close(0)
    assert "SCRAM-SHA-512 login of user 'alice' failed" in broker.log
    assert "not-her-password" not in broker.log


def test_plain_without_tls_warns_at_start_up(broker_factory, tmp_path):
    warning = "SASL PLAIN is offered on a SASL_PLAINTEXT listener"
    assert warning in _secured(broker_factory, tmp_path / "plain").log
    assert warning not in _secured(broker_factory, tmp_path / "scram", sasl_enabled_mechanisms='"SCRAM-SHA-256"').log
