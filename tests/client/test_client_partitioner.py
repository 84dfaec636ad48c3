"""Partitioners: murmur2 equals kafka-python's (the Java client's), crc32 equals
confluent-kafka's default (librdkafka ``consistent_random``), xxhash is xxh64."""

from __future__ import annotations

import random

import pytest
import xxhash

from logbroker.client import crc32_partition, murmur2, murmur2_partition, xxhash_partition
from logbroker.client.partitioner import StickyPartitions, hashes_empty_key

from client_support import create_topic

KEYS = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", b"key-1", "ключ".encode(), bytes(range(256))] + [
    random.Random(7).randbytes(n) for n in range(1, 64)
]


def test_murmur2_equals_kafka_python():
    from kafka.partitioner.default import murmur2 as kp_murmur2

    for key in KEYS:
        assert murmur2(key) == kp_murmur2(key)


@pytest.mark.parametrize("partitions", [1, 3, 7, 16])
def test_murmur2_partition_equals_kafka_python_default_partitioner(partitions):
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, topic):
            return set(range(partitions))

        def available_partitions_for_topic(self, topic):
            return set(range(partitions))

    kp = DefaultPartitioner()
    for key in KEYS:
        assert murmur2_partition(key, partitions) == kp.partition("t", key, key, None, None, Cluster())


def test_murmur2_known_java_values():
    # Values from Kafka's UtilsTest.testMurmur2 (signed in Java).
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             bytes([ord("a"), ord("b"), ord("c")]): 479470107}
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF


def test_xxhash_partition_is_xxh64_modulo():
    for key in KEYS:
        assert xxhash_partition(key, 12) == xxhash.xxh64_intdigest(key) % 12


def test_crc32_treats_empty_keys_as_random():
    assert not hashes_empty_key("crc32")
    assert hashes_empty_key("murmur2") and hashes_empty_key("xxhash")


def test_sticky_partition_changes_when_its_batch_closes():
    sticky = StickyPartitions(random.Random(1))
    first = sticky.get("t", 6)
    assert sticky.get("t", 6) == first
    sticky.batch_closed("t", (first + 1) % 6, 6)  # another partition's batch: no change
    assert sticky.get("t", 6) == first
    sticky.batch_closed("t", first, 6)
    second = sticky.get("t", 6)
    assert second != first and 0 <= second < 6
    sticky.batch_closed("t", second, 1)
    assert sticky.get("t", 1) == 0


async def test_crc32_partition_equals_confluent_kafka_default(lb, topic):
    """Produce keyed records with confluent-kafka; each lands where crc32_partition says."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    import trio

    partitions = 7
    await create_topic(lb.bootstrap, topic, partitions)
    keys = [k for k in KEYS if k]
    landed: dict[bytes, int] = {}

    def produce():
        producer = confluent_kafka.Producer({"bootstrap.servers": lb.bootstrap, "linger.ms": 0})

        def report(err, msg):
            assert err is None, err
            landed[msg.key()] = msg.partition()

        for key in keys:
            producer.produce(topic, b"v", key=key, on_delivery=report)
        assert producer.flush(20) == 0

    await trio.to_thread.run_sync(produce)
    assert len(landed) == len(set(keys))
    for key, partition in landed.items():
        assert crc32_partition(key, partitions) == partition, key
