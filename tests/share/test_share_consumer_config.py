"""librdkafka's 0180-share_consumer_config expectations, run with confluent-kafka's
ShareConsumer against a real ``logbroker serve``: max.poll.records caps a poll,
fetch.max.bytes=1 is a soft limit (one broker batch per ShareFetch, never none),
fetch.max.bytes=0 returns no records and no error. Each record is its own broker
batch (a flush after every produce, as the C test's linger.ms=0 producer)."""

from __future__ import annotations

import pytest

from share_support import create_topic, set_group_configs

MSGS = 10


def produce_one_per_batch(bootstrap: str, topic: str, count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=f"msg-{i}".encode(), partition=0)
        assert producer.flush(10) == 0


def poll_sizes(bootstrap: str, group: str, topic: str, *, target: int, polls: int, timeout: float = 1.0,
               **config) -> list[int]:
    """The record count of each non-empty poll until ``target`` records or ``polls`` polls."""
    from confluent_kafka import ShareConsumer

    consumer = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, **config})
    consumer.subscribe([topic])
    sizes: list[int] = []
    try:
        for _ in range(polls):
            messages = consumer.poll(timeout)
            assert not [m.error() for m in messages if m.error()]
            if messages:
                sizes.append(len(messages))
            if sum(sizes) >= target:
                break
    finally:
        consumer.close()
    return sizes


@pytest.fixture
def topic(share_broker, names):
    topic, group = names("cfg")
    create_topic(share_broker.bootstrap, topic, 1)
    set_group_configs(share_broker.bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    produce_one_per_batch(share_broker.bootstrap, topic, MSGS)
    return topic, group


def test_max_poll_records_caps_each_poll(share_broker, topic):
    name, group = topic
    sizes = poll_sizes(share_broker.bootstrap, group, name, target=MSGS, polls=30, **{"max.poll.records": 5})
    assert sum(sizes) == MSGS and max(sizes) <= 5 and len(sizes) >= 2


def test_fetch_max_bytes_one_is_a_soft_limit_of_one_batch_per_fetch(share_broker, topic, names):
    name, group = topic
    one = poll_sizes(share_broker.bootstrap, group, name, target=MSGS, polls=60, **{"fetch.max.bytes": 1})
    assert one == [1] * MSGS
    other, other_group = names("cfg-default")
    create_topic(share_broker.bootstrap, other, 1)
    set_group_configs(share_broker.bootstrap, other_group, **{"share.auto.offset.reset": "earliest"})
    produce_one_per_batch(share_broker.bootstrap, other, MSGS)
    default = poll_sizes(share_broker.bootstrap, other_group, other, target=MSGS, polls=60)
    assert sum(default) == MSGS and len(default) < len(one)


def test_fetch_max_bytes_zero_returns_no_records(share_broker, topic):
    name, group = topic
    assert poll_sizes(share_broker.bootstrap, group, name, target=1, polls=5, **{"fetch.max.bytes": 0}) == []
