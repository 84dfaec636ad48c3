"""librdkafka's 0174-share_consumer_concurrency and 0171's multi-consumer runs with
confluent-kafka's ShareConsumer against a real ``logbroker serve``: consumers
polled round-robin from one thread (1 s poll timeout, as the C tests) while a
producer thread writes, in implicit and explicit acknowledgement mode within
one group; every record is consumed once, no consumer is starved, and the run
ends well inside the C test's budget of polls."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from share_support import create_topic, set_group_configs


def producer_thread(bootstrap: str, topic: str, partitions: int, count: int) -> threading.Thread:
    from confluent_kafka import Producer

    def run() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for i in range(count):
            producer.produce(topic, value=f"msg{i}".encode(), partition=i % partitions)
            if i % 100 == 99:
                producer.flush(5)
        assert producer.flush(10) == 0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("modes", [("implicit",) * 3, ("implicit", "explicit", "explicit")],
                         ids=["implicit", "mixed"])
def test_round_robin_polled_consumers_share_the_records(share_broker, names, modes):
    from confluent_kafka import AcknowledgeType, ShareConsumer

    topic, group = names("conc")
    partitions, total = 3, 3000
    create_topic(share_broker.bootstrap, topic, partitions)
    # Kafka's default 30 s lock: a consumer's next poll (its implicit acknowledgement)
    # may come after the others' 1 s polls, past the module broker's 2 s lock.
    set_group_configs(share_broker.bootstrap, group, **{
        "share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "30000",
    })
    consumers = [
        ShareConsumer({"bootstrap.servers": share_broker.bootstrap, "group.id": group,
                       "share.acknowledgement.mode": mode})
        for mode in modes
    ]
    for c in consumers:
        c.subscribe([topic])
    seen: Counter = Counter()
    per_consumer = [0] * len(consumers)
    started = time.monotonic()
    producer = producer_thread(share_broker.bootstrap, topic, partitions, total)
    polls, idle = 0, 0
    try:
        while len(seen) < total and idle < 30 and polls < 100:  # 0174's max_attempts and idle rounds
            polls += 1
            got = 0
            for i, (c, mode) in enumerate(zip(consumers, modes)):
                for m in c.poll(1.0):
                    assert not m.error(), m.error()
                    if mode == "explicit":
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                    seen[m.value()] += 1
                    per_consumer[i] += 1
                    got += 1
            idle = 0 if got else idle + 1
        elapsed = time.monotonic() - started
    finally:
        producer.join(20)
        for c in consumers:
            c.close()
    assert len(seen) == total and max(seen.values()) == 1
    assert all(per_consumer), per_consumer  # nobody starved
    assert elapsed < 15, (elapsed, polls, per_consumer)
