"""Helpers for the fault-injection tests: a broker process with extra controls,
librdkafka clients that check CRCs, reading a whole log back, ``logbroker dump``.

Kept separate from ``tests/interop`` so these tests do not depend on the
interop wrappers; every helper either returns what it saw or raises.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from brokerproc import BrokerProcess, unique_topic as unique_topic, wait_until as wait_until  # noqa: E402

#: Iterations of the crash loops (and the scale of the other loops); CI default small.
ITERATIONS = int(os.environ.get("LOGBROKER_FAULT_ITERATIONS", "0") or 0)

KAFKA_STORAGE_ERROR = 56






class FaultBroker(BrokerProcess):
    """A ``logbroker serve`` subprocess run from the repository root (``logbroker
    dump`` and the loops find their files there); see :class:`BrokerProcess`."""

    def __init__(self, data_dir, *args: str, port: int = 0, preexec_fn=None) -> None:
        super().__init__(data_dir, *args, port=port, preexec_fn=preexec_fn, cwd=str(REPO))


# --------------------------------------------------------------------------- clients


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(configs or {}))],
        request_timeout=15,
    )
    futures[name].result(20)
    wait_until(lambda: _has_partitions(client, name, partitions), 15, message=f"metadata of {name}")


def _has_partitions(client, name: str, partitions: int) -> bool:
    md = client.list_topics(name, timeout=5)
    topic = md.topics.get(name)
    return topic is not None and topic.error is None and len(topic.partitions) == partitions


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """OffsetFetch through librdkafka: {partition: committed offset} (-1001 = none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "socket.timeout.ms": 10000})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def producer(bootstrap: str, **extra):
    from confluent_kafka import Producer

    config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
              "message.timeout.ms": 30000, "socket.timeout.ms": 10000}
    config.update(extra)
    return Producer(config)


def produce_all(bootstrap: str, topic: str, records, **extra) -> list[tuple[int, int, bytes]]:
    """Produce ``(partition, key, value)`` records; return ``(partition, offset, value)`` of each,
    in order. Raises if any delivery failed."""
    p = producer(bootstrap, **extra)
    results: list = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = err if err is not None else (msg.partition(), msg.offset(), msg.value())
        return cb

    for i, (partition, key, value) in enumerate(records):
        while True:
            try:
                p.produce(topic, value=value, key=key, partition=partition, on_delivery=report(i))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(60)
    assert left == 0, f"{left} records not delivered"
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, f"delivery failed: {errors[:5]}"
    return results


def read_partitions(bootstrap: str, topic: str, partitions, *, timeout: float = 15.0,
                    ) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """Every record of the given partitions, from the log start to the high watermark
    of the moment, as ``{partition: [(offset, key, value)...]}``, read through
    librdkafka with ``check.crcs=true``. Raises AssertionError on any error the
    client reports (a CRC mismatch, a corrupt message) or if a read does not
    reach the high watermark in ``timeout`` seconds."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "check.crcs": True, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 1, "enable.partition.eof": True,
        "socket.timeout.ms": 10000, "log_level": 0,
    })
    try:
        ends, out, seen = {}, {}, {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
            out[p], seen[p] = [], low - 1
            if high > low:
                ends[p] = high
        if ends:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while any(seen[p] < end - 1 for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read stopped at {seen}, high watermarks {ends}")
            for msg in consumer.consume(num_messages=10000, timeout=0.05):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"{topic}-{msg.partition()}: client error {err!r}")
                p = msg.partition()
                seen[p] = max(seen[p], msg.offset())
                if msg.offset() < ends[p]:
                    out[p].append((msg.offset(), msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def probe_offsets(bootstrap: str, topic: str, partition: int, offsets, timeout: float = 10.0,
                  ) -> dict[int, tuple[int, bytes | None]]:
    """Fetch starting at each of ``offsets`` (random access through the index):
    ``{asked: (offset of the first record served, its value)}``, with CRC checks."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "check.crcs": True, "fetch.wait.max.ms": 20,
        "fetch.queue.backoff.ms": 1, "socket.timeout.ms": 10000, "log_level": 0,
        "max.partition.fetch.bytes": 8192,
    })
    out = {}
    try:
        for asked in offsets:
            consumer.assign([TopicPartition(topic, partition, asked)])
            deadline = time.monotonic() + timeout
            while asked not in out:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}-{partition}: nothing served from offset {asked}")
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"{topic}-{partition} from offset {asked}: client error {err!r}")
                out[asked] = (msg.offset(), msg.value())
            consumer.unassign()
        return out
    finally:
        consumer.close()


def read_log(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    return read_partitions(bootstrap, topic, range(partitions))


# ------------------------------------------------------------------------- files


def dump(path) -> tuple[int, str]:
    """``logbroker dump PATH``: (exit status, output)."""
    done = subprocess.run([sys.executable, "-m", "logbroker", "dump", str(path)], capture_output=True,
                          text=True, cwd=str(REPO), timeout=120)
    return done.returncode, done.stdout + done.stderr


def assert_dump_clean(data_dir) -> None:
    """``logbroker dump`` finds no problem in any partition directory of ``data_dir``."""
    for entry in sorted(Path(data_dir).iterdir()):
        if entry.is_dir() and re.search(r"-\d+$", entry.name):
            rc, out = dump(entry)
            assert rc == 0, f"logbroker dump {entry.name} found problems:\n{out[-3000:]}"


def segments(partition_dir) -> list[Path]:
    return sorted(Path(partition_dir).glob("*.log"))


def read_checkpoint(path) -> dict[tuple[str, int], int]:
    lines = Path(path).read_text().splitlines()
    return {(t, int(p)): int(o) for t, p, o in (line.split(" ") for line in lines[2:2 + int(lines[1])])}


def summary(name: str, **numbers) -> None:
    """Print one JSON line of numbers (shown with ``pytest -s``; collected for docs/reliability.md)."""
    print(f"\nFAULT-SUMMARY {json.dumps({'test': name, **numbers}, sort_keys=True)}", flush=True)


# ---------------------------------------------------------------- corrupting files

_BATCH_HEAD = struct.Struct(">qi4xbI2xi")  # baseOffset, batchLength, magic, crc, lastOffsetDelta


def batches(path) -> list[tuple[int, int, int, int]]:
    """``(position, size, base offset, last offset)`` of each complete batch in a
    segment ``.log``, parsed here independently of logbroker's own code."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos + 61 <= len(data):
        base, length, _magic, _crc, last_delta = _BATCH_HEAD.unpack_from(data, pos)
        size = length + 12
        if length < 49 or pos + size > len(data):
            break
        out.append((pos, size, base, base + last_delta))
        pos += size
    return out


def flip(path, position: int, mask: int = 0xFF) -> None:
    """XOR one byte of a file in place."""
    with open(path, "r+b") as fh:
        fh.seek(position)
        byte = fh.read(1)
        fh.seek(position)
        fh.write(bytes([byte[0] ^ mask]))


def truncate(path, size: int) -> None:
    os.truncate(path, size)


def append_bytes(path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)
