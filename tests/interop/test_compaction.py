"""Log compaction seen by a client: a changelog topic converges to the last value per key."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def _read_all(bootstrap, topic):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1500, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    records = [(m.offset, m.key, m.value) for m in consumer]
    consumer.close()
    return records


def test_changelog_topic_is_compacted_in_the_background(broker_factory, tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text("log_cleaner_backoff_ms = 200\n")
    broker = broker_factory("--config", str(config))
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("changelog", 1, 1, topic_configs={
        "cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    })])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    latest = {}
    for i in range(10_000):
        key = b"user-%d" % (i % 100)
        value = b"v%d" % i
        producer.send("changelog", key=key, value=value)
        latest[key] = value
    producer.send("changelog", key=b"user-0", value=None)  # a tombstone
    latest.pop(b"user-0")
    producer.send("changelog", key=b"marker", value=b"end").get(timeout=10)
    latest[b"marker"] = b"end"
    producer.close()

    deadline = time.monotonic() + 30
    records = _read_all(broker.bootstrap, "changelog")
    while len(records) > 2_000 and time.monotonic() < deadline:
        time.sleep(0.5)
        records = _read_all(broker.bootstrap, "changelog")
    assert len(records) < 2_000, "the cleaner did not compact the sealed segments"
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets stay increasing, with gaps"
    view = {}
    for _, key, value in records:
        view[key] = value
    view = {k: v for k, v in view.items() if v is not None}
    assert view == latest, "replaying the compacted log gives the latest value per key"
    assert "compacted" in broker.log
