"""Throw bad input at a live ``logbroker serve`` and check it survives.

Usage: python tools/fuzz_broker.py [--inputs 100000] [--seed N] [--workers 8]
                                   [--timeout 5] [--data-dir DIR] [--quiet] [--log FILE]
                                   [--families F1,F2] [--exclude-apis 19,37]

It starts its own broker (a temp data directory, a free port), captures real
client requests by running kafka-python and confluent-kafka workloads through a
recording proxy, then sends ``--inputs`` inputs, each on a fresh connection
(the write side is shut after sending, so a cut-short frame cannot wait for
more bytes forever), from these families:

* ``random_bytes``      bytes with no structure at all
* ``random_frame``      a correct length prefix around random bytes
* ``random_header``     a request header (any API key and version, served or not) + random body
* ``mutated``           a captured request with bit flips, interesting integers
                        (-1, 0, 2^31-1, ...) written over fields, bytes inserted,
                        deleted or duplicated; the length prefix usually fixed up
* ``truncated``         a captured request cut short, length prefix kept or fixed up
* ``spliced``           the head of one captured request and the tail of another
* ``length_lies``       a captured body under a negative, zero, huge or wrong length
* ``pipelined``         2-6 captured and mutated requests in one write

Each input ends one of three ways: ``answered`` (at least one complete
response frame came back), ``closed`` (the broker closed without a full
response), or ``hung`` (neither within ``--timeout`` s). APIs that may
legitimately wait longer (Fetch, JoinGroup, SyncGroup, ShareFetch long polls)
are counted apart as ``waited``. Every 2,000 inputs the broker's liveness is
checked (the process, and an ApiVersions on a fresh connection); at the end a
normal client (confluent-kafka) must still produce and consume. The broker's
log is scanned for handler failures (``handler for API key ... failed``) and
tracebacks.

Prints ONE JSON object: sent, answered, closed, hung, waited, refused (the
connection could not even be opened), per-family counts, broker_alive,
client_ok, handler_errors (with samples), the broker's peak RSS and open
descriptors, how long SIGTERM took (``shutdown_s``, with a py-spy stack if it
took more than 45 s), elapsed_s. Exit status 0 if the broker survived,
nothing hung and the client worked. Results are in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FETCH, JOIN_GROUP, SYNC_GROUP, SHARE_FETCH = 1, 11, 14, 78
WAITING_APIS = {FETCH, JOIN_GROUP, SYNC_GROUP, SHARE_FETCH}
API_VERSIONS = 18
FAMILIES = ("random_bytes", "random_frame", "random_header", "mutated", "truncated", "spliced", "length_lies",
            "pipelined")
INTERESTING_8 = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, -1, 0x7FFF, -0x8000, 0x100, 255)
INTERESTING_32 = (0, 1, -1, 2, 0x7FFFFFFF, -0x80000000, 0xFFFF, 0x10000, 1 << 24, 100_000, 65536 * 16)
INTERESTING_64 = (0, -1, 1, 0x7FFFFFFFFFFFFFFF, -0x8000000000000000, 1 << 32)

_LISTENING = re.compile(r"listening on \S+:(\d+)")


# ------------------------------------------------------------------------- broker


class Broker:
    """A ``logbroker serve`` subprocess of our own."""

    def __init__(self, data_dir: str, *args: str) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    def start(self, timeout: float = 30.0) -> Broker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        cmd = [sys.executable, "-m", "logbroker", "serve", "--data-dir", self.data_dir, "--host", "127.0.0.1",
               "--port", str(self.port or 0), *self.args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                     cwd=str(REPO))
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("broker did not start:\n" + "".join(self.lines))
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM; if it has not exited after ``timeout`` s, record where it is stuck
        (``py-spy dump`` when installed) in ``self.stuck`` and SIGKILL it."""
        self.stuck = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                try:
                    done = subprocess.run([spy, "dump", "--pid", str(self.proc.pid)], capture_output=True,
                                          text=True, timeout=30)
                    self.stuck = done.stdout[-4000:] or done.stderr[-1000:]
                except (OSError, subprocess.TimeoutExpired) as exc:
                    self.stuck = f"(no stack: {exc})"
                self.proc.kill()
        return self.proc.wait()

    def fds(self) -> collections.Counter:
        """Open file descriptors of the broker by kind (socket, pipe, a file's suffix...)."""
        kinds: collections.Counter = collections.Counter()
        try:
            for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
                except OSError:
                    continue
                kind = target.split(":", 1)[0] if ":" in target and not target.startswith("/") else (
                    Path(target).suffix or Path(target).name)
                kinds[kind] += 1
        except OSError:
            pass
        return kinds

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


