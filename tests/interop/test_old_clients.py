"""Old clients (KIP-896's removed versions) against a real ``logbroker serve``.

kafka-python forced to ``api_version=(0, 9)`` / ``(0, 10, 0)`` and kcat with
``api.version.request=false`` and ``broker.version.fallback=0.9.0`` / ``0.8.2``
(librdkafka takes no other fallback below 0.10; from 0.10 on it asks
ApiVersions) produce and consume message sets (magic 0/1) while new clients
on the same topic write and read v2 batches. Each test checks, on the client
side, which versions really went out: kafka-python's DEBUG log of every
request it sends, librdkafka's ``-d protocol`` lines.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest
from interop_support import CK, consume, create_topic, make_consumer, make_producer
from kafka.protocol.old import commit as kp_commit
from kafka.protocol.old import produce as kp_produce

from logbroker.records.legacy import encode_message

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
needs_kcat = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")

PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP = 0, 1, 2, 3, 8, 9, 10, 11


@contextlib.contextmanager
def sent_versions() -> Iterator[set[tuple[int, int]]]:
    """The (api key, version) of every request kafka-python sends meanwhile (from its DEBUG log)."""
    seen: set[tuple[int, int]] = set()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == "%s Request %d: %s":
                request = record.args[2]  # type: ignore[index]
                seen.add((request.API_KEY, request.API_VERSION))

    logger = logging.getLogger("kafka.net.connection")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)



def test_old_consumer_skips_transaction_markers_and_reads_uncommitted(module_broker, topic):
    """As Kafka's down-conversion: control batches go; an old client has no isolation level, so it
    reads aborted records too (Kafka's RecordsUtil.downConvert keeps them)."""
    from confluent_kafka import Producer

    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{topic}", "linger.ms": 5})
    producer.init_transactions(20)
    for values, commit in (([b"c0", b"c1"], True), ([b"a0", b"a1"], False), ([b"c2"], True)):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value, partition=0)
        producer.flush(10)
        (producer.commit_transaction if commit else producer.abort_transaction)(20)
    got = old_consume(bootstrap, topic, (0, 10, 0), 5)
    # Offsets 2 and 5 are the markers.
    assert [(m.offset, m.value) for m in got] == [(0, b"c0"), (1, b"c1"), (3, b"a0"), (4, b"a1"), (6, b"c2")]


def librdkafka_sent(lines: list[str]) -> set[tuple[str, int]]:
    """(request name, version) of every "Sent XRequest (vN, ...)" line of librdkafka's ``protocol`` debug."""
    sent = set()
    for line in lines:
        if "Sent " in line and "Request (v" in line:
            name, _, rest = line.split("Sent ", 1)[1].partition(" (v")
            sent.add((name, int(rest.split(",")[0].split(")")[0])))
    return sent


def old_producer(bootstrap: str, api_version: tuple[int, ...], compression: str | None):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, api_version=api_version, compression_type=compression,
                         linger_ms=20, request_timeout_ms=10000, max_block_ms=10000)


