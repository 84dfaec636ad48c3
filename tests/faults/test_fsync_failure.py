"""An fsync that fails (EIO) with ``flush=always``: the produce waiting on it
is answered KAFKA_STORAGE_ERROR, never acknowledged; the partition takes no
more writes (the kernel may have dropped the dirty pages) while the broker
keeps serving everything else; a restart recovers the log."""

from __future__ import annotations

import errno

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaStorageError

import logbroker.storage.partition as partition_module
from logbroker import embedded


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, max_block_ms=5000)


def _values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1500, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    values = [m.value for m in consumer]
    consumer.close()
    return values


def test_a_failed_fsync_is_never_acknowledged_and_the_broker_stays_up(tmp_path, monkeypatch):
    data = tmp_path / "data"
    with embedded(data_dir=data, flush="always") as broker:
        broker.create_topic("orders")
        broker.create_topic("other")
        producer = _producer(broker.bootstrap_servers)
        producer.send("orders", b"durable", partition=0).get(timeout=10)

        real = partition_module.fsync_path
        failing = {"on": True}

        def fsync_path(path):
            if failing["on"] and "orders-0" in str(path):
                raise OSError(errno.EIO, "Input/output error")
            return real(path)

        monkeypatch.setattr(partition_module, "fsync_path", fsync_path)
        with pytest.raises(KafkaStorageError):
            producer.send("orders", b"not durable", partition=0).get(timeout=10)
        failing["on"] = False  # the disk is back, but the partition stays fenced until a restart
        with pytest.raises(KafkaStorageError):
            producer.send("orders", b"after", partition=0).get(timeout=10)
        producer.send("other", b"fine", partition=0).get(timeout=10)  # other partitions still work
        assert _values(broker.bootstrap_servers, "other") == [b"fine"]
        producer.close()
    monkeypatch.undo()
    with embedded(data_dir=data, flush="always") as broker:
        values = _values(broker.bootstrap_servers, "orders")
        assert values[0] == b"durable" and b"after" not in values  # "not durable" was never acknowledged
        producer = _producer(broker.bootstrap_servers)
        producer.send("orders", b"again", partition=0).get(timeout=10)
        producer.close()
        assert _values(broker.bootstrap_servers, "orders")[-1] == b"again"