# ---------------------------------------------------------------------- capture


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class RecordingProxy:
    """Forwards loopback connections to the broker and keeps every request frame."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target: int | None = None
        self.frames: list[bytes] = []
        self.recording = True
        self.lock = threading.Lock()
        self.closed = False

    def start(self, target_port: int) -> None:
        self.target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                head = _read_exact(client, 4)
                if head is None:
                    break
                body = _read_exact(client, struct.unpack(">i", head)[0])
                if body is None:
                    break
                if self.recording:
                    with self.lock:
                        self.frames.append(head + body)
                upstream.sendall(head + body)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _responses(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def _confluent_workload(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (
        AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
    )

    quiet = {"log_level": 0}
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet})
    other = f"{topic}-ck"
    admin.create_topics([NewTopic(other, num_partitions=2, replication_factor=1,
                                  config={"retention.ms": "86400000"})])[other].result(15)
    admin.describe_configs([ConfigResource("topic", topic)])
    entry = ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
    for f in admin.incremental_alter_configs([ConfigResource(
            "topic", other, incremental_configs=[entry])]).values():
        try:
            f.result(10)
        except Exception:  # noqa: BLE001 - capturing requests, not testing admin
            pass
    admin.create_partitions([NewPartitions(other, 3)])[other].result(15)
    for codec in ("none", "gzip", "lz4", "zstd", "snappy"):
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": codec,
                      "linger.ms": 1, **quiet})
        for i in range(20):
            p.produce(topic, key=b"k%d" % i, value=b"v%d-" % i + b"x" * (i * 10), partition=i % 3,
                      headers=[("h", b"1")])
        p.flush(15)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-capture-ck", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "fetch.wait.max.ms": 100, **quiet})
    c.subscribe([topic])
    deadline, got = time.monotonic() + 15, 0
    while got < 50 and time.monotonic() < deadline:
        msgs = c.consume(100, 0.5)
        got += len([m for m in msgs if not m.error()])
        if msgs:
            c.commit(asynchronous=False)
    c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.offsets_for_times([TopicPartition(topic, 0, int(time.time() * 1000) - 60_000)], timeout=10)
    c.close()
    list(admin.list_consumer_groups().result(10).valid)
    admin.describe_consumer_groups(["fuzz-capture-ck"])["fuzz-capture-ck"].result(10)
    try:
        from confluent_kafka import TopicPartition as TP
        admin.delete_records([TP(other, 0, 0)])
    except Exception:  # noqa: BLE001
        pass
    admin.delete_topics([other])[other].result(15)


def _kafka_python_workload(bootstrap: str, topic: str) -> None:
    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    other = f"{topic}-kp"
    admin.create_topics([NewTopic(other, 1, 1)])
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    admin.describe_topics([topic])
    admin.describe_cluster()
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=1,
                             compression_type="gzip")
    for i in range(20):
        producer.send(topic, key=b"kp%d" % i, value=b"value-%d" % i, partition=i % 3,
                      headers=[("a", b"b")])
    producer.flush(15)
    producer.close(5)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="fuzz-capture-kp",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
                             session_timeout_ms=6000, heartbeat_interval_ms=500)
    seen = 0
    for _ in consumer:
        seen += 1
        if seen >= 30:
            break
    consumer.commit()
    consumer.end_offsets([TopicPartition(topic, 0)])
    consumer.offsets_for_times({TopicPartition(topic, 0): int(time.time() * 1000) - 60_000})
    consumer.close()
    for call in (admin.list_groups, lambda: admin.describe_groups(["fuzz-capture-kp"]),
                 lambda: admin.list_group_offsets("fuzz-capture-kp"),
                 lambda: admin.list_partition_offsets({TopicPartition(topic, 0): "latest"}),
                 lambda: admin.delete_records({TopicPartition(other, 0): 0}),
                 lambda: admin.delete_groups(["fuzz-capture-kp"]),
                 lambda: admin.delete_topics([other])):
        try:
            call()
        except Exception:  # noqa: BLE001 - capturing requests, not testing admin
            pass
    admin.close()


def capture_corpus(proxy: RecordingProxy, topic: str = "fuzz", errors: list[str] | None = None) -> list[bytes]:
    """Distinct request frames of real client workloads run through ``proxy``
    (already forwarding to a broker that advertises the proxy's port). The
    proxy keeps forwarding afterwards (clients are told its address) but
    stops recording. Workload failures are appended to ``errors``."""
    bootstrap = f"127.0.0.1:{proxy.port}"
    errors = [] if errors is None else errors
    for workload in (_confluent_workload, _kafka_python_workload):
        try:
            workload(bootstrap, topic)
        except Exception as exc:  # noqa: BLE001 - a partial corpus is still a corpus
            errors.append(f"{workload.__name__}: {exc!r}")
    seen, frames = set(), []
    proxy.recording = False
    with proxy.lock:
        captured = list(proxy.frames)
    for frame in captured:
        if frame not in seen:
            seen.add(frame)
            frames.append(frame)
    if not frames:
        raise RuntimeError(f"no requests captured: {errors}")
    return frames


def header_of(frame: bytes) -> tuple[int, int, int] | None:
    """(api_key, api_version, correlation_id) of a framed request, if it has that much."""
    if len(frame) < 12:
        return None
    return struct.unpack_from(">hhi", frame, 4)


# ------------------------------------------------------------------- generators


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _overwrite(buf: bytearray, rng: random.Random) -> None:
    if not buf:
        return
    kind = rng.randrange(5)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        buf[rng.randrange(len(buf))] = rng.choice(INTERESTING_8)
    else:
        fmt, values = [(">h", INTERESTING_16), (">i", INTERESTING_32), (">q", INTERESTING_64)][kind - 2]
        size = struct.calcsize(fmt)
        if len(buf) >= size:
            i = rng.randrange(len(buf) - size + 1)
            struct.pack_into(fmt, buf, i, rng.choice(values))


def mutate_body(body: bytes, rng: random.Random) -> bytes:
    buf = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        if op < 6 or not buf:
            _overwrite(buf, rng)
        elif op == 6:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 7:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.randint(1, 16)]
        elif op == 8:
            i = rng.randrange(len(buf))
            j = min(len(buf), i + rng.randint(1, 32))
            buf[j:j] = buf[i:j]
        else:
            # keep the header (api key, version, correlation id) and mutate only after it
            if len(buf) > 8:
                tail = bytearray(buf[8:])
                _overwrite(tail, rng)
                buf[8:] = tail
    return bytes(buf)


class Generator:
    """Makes inputs of each family from a seed and a corpus of framed requests."""

    def __init__(self, corpus: list[bytes], served: dict[int, tuple[int, int]], seed: int,
                 excluded: set[int] | frozenset = frozenset()) -> None:
        self.corpus = corpus
        self.served = served
        self.excluded = excluded
        self.rng = random.Random(seed)

    def make(self, family: str) -> bytes:
        rng = self.rng
        if family == "random_bytes":
            return rng.randbytes(rng.choice((rng.randint(0, 16), rng.randint(0, 400), rng.randint(0, 5000))))
        if family == "random_frame":
            return _frame(rng.randbytes(rng.randint(0, rng.choice((16, 200, 3000)))))
        if family == "random_header":
            if rng.random() < 0.8 and self.served:
                key = rng.choice(list(self.served))
                lo, hi = self.served[key]
                version = rng.randint(lo - 1, hi + 2)
            else:
                key, version = rng.randint(-5, 100), rng.randint(-2, 20)
                if key in self.excluded:
                    key = -1
            client = rng.choice((b"fuzz", b"", rng.randbytes(rng.randint(0, 30))))
            header = struct.pack(">hhih", key, version, rng.randint(-2**31, 2**31 - 1), len(client)) + client
            if rng.random() < 0.5:
                header += b"\x00"  # an empty tagged-field section (flexible header v2)
            return _frame(header + rng.randbytes(rng.randint(0, rng.choice((8, 64, 600)))))
        frame = rng.choice(self.corpus)
        body = frame[4:]
        if family == "mutated":
            new = mutate_body(body, rng)
            return _frame(new) if rng.random() < 0.9 else struct.pack(">i", len(body)) + new
        if family == "truncated":
            cut = rng.randint(0, max(len(body) - 1, 0))
            return frame[:4 + cut] if rng.random() < 0.5 else _frame(body[:cut])
        if family == "spliced":
            other = rng.choice(self.corpus)[4:]
            return _frame(body[:rng.randint(0, len(body))] + other[rng.randint(0, len(other)):])
        if family == "length_lies":
            size = rng.choice((-1, -2**31, 0, 1, 3, len(body) + rng.randint(1, 100), 2**31 - 1, 100 * 1024 * 1024 + 1,
                               rng.randint(0, len(body))))
            return struct.pack(">i", size) + body
        if family == "pipelined":
            parts = []
            for _ in range(rng.randint(2, 6)):
                f = rng.choice(self.corpus)
                parts.append(f if rng.random() < 0.5 else _frame(mutate_body(f[4:], rng)))
            return b"".join(parts)
        raise ValueError(family)


# ----------------------------------------------------------------------- probing


def probe(port: int, data: bytes, timeout: float) -> tuple[str, int]:
    """Send ``data`` on a fresh connection, shut the write side, and wait.

    Returns ``(outcome, responses)``: outcome ``answered`` (>= 1 complete
    response frame, then the broker closed), ``answered_open`` (answered but
    still open at the deadline), ``closed`` (closed or reset without a full
    response) or ``hung`` (nothing within ``timeout``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST: no TIME_WAIT
    sock.settimeout(timeout)
    responses = 0
    try:
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return "refused", 0
        try:
            if data:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return "closed", 0
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ("answered_open" if responses else "hung"), responses
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return ("answered_open" if responses else "hung"), responses
            except OSError:
                return ("answered" if responses else "closed"), responses
            if not chunk:
                return ("answered" if responses else "closed"), responses
            buf += chunk
            while len(buf) >= 4:
                size = struct.unpack_from(">i", buf)[0]
                if size < 0 or len(buf) < 4 + size:
                    break
                del buf[:4 + size]
                responses += 1
    finally:
        sock.close()


def api_versions(port: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 on a fresh connection: {api_key: (min, max)}. Raises if no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_frame(struct.pack(">hhih", API_VERSIONS, 0, 7, 4) + b"fuzz"))
        size = struct.unpack(">i", _read_exact(sock, 4))[0]
        body = _read_exact(sock, size)
    corr, error, count = struct.unpack_from(">ihi", body, 0)
    if corr != 7 or error != 0:
        raise RuntimeError(f"ApiVersions answered correlation {corr}, error {error}")
    return {k: (lo, hi) for k, lo, hi in (struct.unpack_from(">hhh", body, 10 + 6 * i) for i in range(count))}


def client_works(bootstrap: str, timeout: float = 30.0) -> tuple[bool, str]:
    """A normal confluent-kafka round trip on a new topic."""
    try:
        from confluent_kafka import Consumer, Producer, TopicPartition

        topic = f"after-fuzz-{uuid.uuid4().hex[:8]}"
        p = Producer({"bootstrap.servers": bootstrap, "log_level": 0, "message.timeout.ms": int(timeout * 1000)})
        delivered = []
        for i in range(10):
            p.produce(topic, value=b"after-%d" % i, partition=0, on_delivery=lambda e, m: delivered.append(e))
        p.flush(timeout)
        if len(delivered) != 10 or any(delivered):
            return False, f"produce: {delivered}"
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "log_level": 0,
                      "auto.offset.reset": "earliest", "check.crcs": True})
        c.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.monotonic() + timeout
        while len(got) < 10 and time.monotonic() < deadline:
            for m in c.consume(10, 0.5):
                if m.error():
                    return False, f"consume: {m.error()!r}"
                got.append(m.value())
        c.close()
        if got != [b"after-%d" % i for i in range(10)]:
            return False, f"consumed {got}"
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        return False, repr(exc)