def old_consume(bootstrap: str, topic: str, api_version: tuple[int, ...], n: int, *, group: str | None = None):
    """The first ``n`` messages an old consumer reads, and commits when in a group."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, api_version=api_version, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
                             consumer_timeout_ms=10000, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    out = []
    try:
        for message in consumer:
            out.append(message)
            if len(out) == n:
                break
        if group is not None:
            consumer.commit()
    finally:
        consumer.close()
    return out


@pytest.mark.parametrize(("api_version", "produce_v", "fetch_v", "list_offsets_v"),
                         [((0, 9), 1, 1, 0), ((0, 10, 0), 2, 2, 0), ((0, 10, 1), 2, 3, 1)])
def test_kafka_python_old_api_versions_round_trip(module_broker, topic, api_version, produce_v, fetch_v,
                                                  list_offsets_v):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    v1 = api_version >= (0, 10)
    with sent_versions() as seen:
        sent = []
        for codec in (None, "gzip", "lz4"):  # lz4 at (0, 9): magic 0's broken frame checksum
            producer = old_producer(bootstrap, api_version, codec)
            for i in range(2):
                ts = 1_700_000_000_000 + len(sent)
                producer.send(topic, key=f"k{len(sent)}".encode(), value=f"{codec}-{i}".encode(),
                              timestamp_ms=ts if v1 else None).get(10)
                sent.append((f"k{len(sent)}".encode(), f"{codec}-{i}".encode(), ts if v1 else None))
            producer.close()
        got = old_consume(bootstrap, topic, api_version, len(sent), group=f"g-{topic}")
        assert [(m.key, m.value, m.timestamp if v1 else None) for m in got] == sent
        assert [m.offset for m in got] == list(range(len(sent)))

        # The group committed with OffsetCommit v2 (0.9's): the next old consumer starts after it.
        old_producer(bootstrap, api_version, None).send(topic, value=b"after-commit").get(10)
        [after] = old_consume(bootstrap, topic, api_version, 1, group=f"g-{topic}")
        assert (after.offset, after.value) == (len(sent), b"after-commit")

    assert {(PRODUCE, produce_v), (FETCH, fetch_v), (LIST_OFFSETS, list_offsets_v), (FIND_COORDINATOR, 0),
            (JOIN_GROUP, 1 if api_version >= (0, 10, 1) else 0), (OFFSET_COMMIT, 2), (OFFSET_FETCH, 1)} <= seen
    assert not {version for key, version in seen if key == PRODUCE} - {produce_v}  # no newer Produce slipped in
    assert not {version for key, version in seen if key == FETCH} - {fetch_v}

    # A new client reads what the old one wrote: v2 batches with the v1 timestamps (none for v0).
    consumer = make_consumer(CK, bootstrap, topic)
    try:
        records = consume(consumer, len(sent) + 1)
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records[: len(sent)]] == [(k, v) for k, v, _ in sent]
    if v1:
        assert [r.timestamp for r in records[: len(sent)]] == [ts for _, _, ts in sent]



@pytest.mark.parametrize(("api_version", "commit_v", "fetch_offsets_v"), [((0, 8, 1), 0, 0), ((0, 8, 2), 1, 1)])
def test_kafka_python_08_offset_commit_and_fetch(module_broker, topic, api_version, commit_v, fetch_offsets_v):
    """0.8 clients have no group membership: Produce/Fetch v0 and OffsetCommit v0/v1, OffsetFetch v0/v1."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    group = f"g-{topic}"
    with sent_versions() as seen:
        producer = old_producer(bootstrap, api_version, None)
        for i in range(3):
            producer.send(topic, value=b"v%d" % i).get(10)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=api_version, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                                 fetch_max_wait_ms=100)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            got = []
            for message in consumer:  # ends after consumer_timeout_ms if a record is missing
                got.append(message.value)
                if len(got) == 3:
                    break
            assert got == [b"v0", b"v1", b"v2"]
            consumer.commit({tp: OffsetAndMetadata(2, "old meta", -1)})
            assert consumer.committed(tp) == 2
        finally:
            consumer.close()
    assert {(PRODUCE, 0), (FETCH, 0), (OFFSET_COMMIT, commit_v), (OFFSET_FETCH, fetch_offsets_v)} <= seen
    assert not {v for key, v in seen if key in (PRODUCE, FETCH, OFFSET_COMMIT, OFFSET_FETCH)} - {0, commit_v}

    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CkTopicPartition

    new = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [committed] = new.committed([CkTopicPartition(topic, 0)], timeout=10)
    finally:
        new.close()
    assert committed.offset == 2


@pytest.mark.parametrize(("api_version", "magic"), [((0, 9), 0), ((0, 10, 0), 1)])
def test_new_producer_old_consumer(module_broker, topic, api_version, magic):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    producer = make_producer(CK, bootstrap, compression="zstd", linger_ms=5)  # zstd: v2 only, so converted
    records = [{"key": f"k{i}".encode(), "value": f"value {i}".encode() * 20, "headers": [("trace", b"t%d" % i)],
                "timestamp_ms": 1_700_000_100_000 + i} for i in range(30)]
    try:
        producer.send_many(topic, records)
    finally:
        producer.close()
    with sent_versions() as seen:
        # A fetch offset inside the first batch: the records before it are not handed out.
        got = old_consume(bootstrap, topic, api_version, len(records))
    assert (FETCH, 1 if magic == 0 else 2) in seen
    assert [(m.offset, m.key, m.value) for m in got] == [(i, r["key"], r["value"]) for i, r in enumerate(records)]
    # Headers are dropped on down-conversion, as Kafka does; magic 1 keeps the timestamps.
    assert all(not m.headers for m in got)
    if magic:
        assert [m.timestamp for m in got] == [r["timestamp_ms"] for r in records]
    else:
        assert all(m.timestamp == -1 or m.timestamp is None for m in got)



