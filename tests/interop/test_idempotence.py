"""Idempotent producers write every record exactly once.

kafka-python enables idempotence by default; aiokafka and confluent-kafka turn
it on explicitly. The broker sits behind ``DropProxy`` (the ``proxy`` fixture:
the broker advertises the proxy's port), which can lose the response to a
Produce request so the client retries a batch the broker already appended: the
broker must recognise the retry by its producer id and sequence and answer
with the original offsets. A non-idempotent producer under the same fault shows
the proxy really causes a retry (its records are duplicated).
"""

from __future__ import annotations

import pytest

from interop_support import CLIENTS, KP, consume, consume_nothing, create_topic, make_consumer, make_producer


def _idempotent_producer(client: str, bootstrap: str, **kwargs):
    # kafka-python: rely on its default (enable_idempotence=True) and check it really is on.
    producer = make_producer(client, bootstrap, idempotent=None if client == KP else True, **kwargs)
    if client == KP:
        assert producer.client.config["enable_idempotence"] is True
    return producer


def _values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i:03d}-".encode() + b"p" * 80 for i in range(n)]


@pytest.mark.parametrize("client", CLIENTS)
def test_many_batches_in_flight(proxy, topic, client):
    """Small batches, several in flight per partition: offsets follow send order, no gaps, no repeats."""
    create_topic(proxy.bootstrap, topic, partitions=2)
    values = {p: _values(f"p{p}", 40) for p in (0, 1)}
    records = [dict(key=b"k%d" % i, value=values[i % 2][i // 2], partition=i % 2) for i in range(80)]
    producer = _idempotent_producer(client, proxy.bootstrap, batch_size=512)
    try:
        acks = producer.send_many(topic, records)
    finally:
        producer.close()
    for p in (0, 1):
        assert [o for (part, o) in acks if part == p] == list(range(40))
        consumer = make_consumer(client, proxy.bootstrap, topic, p)
        try:
            got = consume(consumer, 40)
            assert [(r.offset, r.value) for r in got] == list(enumerate(values[p]))
            assert consume_nothing(consumer, 0.3) == []
        finally:
            consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_retried_batch_is_not_duplicated(proxy, topic, client):
    create_topic(proxy.bootstrap, topic, partitions=1)
    values = _values(client, 10)
    producer = _idempotent_producer(client, proxy.bootstrap)
    try:
        producer.send_many(topic, [dict(key=b"warm-up", value=b"warm-up", partition=0)])  # connect, get a producer id
        proxy.arm(1)
        acks = producer.send_many(topic, [dict(key=b"k", value=v, partition=0) for v in values])
    finally:
        producer.close()
    assert proxy.dropped == 1, "the proxy did not lose a Produce response"
    assert acks == [(0, 1 + i) for i in range(10)]
    consumer = make_consumer(client, proxy.bootstrap, topic, 0)
    try:
        got = consume(consumer, 11)
        assert [(r.offset, r.value) for r in got] == list(enumerate([b"warm-up"] + values))
        assert consume_nothing(consumer, 0.5) == [], "the retried batch was appended twice"
    finally:
        consumer.close()


def test_control_non_idempotent_retry_duplicates(proxy, topic):
    """Without idempotence the same fault duplicates records: the proxy does cause a retry."""
    create_topic(proxy.bootstrap, topic, partitions=1)
    values = _values("plain", 10)
    producer = make_producer(KP, proxy.bootstrap, idempotent=False)
    try:
        producer.send_many(topic, [dict(key=b"warm-up", value=b"warm-up", partition=0)])
        proxy.arm(1)
        producer.send_many(topic, [dict(key=b"k", value=v, partition=0) for v in values])
    finally:
        producer.close()
    assert proxy.dropped == 1
    consumer = make_consumer(KP, proxy.bootstrap, topic, 0)
    try:
        got = consume(consumer, 12)
        got += consume_nothing(consumer, 0.3)
    finally:
        consumer.close()
    got_values = [r.value for r in got[1:]]
    assert set(got_values) == set(values)
    assert len(got_values) > len(values)
