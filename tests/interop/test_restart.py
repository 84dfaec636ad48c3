"""A broker restart keeps every acknowledged record at the same offset.

Graceful (SIGTERM) restarts are tested with the default flush mode (shutdown
must flush) and with ``--flush always``; the SIGKILL restart uses ``--flush
always``, where every acknowledgement promises the record is on disk. After the
restart, fresh clients read every acknowledged record back (key, value,
headers, timestamp, offset), the topic keeps its partitions and config
overrides, and new records continue at the next offset.
"""

from __future__ import annotations

import threading
import time

import pytest

from interop_support import (
    CREATE_TIME,
    KP,
    Rec,
    consume,
    consume_nothing,
    create_topic,
    kafka_admin,
    make_consumer,
    make_producer,
)

PARTITIONS = 3


def _produce_acked(bootstrap: str, topic: str) -> list[Rec]:
    """Three rounds under different codecs; returns every acknowledged record."""
    base = int(time.time() * 1000) - 30_000
    acked = []
    for round_, codec in enumerate(("none", "gzip", "zstd")):
        producer = make_producer(KP, bootstrap, compression=codec)
        try:
            records = [
                dict(key=b"key-%d" % i, value=b"%s-%d-" % (codec.encode(), i) + b"x" * i,
                     headers=[("round", str(round_).encode())], timestamp_ms=base + round_ * 100 + i)
                for i in range(12)
            ]
            for r, (partition, offset) in zip(records, producer.send_many(topic, records)):
                acked.append(Rec(partition, offset, r["key"], r["value"], tuple(r["headers"]), r["timestamp_ms"],
                                 CREATE_TIME))
        finally:
            producer.close()
    return acked


def _check_log(bootstrap: str, topic: str, acked: list[Rec]) -> None:
    """Each partition holds exactly the acknowledged records, at their offsets."""
    for partition in range(PARTITIONS):
        expected = sorted((r for r in acked if r.partition == partition), key=lambda r: r.offset)
        assert [r.offset for r in expected] == list(range(len(expected)))
        consumer = make_consumer(KP, bootstrap, topic, partition)
        try:
            assert consumer.end_offset() == len(expected)
            assert consume(consumer, len(expected)) == expected
            assert consume_nothing(consumer, 0.2) == []
        finally:
            consumer.close()


def _check_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = kafka_admin(bootstrap)
    try:
        [described] = admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert len(described["partitions"]) == PARTITIONS
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        assert configs["topic"][topic]["retention.ms"]["value"] == "86400000"
    finally:
        admin.close()


def _check_appends_continue(bootstrap: str, topic: str, acked: list[Rec]) -> None:
    producer = make_producer(KP, bootstrap)
    try:
        for partition in range(PARTITIONS):
            next_offset = sum(1 for r in acked if r.partition == partition)
            result = producer.send_many(topic, [dict(key=b"after", value=b"restart", partition=partition)])
            assert result == [(partition, next_offset)]
    finally:
        producer.close()


@pytest.mark.parametrize(
    "flags",
    [pytest.param((), id="default-flush"), pytest.param(("--flush", "always"), id="flush-always")],
)
def test_graceful_restart_keeps_acked_records(broker_factory, topic, flags):
    broker = broker_factory(*flags)
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS, configs={"retention.ms": "86400000"})
    acked = _produce_acked(broker.bootstrap, topic)
    assert broker.stop() == 0, broker.log
    broker.start()
    _check_topic(broker.bootstrap, topic)
    _check_log(broker.bootstrap, topic, acked)
    _check_appends_continue(broker.bootstrap, topic, acked)


def test_sigkill_with_flush_always_keeps_acked_records(broker_factory, topic):
    broker = broker_factory("--flush", "always")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS, configs={"retention.ms": "86400000"})
    acked = _produce_acked(broker.bootstrap, topic)

    # Keep producing, one acknowledged record at a time, while the broker is killed.
    in_flight_acked: list[Rec] = []
    stop = threading.Event()

    def produce_until_killed():
        from kafka import KafkaProducer

        # Short timeouts, so the batch in flight at the kill expires and close() returns.
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0,
                                 request_timeout_ms=1000, delivery_timeout_ms=1500, max_block_ms=2000)
        try:
            i = 0
            while not stop.is_set():
                value = b"late-%d" % i
                md = producer.send(topic, key=b"late", value=value, partition=0).get(timeout=3)
                in_flight_acked.append(Rec(md.partition, md.offset, b"late", value, (), -1))
                i += 1
        except Exception:
            pass  # the broker died under us: only what was acknowledged counts
        finally:
            producer.close(timeout=5)

    thread = threading.Thread(target=produce_until_killed, daemon=True)
    thread.start()
    time.sleep(0.7)
    broker.kill()
    stop.set()
    thread.join(15)
    assert in_flight_acked, "no record was acknowledged while producing in the background"
    broker.start()

    _check_topic(broker.bootstrap, topic)
    # Every record acknowledged before the kill is where its acknowledgement said.
    consumer = make_consumer(KP, broker.bootstrap, topic, 0)
    try:
        end = consumer.end_offset()
        on_disk = {r.offset: r for r in consume(consumer, end)}
    finally:
        consumer.close()
    for r in in_flight_acked:
        assert r.offset in on_disk and on_disk[r.offset].value == r.value, r
    part0 = sorted((r for r in acked if r.partition == 0), key=lambda r: r.offset)
    assert [on_disk[r.offset] for r in part0] == part0
    # At most the one unacknowledged in-flight record may follow the acknowledged ones.
    assert end - (len(part0) + len(in_flight_acked)) in (0, 1)
    for partition in range(1, PARTITIONS):
        expected = sorted((r for r in acked if r.partition == partition), key=lambda r: r.offset)
        consumer = make_consumer(KP, broker.bootstrap, topic, partition)
        try:
            assert consumer.end_offset() == len(expected)
            assert consume(consumer, len(expected)) == expected
        finally:
            consumer.close()
