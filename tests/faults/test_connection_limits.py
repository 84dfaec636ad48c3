"""Load: many idle connections, slow consumers, too many connections, and a
client that pipelines without reading must not grow the broker's memory
without bound (issue #8).

Each test runs a real ``logbroker serve`` with a short
``connections.max.idle.ms`` (2 s) where it waits for closes, and measures the
broker's resident memory (``VmRSS`` of ``/proc/PID/status``) before and while
the load is held. VmRSS also counts the pages of the memory-mapped segments
that were touched, so each test reads its data once before the baseline.

The limits and why they bound memory are in docs/operations.md ("Connection
limits"); the figures measured here are in docs/reliability.md ("Load and
resource limits"). ``pytest -s`` prints one ``FAULT-SUMMARY`` line per load test.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import select
import socket
import struct
import threading
import time
import urllib.request

import pytest

from fault_support import create_topic, produce_all, read_partitions, summary, unique_topic, wait_until

IDLE_MS = 2000


@pytest.fixture(autouse=True)
def _enough_descriptors():
    """1,000 connections need 1,000 descriptors here and 1,000 in the broker (it
    inherits this limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------ helpers


def _start(fault_broker, tmp_path, **settings):
    """A broker with ``settings`` (Python names) from a TOML file."""
    path = tmp_path / f"limits-{len(list(tmp_path.glob('limits-*.toml')))}.toml"
    path.write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
    return fault_broker("--config", str(path))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class _PeakRss:
    """Samples a process's VmRSS every 20 ms in a thread while in the ``with``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_kib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kib(self.pid))


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _api_versions(correlation_id: int, client_id: bytes = b"limits") -> bytes:
    """ApiVersions v0 (request header v1)."""
    return _frame(struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id)


def _fetch(correlation_id: int, topic: str, max_bytes: int, client_id: bytes = b"slow") -> bytes:
    """Fetch v4 of partition 0 from offset 0: max_wait 0, min_bytes 1, ``max_bytes``
    for the response and the partition."""
    name = topic.encode()
    body = struct.pack(">hhih", 1, 4, correlation_id, len(client_id)) + client_id
    body += struct.pack(">iiiib", -1, 0, 1, max_bytes, 0)
    body += struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, max_bytes)
    return _frame(body)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError(f"EOF with {left} of {n} bytes missing")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> tuple[int, int]:
    """(correlation id, size) of the next response frame."""
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    body = _read_exactly(sock, size)
    return struct.unpack_from(">i", body)[0], size


def _answered(sock: socket.socket, correlation_id: int = 7) -> bool:
    """An ApiVersions on ``sock`` is answered (False: the broker closed it)."""
    try:
        sock.settimeout(5)
        sock.sendall(_api_versions(correlation_id))
        return _read_response(sock)[0] == correlation_id
    except (ConnectionError, OSError):
        return False


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _wait_closed(socks: list[socket.socket], timeout: float) -> dict[int, float]:
    """``{index: monotonic time}`` at which the broker closed each socket (EOF or
    reset), waiting at most ``timeout`` seconds; data that arrives is dropped."""
    poller = select.poll()
    index = {}
    for i, sock in enumerate(socks):
        poller.register(sock, select.POLLIN)
        index[sock.fileno()] = i
    closed: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for fd, _events in poller.poll(100):
            try:
                data = socks[index[fd]].recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                closed[index[fd]] = time.monotonic()
                poller.unregister(fd)
    return closed


def _warm_up(broker) -> str:
    """Create a topic, produce and read it, so the baseline has every code path loaded."""
    topic = unique_topic("warm")
    create_topic(broker.bootstrap, topic)
    acked = produce_all(broker.bootstrap, topic, [(0, None, b"w%d" % i) for i in range(20)])
    [records] = read_partitions(broker.bootstrap, topic, [0]).values()
    assert [v for _, _, v in records] == [v for _, _, v in acked]
    gc.collect()  # close the clients' sockets
    return topic


def _produce_and_fetch(broker, hint: str) -> None:
    topic = unique_topic(hint)
    create_topic(broker.bootstrap, topic)
    acked = produce_all(broker.bootstrap, topic, [(0, None, b"%s-%d" % (hint.encode(), i)) for i in range(50)])
    [records] = read_partitions(broker.bootstrap, topic, [0]).values()
    assert [v for _, _, v in records] == [v for _, _, v in acked]


# ---------------------------------------------------------------------- tests


IDLE_CONNECTIONS = 1000
#: An idle connection holds a trio task, its socket, a Session and an empty
#: FrameDecoder, and no buffer (trio allocates the receive buffer only once data
#: is ready): about 7 KiB measured. 20 KiB each leaves room for allocator noise;
#: one 256 KiB receive buffer per connection would need 250 MiB.
IDLE_RSS_BOUND_KIB = IDLE_CONNECTIONS * 20


def test_idle_connections_cost_little_and_are_closed(fault_broker, tmp_path):
    broker = _start(fault_broker, tmp_path, connections_max_idle_ms=IDLE_MS, max_connections_per_ip=2000)
    pid = broker.proc.pid
    _warm_up(broker)
    fds_before, rss_before = _descriptors(pid), _rss_kib(pid)

    socks, opened = [], []
    for _ in range(IDLE_CONNECTIONS):
        socks.append(_connect(broker.port))
        opened.append(time.monotonic())
    # The broker accepted them all (not just the kernel's backlog).
    wait_until(lambda: _descriptors(pid) >= fds_before + IDLE_CONNECTIONS - 5, 10,
               message=f"the broker to accept {IDLE_CONNECTIONS} connections")
    rss_held = _rss_kib(pid)

    closed = _wait_closed(socks, timeout=IDLE_MS / 1000 + 5)
    lifetimes = sorted(closed[i] - opened[i] for i in closed)
    for sock in socks:
        sock.close()
    rss_after = _rss_kib(pid)
    _produce_and_fetch(broker, "after-idle")
    summary("idle_connections", connections=IDLE_CONNECTIONS, rss_before_kib=rss_before, rss_held_kib=rss_held,
            rss_after_close_kib=rss_after, kib_per_connection=round((rss_held - rss_before) / IDLE_CONNECTIONS, 1),
            closed=len(closed), first_close_s=round(lifetimes[0], 2) if lifetimes else None,
            last_close_s=round(lifetimes[-1], 2) if lifetimes else None)

    assert rss_held - rss_before < IDLE_RSS_BOUND_KIB, (
        f"{IDLE_CONNECTIONS} idle connections grew the broker from {rss_before} to {rss_held} KiB")
    assert len(closed) == IDLE_CONNECTIONS, f"only {len(closed)} of {IDLE_CONNECTIONS} idle connections were closed"
    assert lifetimes[0] >= IDLE_MS / 1000 * 0.9, f"an idle connection was closed after {lifetimes[0]:.2f} s"
    assert lifetimes[-1] <= IDLE_MS / 1000 + 3, f"an idle connection stayed open {lifetimes[-1]:.2f} s"
    wait_until(lambda: _descriptors(pid) <= fds_before + 5, 5, message="the broker to release the descriptors")


SLOW_CONSUMERS = 50
PIPELINED_FETCHES = 20
TOPIC_BYTES = 4 << 20
#: Per stuck connection the broker holds the response it is sending (views of
#: the mapped segment, already resident and shared, plus small headers) and at
#: most queued.max.bytes (256 KiB) of read requests: 50 x 512 KiB = 25 MiB at
#: worst, plus 15 MiB for the rest. Building every response would take
#: 50 x 20 x 4 MiB = 4 GiB.
SLOW_RSS_BOUND_KIB = SLOW_CONSUMERS * 512 + 15 * 1024


def test_slow_consumers_are_bounded_and_disconnected(fault_broker, tmp_path):
    broker = _start(fault_broker, tmp_path, connections_max_idle_ms=IDLE_MS)
    pid = broker.proc.pid
    topic = unique_topic("big")
    create_topic(broker.bootstrap, topic)
    value = bytes(range(256)) * 4
    produce_all(broker.bootstrap, topic, [(0, None, value)] * (TOPIC_BYTES // len(value)))
    read_partitions(broker.bootstrap, topic, [0])  # every page of the segment resident before the baseline
    normal_topic = _warm_up(broker)
    rss_before = _rss_kib(pid)

    slow = []
    with _PeakRss(pid) as peak:
        for _ in range(SLOW_CONSUMERS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its window fills at once
            sock.connect(("127.0.0.1", broker.port))
            sock.sendall(b"".join(_fetch(c, topic, 2 * TOPIC_BYTES) for c in range(PIPELINED_FETCHES)))
            slow.append(sock)
        stuck_at = time.monotonic()
        # Meanwhile a normal client is served, and quickly.
        rtts = []
        with socket.create_connection(("127.0.0.1", broker.port)) as normal:
            for c in range(200):
                started = time.perf_counter()
                assert _answered(normal, c)
                rtts.append((time.perf_counter() - started) * 1000)
        acked = produce_all(broker.bootstrap, normal_topic, [(0, None, b"meanwhile")])
        [records] = read_partitions(broker.bootstrap, normal_topic, [0]).values()
        normal_done = time.monotonic() - stuck_at
        wait_until(lambda: broker.log.count("took no response bytes") >= SLOW_CONSUMERS, IDLE_MS / 1000 + 8,
                   message=f"{SLOW_CONSUMERS} slow consumers to be disconnected")
        cut_after = time.monotonic() - stuck_at
    for sock in slow:
        sock.close()
    rtts.sort()
    summary("slow_consumers", consumers=SLOW_CONSUMERS, pipelined_fetches=PIPELINED_FETCHES,
            topic_bytes=TOPIC_BYTES, rss_before_kib=rss_before, rss_peak_kib=peak.peak,
            normal_rtt_ms_p50=round(rtts[len(rtts) // 2], 2), normal_rtt_ms_max=round(rtts[-1], 2),
            normal_client_done_s=round(normal_done, 2), all_disconnected_after_s=round(cut_after, 2))

    assert records[-1][2] == b"meanwhile" and records[-1][0] == acked[0][1]
    assert peak.peak - rss_before < SLOW_RSS_BOUND_KIB, (
        f"{SLOW_CONSUMERS} slow consumers grew the broker from {rss_before} to {peak.peak} KiB")
    assert rtts[len(rtts) // 2] < 20 and rtts[-1] < 500, f"ApiVersions round trips {rtts[:3]}...{rtts[-3:]} ms"
    assert cut_after <= IDLE_MS / 1000 + 6
    _produce_and_fetch(broker, "after-slow")


def test_connections_beyond_the_limits_are_refused(fault_broker, tmp_path):
    broker = _start(fault_broker, tmp_path, max_connections=6, max_connections_per_ip=4, metrics_port=0)
    port = broker.port
    try:
        other = _connect(port, "127.0.0.2")
        other.close()
    except OSError as exc:
        pytest.skip(f"cannot connect from 127.0.0.2: {exc}")
    time.sleep(0.2)  # the probe above must not count: let the broker see its close
    mine = [_connect(port) for _ in range(4)]
    assert all(_answered(s) for s in mine)
    fifth = _connect(port)
    assert not _answered(fifth), "a 5th connection from one address was served (max.connections.per.ip=4)"
    others = [_connect(port, "127.0.0.2") for _ in range(2)]
    assert all(_answered(s) for s in others), "another address was refused below max.connections"
    seventh = _connect(port, "127.0.0.3")
    assert not _answered(seventh), "a 7th connection was served (max.connections=6)"
    # A burst of refusals is logged at most once a second: the first refusal
    # (the 5th) at once, the 7th and the burst in one line a second later.
    burst = [_connect(port, "127.0.0.3") for _ in range(100)]
    assert not any(_answered(s) for s in burst[:5])

    def refused_counts():
        return [int(m.group(1)) for line in broker.log_lines if (m := re.search(r"refused (\d+)", line))]

    wait_until(lambda: sum(refused_counts()) == 102, 5, message="the burst's refusals to be logged")
    # Closing a connection frees its slot.
    mine.pop().close()
    again = wait_until(lambda: (s := _connect(port)) and (_answered(s) and s), 5, 0.1,
                       message="a slot to free up after a close")
    refusal_lines = [line for line in broker.log_lines if "refused" in line]
    summary("connection_limits", refused=102, refusal_log_lines=len(refusal_lines))
    assert refused_counts() == [1, 101], f"refusals logged too often:\n{''.join(refusal_lines)}"
    assert "max.connections.per.ip=4" in refusal_lines[0]
    assert "max.connections=6" in refusal_lines[1]
    metrics_port = int(re.search(r"metrics on http://\S+:(\d+)/metrics", broker.log).group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        assert "\nlogbroker_connections_refused_total 102.0\n" in response.read().decode()
    for sock in [*mine, fifth, *others, seventh, *burst, again]:
        sock.close()


PIPELINED = 10_000
QUEUED_MAX_REQUESTS = 16
#: Responses of 8 KiB each (one batch per record): all 10,000 would be 80 MiB.
#: The broker holds at most queued.max.requests (16) handled requests' responses,
#: one read of queued.max.bytes (256 KiB) and the response being sent.
PIPELINE_RSS_BOUND_KIB = 16 * 1024


def test_a_client_that_pipelines_without_reading_is_held_back(fault_broker, tmp_path):
    broker = _start(fault_broker, tmp_path, queued_max_requests=QUEUED_MAX_REQUESTS)
    pid = broker.proc.pid
    topic = unique_topic("pipe")
    create_topic(broker.bootstrap, topic)
    # One record per batch, so a Fetch of 8 KiB returns 8 KiB.
    produce_all(broker.bootstrap, topic, [(0, None, b"x" * 1000)] * 64, **{"linger.ms": 0, "batch.num.messages": 1})
    read_partitions(broker.bootstrap, topic, [0])
    _warm_up(broker)
    rss_before = _rss_kib(pid)

    padding = b"p" * 200
    requests = [_fetch(c, topic, 8192, client_id=padding) for c in range(PIPELINED)]
    stream = memoryview(b"".join(requests))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", broker.port))
    sock.setblocking(False)
    sent = 0
    with _PeakRss(pid) as peak:
        # Write without reading for up to 2 s (or until the broker stopped reading for 0.5 s).
        deadline, last_progress = time.monotonic() + 2, time.monotonic()
        while sent < len(stream) and time.monotonic() < deadline and time.monotonic() - last_progress < 0.5:
            try:
                n = sock.send(stream[sent:])
            except BlockingIOError:
                select.select([], [sock], [], 0.05)
                continue
            sent += n
            last_progress = time.monotonic()
        sent_while_not_reading = sent
    # Then read every response while sending the rest: nothing was lost or reordered.
    sock.setblocking(True)
    sock.settimeout(30)
    writer = threading.Thread(target=sock.sendall, args=(stream[sent:],), daemon=True)
    writer.start()
    correlation_ids = []
    for _ in range(PIPELINED):
        correlation_ids.append(_read_response(sock)[0])
    writer.join(10)
    sock.close()
    summary("pipelining_without_reading", requests=PIPELINED, request_bytes=len(stream),
            sent_while_not_reading=sent_while_not_reading, queued_max_requests=QUEUED_MAX_REQUESTS,
            rss_before_kib=rss_before, rss_peak_kib=peak.peak)

    assert sent_while_not_reading < len(stream) // 2, (
        f"the client wrote {sent_while_not_reading} of {len(stream)} bytes without reading a response")
    assert peak.peak - rss_before < PIPELINE_RSS_BOUND_KIB, (
        f"the broker grew from {rss_before} to {peak.peak} KiB")
    assert correlation_ids == list(range(PIPELINED))


def test_a_client_reset_during_a_large_send_leaves_the_broker_up(fault_broker, tmp_path):
    """Found while writing these tests: a connection reset (ECONNRESET) while the
    broker was in ``sendmsg`` of a multi-part response escaped the connection
    as an OSError, and the whole broker exited ("Error: cannot start: [Errno
    104] Connection reset by peer")."""
    broker = _start(fault_broker, tmp_path)
    topic = unique_topic("reset")
    create_topic(broker.bootstrap, topic)
    produce_all(broker.bootstrap, topic, [(0, None, b"r" * 1024)] * 4096)
    for c in range(10):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.connect(("127.0.0.1", broker.port))
        except ConnectionRefusedError:
            time.sleep(1)
            pytest.fail(f"the broker stopped listening after {c} resets:\n{broker.tail(3)}")
        sock.sendall(_fetch(c, topic, 8 << 20))
        time.sleep(0.05)  # the broker is now blocked sending the 4 MiB response
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    time.sleep(0.2)
    assert broker.running, f"the broker exited:\n{broker.tail(5)}"
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        assert _answered(sock)
    _produce_and_fetch(broker, "after-reset")
