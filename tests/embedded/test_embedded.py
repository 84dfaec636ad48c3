"""The in-process broker: sync and async forms, real clients, clean shutdown."""

import os
import threading

import trio
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from logbroker import embedded


def test_sync_form_serves_kafka_clients_and_cleans_up():
    with embedded(num_partitions=2) as broker:
        assert broker.bootstrap_servers.startswith("127.0.0.1:")
        broker.create_topic("orders", 3)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        meta = producer.send("orders", key=b"k", value=b"v", partition=2).get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, consumer_timeout_ms=2000)
        consumer.assign([TopicPartition("orders", 2)])
        consumer.seek_to_beginning()
        values = [m.value for m in consumer]
        consumer.close()
        data_dir = broker.data_dir
        assert os.path.isdir(data_dir)
    assert meta.offset == 0 and values == [b"v"]
    assert not os.path.exists(data_dir)
    assert not any(t.name == "logbroker-embedded" for t in threading.enumerate())


def test_given_data_dir_is_kept_and_reopened(tmp_path):
    with embedded(data_dir=tmp_path) as broker:
        broker.create_topic("kept")
    with embedded(data_dir=tmp_path) as broker:
        assert "kept" in broker.topics()
    assert (tmp_path / "kept-0").is_dir()


async def test_async_form_runs_in_the_callers_loop():
    async with embedded() as broker:
        broker.create_topic("a")
        assert broker.topics() == ["a"]
        stream = await trio.open_tcp_stream("127.0.0.1", broker.port)
        await stream.aclose()
        data_dir = broker.data_dir
    assert not os.path.exists(data_dir)


def test_bad_setting_is_refused():
    import pytest

    from logbroker.errors import LogbrokerError

    with pytest.raises(LogbrokerError, match="colour"):
        with embedded(colour="blue"):
            pass