def test_librdkafka_group_consumer_at_fallback_09(module_broker, topic):
    """confluent-kafka with api.version.request=false and fallback 0.9.0: the classic group at v0
    (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, GroupCoordinator), Produce/Fetch v1 and magic 0."""
    from confluent_kafka import Consumer, Producer

    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-{topic}")
    logger.addHandler(Collect())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    old = {"bootstrap.servers": bootstrap, "api.version.request": False, "broker.version.fallback": "0.9.0",
           "debug": "protocol", "logger": logger}
    producer = Producer({**old, "compression.codec": "lz4"})
    for i in range(5):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(10) == 0
    consumer = Consumer({**old, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000, "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 5 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                got.append((message.key(), message.value(), message.offset()))
        assert got == [(b"k%d" % i, b"v%d" % i, i) for i in range(5)]
        [committed] = consumer.commit(asynchronous=False)
        assert committed.offset == 5
    finally:
        consumer.close()
    sent = librdkafka_sent(lines)
    assert {("ProduceRequest", 1), ("FetchRequest", 1), ("ListOffsetsRequest", 0), ("JoinGroupRequest", 0),
            ("SyncGroupRequest", 0), ("FindCoordinatorRequest", 0), ("OffsetCommitRequest", 2),
            ("OffsetFetchRequest", 1), ("MetadataRequest", 0)} <= sent, sorted(sent)


def kcat(bootstrap: str, fallback: str, *args: str, stdin: bytes | None = None) -> tuple[str, set[tuple[str, int]]]:
    """Run kcat speaking the protocol of broker ``fallback``; its stdout and the (request, version)s it sent."""
    proc = subprocess.run(
        [KCAT, "-b", bootstrap, "-X", "api.version.request=false", "-X", f"broker.version.fallback={fallback}",
         "-X", "socket.timeout.ms=10000", "-d", "protocol", *args],
        input=stdin, capture_output=True, timeout=30, check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{stderr[-3000:]}"
    return proc.stdout.decode(), librdkafka_sent(stderr.splitlines())


@needs_kcat
@pytest.mark.parametrize(("fallback", "version"), [("0.8.2", 0), ("0.9.0", 1)])
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_kcat_old_protocol_produce_and_consume(module_broker, topic, fallback, version, codec):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    lines = [f"key{i}:value {i} {codec}" for i in range(5)]
    _, sent = kcat(bootstrap, fallback, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec,
                   stdin="\n".join(lines).encode() + b"\n")
    assert ("ProduceRequest", version) in sent
    assert not {v for name, v in sent if name == "ProduceRequest"} - {version}

    # A new producer's batches (with headers) on the same partition, then kcat reads everything.
    producer = make_producer(CK, bootstrap, compression="gzip")
    try:
        producer.send_many(topic, [{"key": b"new", "value": b"from a v2 batch", "headers": [("h", b"x")], "partition": 0}])
    finally:
        producer.close()
    out, sent = kcat(bootstrap, fallback, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k|%s|%o\n")
    assert out.splitlines() == [f"{line.replace(':', '|', 1)}|{i}" for i, line in enumerate(lines)] + ["new|from a v2 batch|5"]
    assert ("FetchRequest", version) in sent and ("ListOffsetsRequest", 0) in sent
    assert not {v for name, v in sent if name == "FetchRequest"} - {version}


# -- raw frames: what old clients send, byte for byte ---------------------------------------


def _send(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> None:
    header = struct.pack(">hhih", api_key, version, correlation_id, 3) + b"old"
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)


def _recv(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (size,) = struct.unpack(">i", exact(4))
    return exact(size)[4:]  # without the correlation id


def _produce_v0(topic: str, message_set: bytes) -> bytes:
    return kp_produce.ProduceRequest_v0(1, 5000, [(topic, [(0, message_set)])]).encode()


def test_bad_crc_is_corrupt_message_and_a_malformed_frame_closes_only_its_connection(module_broker, topic):
    create_topic(module_broker.bootstrap, topic)
    host, port = module_broker.bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as good, \
            socket.create_connection((host, int(port)), timeout=10) as bad:
        message = bytearray(encode_message(0, 0, -1, b"k", b"value"))
        message[-1] ^= 0xFF  # the CRC-32 no longer matches
        _send(good, PRODUCE, 0, 1, _produce_v0(topic, bytes(message)))
        answer = kp_produce.ProduceResponse_v0.decode(_recv(good)).to_object()
        assert answer["responses"][0]["partition_responses"][0]["error_code"] == 2  # CORRUPT_MESSAGE

        _send(bad, PRODUCE, 1, 2, _produce_v0(topic, encode_message(0, 0, -1, b"k", b"v"))[:-7])  # cut short
        bad.settimeout(10)
        assert bad.recv(1) == b""  # closed, as Kafka closes on a request it cannot parse

        _send(good, PRODUCE, 2, 3, _produce_v0(topic, encode_message(1, 0, 1_700_000_000_000, b"k", b"v")))
        answer = kp_produce.ProduceResponse_v2.decode(_recv(good)).to_object()
        [partition] = answer["responses"][0]["partition_responses"]
        assert (partition["error_code"], partition["base_offset"]) == (0, 0)


def test_offset_commit_v0_v1_and_offset_fetch_v0(module_broker, topic):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=2)
    host, port = bootstrap.rsplit(":", 1)
    group = f"old-{topic}"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # v0: no generation (a simple commit); v1: generation -1 and no member, commit timestamp ignored.
        _send(sock, OFFSET_COMMIT, 0, 1, kp_commit.OffsetCommitRequest_v0(group, [(topic, [(0, 11, "zero")])]).encode())
        v0 = kp_commit.OffsetCommitResponse_v0.decode(_recv(sock)).to_object()
        _send(sock, OFFSET_COMMIT, 1, 2, kp_commit.OffsetCommitRequest_v1(
            group, -1, "", [(topic, [(1, 22, 123, "one")]), ("no-such-topic", [(0, 1, -1, None)])]).encode())
        v1 = kp_commit.OffsetCommitResponse_v1.decode(_recv(sock)).to_object()
        assert [(t["name"], [(p["partition_index"], p["error_code"]) for p in t["partitions"]]) for t in v0["topics"]] \
            == [(topic, [(0, 0)])]
        assert [(t["name"], [(p["partition_index"], p["error_code"]) for p in t["partitions"]]) for t in v1["topics"]] \
            == [(topic, [(1, 0)]), ("no-such-topic", [(0, 3)])]  # UNKNOWN_TOPIC_OR_PARTITION

        _send(sock, OFFSET_FETCH, 0, 3, kp_commit.OffsetFetchRequest_v0(group, [(topic, [0, 1])]).encode())
        fetched = kp_commit.OffsetFetchResponse_v0.decode(_recv(sock)).to_object()
    [entry] = fetched["topics"]
    assert [(p["partition_index"], p["committed_offset"], p["metadata"], p["error_code"])
            for p in entry["partitions"]] == [(0, 11, "zero", 0), (1, 22, "one", 0)]
    # and a new client sees the same committed offsets
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [11, 22]


def test_list_offsets_v0_answers_one_offset(module_broker, topic):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic)
    producer = make_producer(CK, bootstrap)
    try:
        producer.send_many(topic, [{"value": b"x", "partition": 0}] * 3)
    finally:
        producer.close()
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        body = struct.pack(">ii", -1, 1) + struct.pack(">h", len(topic)) + topic.encode()
        body += struct.pack(">i", 2) + struct.pack(">iqi", 0, -1, 1) + struct.pack(">iqi", 7, -2, 1)
        _send(sock, LIST_OFFSETS, 0, 1, body)
        answer = _recv(sock)
    from kafka.protocol.old.list_offsets import ListOffsetsResponse_v0

    [entry] = ListOffsetsResponse_v0.decode(answer).to_object()["topics"]
    assert [tuple(p.values()) for p in entry["partitions"]] == [(0, 0, [3]), (7, 3, [])]




def test_metadata_v0_empty_topic_list_means_every_topic(module_broker, topic):
    """v0 has no null array: an empty one asks for all topics (v1+: for none, null for all)."""
    from kafka.protocol.old.metadata import MetadataResponse_v0, MetadataResponse_v1

    create_topic(module_broker.bootstrap, topic)
    host, port = module_broker.bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        _send(sock, METADATA, 0, 1, struct.pack(">i", 0))
        v0 = MetadataResponse_v0.decode(_recv(sock)).to_object()
        _send(sock, METADATA, 1, 2, struct.pack(">i", 0))
        v1 = MetadataResponse_v1.decode(_recv(sock)).to_object()
    assert topic in {t["name"] for t in v0["topics"]}
    assert v1["topics"] == []