def handler_errors(lines: list[str]) -> tuple[int, list[str]]:
    """Handler failures logged by the broker, and a sample of distinct ones."""
    count, kinds = 0, collections.Counter()
    last_handler = None
    for line in lines:
        m = re.search(r"handler for API key (\S+) failed", line)
        if m:
            count += 1
            last_handler = m.group(1)
            continue
        if last_handler and re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line):
            kinds[f"{last_handler}: {line.strip()[:200]}"] += 1
            last_handler = None
    other_tracebacks = sum(1 for line in lines if line.startswith("Traceback")) - count
    samples = [f"{n}x {k}" for k, n in kinds.most_common(15)]
    if other_tracebacks > 0:
        samples.append(f"{other_tracebacks} other tracebacks")
    return count, samples


# --------------------------------------------------------------------------- main


def run(inputs: int, seed: int, workers: int, timeout: float, data_dir: str | None, quiet: bool,
        log_path: str | None = None, exclude_apis: set[int] | frozenset = frozenset(),
        families: tuple[str, ...] = FAMILIES) -> dict:
    started = time.monotonic()
    own_dir = data_dir is None
    data_dir = data_dir or tempfile.mkdtemp(prefix="fuzz-broker-")
    proxy = RecordingProxy()
    broker = Broker(data_dir, "--advertised-port", str(proxy.port)).start()
    proxy.start(broker.port)
    result: dict = {"seed": seed, "inputs": inputs}
    try:
        served = api_versions(broker.port)
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "log_level": 0})
        admin.create_topics([NewTopic("fuzz", num_partitions=3, replication_factor=1)])["fuzz"].result(15)
        capture_errors: list[str] = []
        corpus = capture_corpus(proxy, errors=capture_errors)
        result["capture_errors"] = capture_errors
        if exclude_apis:
            result["excluded_apis"] = sorted(exclude_apis)
            corpus = [f for f in corpus if header_of(f)[0] not in exclude_apis]
            served = {k: v for k, v in served.items() if k not in exclude_apis}
        result["corpus_frames"] = len(corpus)
        result["corpus_apis"] = dict(sorted(collections.Counter(header_of(f)[0] for f in corpus).items()))
        gen = Generator(corpus, served, seed, exclude_apis)
        outcomes = collections.Counter()
        per_family = {f: collections.Counter() for f in FAMILIES}
        hung_apis = collections.Counter()
        waited_apis = collections.Counter()
        lock = threading.Lock()
        alive_checks = {"ok": 0, "failed": 0}
        max_rss = 0.0
        max_fds, fd_kinds = 0, collections.Counter()
        batch = 2000

        def one(item):
            family, data = item
            outcome, _ = probe(broker.port, data, timeout)
            if outcome in ("hung", "answered_open"):
                head = header_of(data)
                key = head[0] if head else None
                if key in WAITING_APIS:
                    outcome = "waited"
                    with lock:
                        waited_apis[key] += 1
                elif outcome == "hung":
                    with lock:
                        hung_apis[key] += 1
                else:
                    outcome = "answered"  # answered; the write side was shut, the long request holds it open
            with lock:
                outcomes[outcome] += 1
                per_family[family][outcome] += 1

        sent = 0
        with ThreadPoolExecutor(workers) as pool:
            while sent < inputs and broker.alive:
                n = min(batch, inputs - sent)
                items = []
                for _ in range(n):
                    family = gen.rng.choice(families)
                    items.append((family, gen.make(family)))
                list(pool.map(one, items))
                sent += n
                max_rss = max(max_rss, broker.rss_mb())
                kinds = broker.fds()
                if sum(kinds.values()) > max_fds:
                    max_fds, fd_kinds = sum(kinds.values()), kinds
                try:
                    api_versions(broker.port)
                    alive_checks["ok"] += 1
                except Exception:  # noqa: BLE001
                    alive_checks["failed"] += 1
                if not quiet:
                    print(f"{sent} inputs, {dict(outcomes)}, {sum(kinds.values())} fds, "
                          f"{time.monotonic() - started:.0f}s", file=sys.stderr)
        elapsed = time.monotonic() - started
        result.update(
            sent=sent,
            answered=outcomes["answered"],
            closed=outcomes["closed"],
            hung=outcomes["hung"],
            waited=outcomes["waited"],
            refused=outcomes["refused"],
            hung_apis={str(k): v for k, v in hung_apis.items()},
            waited_apis={str(k): v for k, v in waited_apis.items()},
            families={f: dict(c) for f, c in per_family.items() if c},
            alive_checks=alive_checks,
            broker_alive=broker.alive,
            broker_max_rss_mb=round(max_rss, 1),
            broker_max_fds=max_fds,
            broker_fds_by_kind=dict(fd_kinds.most_common(6)),
        )
        ok, detail = client_works(f"127.0.0.1:{proxy.port}") if broker.alive else (False, "broker dead")
        result["client_ok"] = ok
        if not ok:
            result["client_detail"] = detail
        result["elapsed_s"] = round(elapsed, 1)
    finally:
        proxy.close()
        stopping = time.monotonic()
        exit_status = broker.stop()
        result["broker_exit_status"] = exit_status
        result["shutdown_s"] = round(time.monotonic() - stopping, 1)
        if broker.stuck:
            result["shutdown_stuck_in"] = broker.stuck
        if log_path:
            Path(log_path).write_text("".join(broker.lines))
        count, samples = handler_errors(broker.lines)
        result["handler_errors"] = count
        result["handler_error_samples"] = samples
        on_disk = sum(p.stat().st_size for p in Path(data_dir).rglob("*") if p.is_file())
        result["data_dir_mb"] = round(on_disk / 2**20, 1)
        if not broker.alive and exit_status not in (0, None):
            result["broker_log_tail"] = "".join(broker.lines[-20:])
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before an input counts as hung")
    parser.add_argument("--data-dir", default=None, help="keep the broker's data here (default: a temp dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--log", default=None, help="write the broker's log to this file")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated input families to send")
    parser.add_argument("--exclude-apis", default="", help="comma-separated API keys not to send "
                        "(e.g. 19,37 to get past a known CreateTopics/CreatePartitions problem)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    exclude = {int(k) for k in args.exclude_apis.split(",") if k.strip()}
    families = tuple(f for f in args.families.split(",") if f)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    result = run(args.inputs, seed, args.workers, args.timeout, args.data_dir, args.quiet, args.log, exclude,
                 families)
    print(json.dumps(result, sort_keys=True))
    good = result.get("broker_alive") and result.get("client_ok") and not result.get("hung")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
