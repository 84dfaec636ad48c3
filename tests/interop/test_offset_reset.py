"""An out-of-range fetch offset makes the client apply its auto.offset.reset.

The broker must answer OFFSET_OUT_OF_RANGE for a position past the high
watermark or below the log start offset; the client then resets to the
earliest or latest offset. A broker that answered with an empty fetch instead
would leave the consumer stuck at the bad position and these tests would time out.
"""

from __future__ import annotations

import asyncio

import pytest

from interop_support import AIO, CK, CLIENTS, KP, consume, consume_nothing, create_topic, make_consumer, make_producer


def _fill(client: str, bootstrap: str, topic: str, n: int = 5) -> list[bytes]:
    values = [b"value-%d" % i for i in range(n)]
    producer = make_producer(client, bootstrap)
    try:
        assert producer.send_many(topic, [dict(key=b"k", value=v, partition=0) for v in values]) == [
            (0, i) for i in range(n)
        ]
    finally:
        producer.close()
    return values


@pytest.mark.parametrize("client", CLIENTS)
def test_seek_past_end_resets_to_earliest(module_broker, topic, client):
    create_topic(module_broker.bootstrap, topic)
    values = _fill(client, module_broker.bootstrap, topic)
    consumer = make_consumer(client, module_broker.bootstrap, topic, auto_offset_reset="earliest")
    try:
        consumer.seek(15)
        got = consume(consumer, 5)
        assert [(r.offset, r.value) for r in got] == list(enumerate(values))
    finally:
        consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_seek_past_end_resets_to_latest(module_broker, topic, client):
    create_topic(module_broker.bootstrap, topic)
    _fill(client, module_broker.bootstrap, topic)
    consumer = make_consumer(client, module_broker.bootstrap, topic, auto_offset_reset="latest")
    try:
        consumer.seek(15)
        assert consume_nothing(consumer, 1.0) == []  # reset to the end (5): nothing to read
        producer = make_producer(client, module_broker.bootstrap)
        try:
            assert producer.send_many(topic, [dict(key=b"k", value=b"new", partition=0)]) == [(0, 5)]
        finally:
            producer.close()
        got = consume(consumer, 1)
        assert [(r.offset, r.value) for r in got] == [(5, b"new")]
    finally:
        consumer.close()


def _delete_records(client: str, bootstrap: str, topic: str, before: int) -> int:
    """DeleteRecords through the client's admin API; returns the new low watermark."""
    if client == KP:
        from kafka import KafkaAdminClient, TopicPartition

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            result = admin.delete_records({TopicPartition(topic, 0): before})
        finally:
            admin.close()
        [(tp, info)] = result.items()
        return info["low_watermark"]
    if client == AIO:
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

        async def go():
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
            await admin.start()
            try:
                return await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before)})
            finally:
                await admin.close()

        [low] = asyncio.run(asyncio.wait_for(go(), 20)).values()
        return low
    assert client == CK
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, before)]).values()
    return future.result(timeout=15).low_watermark


@pytest.mark.parametrize("client", CLIENTS)
def test_fetch_below_log_start_after_delete_records_resets(module_broker, topic, client):
    create_topic(module_broker.bootstrap, topic)
    values = _fill(client, module_broker.bootstrap, topic)
    assert _delete_records(client, module_broker.bootstrap, topic, 3) == 3
    consumer = make_consumer(client, module_broker.bootstrap, topic, auto_offset_reset="earliest")
    try:
        assert consumer.beginning_offset() == 3
        assert consumer.end_offset() == 5
        consumer.seek(1)  # below the new log start offset
        got = consume(consumer, 2)
        assert [(r.offset, r.value) for r in got] == [(3, values[3]), (4, values[4])]
        assert consume_nothing(consumer, 0.3) == []
    finally:
        consumer.close()
