"""A 1 MiB record round-trips with every client.

The topic raises max.message.bytes to 2 MiB and the producers raise their
request limit; the consumers keep their default fetch limits (1 MiB per
partition), so the broker must return a first batch larger than the limit whole.
"""

from __future__ import annotations

import os

import pytest

from interop_support import CLIENTS, KP, consume, consume_nothing, create_topic, make_consumer, make_producer

MIB = 1024 * 1024


@pytest.mark.parametrize("client", CLIENTS)
def test_one_mib_record_round_trips(module_broker, topic, client):
    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=1, configs={"max.message.bytes": str(2 * MIB)})
    big = os.urandom(MIB)  # incompressible
    producer = make_producer(client, bootstrap, max_request_size=3 * MIB)
    try:
        acks = producer.send_many(topic, [dict(key=b"big", value=big, headers=[("h", b"1")], partition=0)])
        acks += producer.send_many(topic, [dict(key=b"small", value=b"after", partition=0)])
    finally:
        producer.close()
    assert acks == [(0, 0), (0, 1)]

    consumer = make_consumer(client, bootstrap, topic)
    try:
        got = consume(consumer, 2, timeout=20)
        assert [(r.offset, r.key, r.headers) for r in got] == [(0, b"big", (("h", b"1"),)), (1, b"small", ())]
        assert len(got[0].value) == MIB and got[0].value == big
        assert got[1].value == b"after"
        assert consume_nothing(consumer, 0.2) == []
    finally:
        consumer.close()


def test_record_over_topic_limit_is_refused(module_broker, topic):
    """With the default max.message.bytes (1048588) a 1 MiB value plus overhead is too large."""
    from kafka.errors import MessageSizeTooLargeError

    bootstrap = module_broker.bootstrap
    create_topic(bootstrap, topic, partitions=1)
    producer = make_producer(KP, bootstrap, max_request_size=3 * MIB)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            producer.send_many(topic, [dict(key=b"big", value=os.urandom(MIB), partition=0)])
    finally:
        producer.close()
    # (kafka-python treats the error as fatal for its idempotent producer: use a new one.)
    # The partition is still usable and nothing was appended.
    producer = make_producer(KP, bootstrap)
    try:
        assert producer.send_many(topic, [dict(key=b"k", value=b"small", partition=0)]) == [(0, 0)]
    finally:
        producer.close()
