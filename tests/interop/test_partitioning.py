"""The same key lands in the same partition, for each client's default partitioner.

The topic has 4 partitions; each client must see all 4 in metadata and hash
keys over them (kafka-python and aiokafka: Java's murmur2; librdkafka:
consistent_random, i.e. CRC32). Every record is then read back from the
partition and offset its acknowledgement named.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import pytest

from interop_support import AIO, CLIENTS, KP, consume, consume_nothing, create_topic, make_consumer, make_producer

PARTITIONS = 4
KEYS = [f"user-{i}".encode() for i in range(12)]


def _expected_partition(client: str, key: bytes) -> int:
    if client == KP:
        from kafka.partitioner.default import murmur2
    elif client == AIO:
        from aiokafka.partitioner import murmur2
    else:
        return zlib.crc32(key) % PARTITIONS
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


@pytest.mark.parametrize("client", CLIENTS)
def test_same_key_same_partition(module_broker, topic, client):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    producer = make_producer(client, bootstrap)
    try:
        # Two rounds, two separate sends: the second must follow the first.
        first = producer.send_many(topic, [dict(key=k, value=b"a-" + k) for k in KEYS])
        second = producer.send_many(topic, [dict(key=k, value=b"b-" + k) for k in KEYS])
    finally:
        producer.close()

    for key, (p1, _), (p2, _) in zip(KEYS, first, second):
        assert p1 == p2 == _expected_partition(client, key), key
    assert len({p for p, _ in first}) > 1, "all keys in one partition: metadata partition count ignored?"

    # Offsets within each partition are 0..n-1 in send order.
    acked: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)
    for round_, results in (("a-", first), ("b-", second)):
        for key, (partition, offset) in zip(KEYS, results):
            acked[partition].append((offset, key, round_.encode() + key))
    for partition, entries in acked.items():
        assert [o for o, _, _ in entries] == list(range(len(entries))), partition

    for partition in range(PARTITIONS):
        entries = acked.get(partition, [])
        consumer = make_consumer(client, bootstrap, topic, partition)
        try:
            got = consume(consumer, len(entries)) if entries else []
            assert [(r.offset, r.key, r.value) for r in got] == entries
            assert all(r.partition == partition for r in got)
            assert consume_nothing(consumer, 0.2) == []
        finally:
            consumer.close()


def test_clients_agree_with_kafka_python_on_java_partitioner(module_broker, topic):
    """kafka-python and aiokafka both use murmur2: their records for a key share one partition."""
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    placements = {}
    for client in (KP, AIO):
        producer = make_producer(client, bootstrap)
        try:
            placements[client] = [p for p, _ in producer.send_many(topic, [dict(key=k, value=b"v") for k in KEYS])]
        finally:
            producer.close()
    assert placements[KP] == placements[AIO]
