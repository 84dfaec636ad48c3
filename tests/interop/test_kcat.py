"""kcat (librdkafka's command-line client): metadata, produce, consume, query offsets.

Skipped only when the ``kcat`` binary is not installed (Debian package ``kcat``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from interop_support import CODECS, KP, consume, create_topic, make_consumer, make_producer

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")


def kcat(bootstrap: str, *args: str, stdin: str | None = None, timeout: float = 20) -> str:
    proc = subprocess.run(
        [KCAT, "-b", bootstrap, "-X", "socket.timeout.ms=10000", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_metadata_list(module_broker, topic):
    create_topic(module_broker.bootstrap, topic, partitions=2)
    meta = json.loads(kcat(module_broker.bootstrap, "-L", "-J", "-t", topic))
    [broker] = meta["brokers"]
    assert broker["name"] == module_broker.bootstrap
    [entry] = meta["topics"]
    assert entry["topic"] == topic
    assert "error" not in entry, entry
    assert sorted(p["partition"] for p in entry["partitions"]) == [0, 1]
    for p in entry["partitions"]:
        assert p["leader"] == broker["id"]
        assert [r["id"] for r in p["replicas"]] == [broker["id"]]

    # Without -t: every topic, ours included.
    everything = json.loads(kcat(module_broker.bootstrap, "-L", "-J"))
    assert topic in {t["topic"] for t in everything["topics"]}


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume(module_broker, topic, codec):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    pairs = [(b"alpha", b"one"), (b"beta", b"two two"), (b"gamma", b"three " * 50)]
    stdin = "".join(f"{k.decode()}:{v.decode()}\n" for k, v in pairs)
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", "-K:", "-H", "trace=abc", "-H", "n=1",
         "-X", f"compression.codec={codec}", stdin=stdin)

    # kcat reads them back from the beginning...
    fmt = r"%k|%s|%o|%p|%h\n"
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", fmt)
    assert out.splitlines() == [f"{k.decode()}|{v.decode()}|{i}|0|trace=abc,n=1" for i, (k, v) in enumerate(pairs)]
    # ...and from an offset.
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "1", "-e", "-f", r"%k@%o\n")
    assert out.splitlines() == ["beta@1", "gamma@2"]

    # Another client sees the same records.
    consumer = make_consumer(KP, bootstrap, topic)
    try:
        got = consume(consumer, 3)
    finally:
        consumer.close()
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == [
        (i, k, v, (("trace", b"abc"), ("n", b"1"))) for i, (k, v) in enumerate(pairs)
    ]


def test_consume_records_from_other_clients(module_broker, topic):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    producer = make_producer(KP, bootstrap, compression="lz4")
    try:
        producer.send_many(topic, [dict(key=b"k%d" % i, value=b"v%d" % i, partition=0) for i in range(4)])
    finally:
        producer.close()
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", r"%k=%s@%o\n")
    assert out.splitlines() == [f"k{i}=v{i}@{i}" for i in range(4)]


def test_query_offsets_by_timestamp(module_broker, topic):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    base = int(time.time() * 1000) - 60_000
    producer = make_producer(KP, bootstrap)
    try:
        for i in range(3):  # three separate batches
            producer.send_many(topic, [dict(key=b"k", value=b"v%d" % i, partition=0, timestamp_ms=base + i * 1000)])
    finally:
        producer.close()

    def query(ts: int) -> str:
        return kcat(bootstrap, "-Q", "-t", f"{topic}:0:{ts}").strip()

    assert query(base + 500) == f"{topic} [0] offset 1"
    assert query(base) == f"{topic} [0] offset 0"
    assert query(base + 2000) == f"{topic} [0] offset 2"
    assert query(-1) == f"{topic} [0] offset 3"  # latest: the high watermark
    assert query(-2) == f"{topic} [0] offset 0"  # earliest
    assert query(base + 10_000) == f"{topic} [0] offset -1"  # no record that late
