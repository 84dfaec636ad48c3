"""librdkafka's tests/0011-produce_batch.c ``test_message_single_partition_record_fail``
with confluent-kafka: keyless records to a topic made compacted with an APPEND
IncrementalAlterConfigs fail one by one, as against Kafka (KIP-467)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType,
)

from interop_support import wait_until


def _make_compacted(bootstrap: str, topic: str) -> None:
    """Auto-create the topic, then APPEND compact to its cleanup.policy (as 0011 does)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"first", partition=0)
    assert producer.flush(10) == 0
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC, topic,
        incremental_configs=[ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)],
    )
    admin.incremental_alter_configs([resource])[resource].result(10)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    configs = next(iter(described.values())).result(10)
    assert configs["cleanup.policy"].value == "delete,compact"


@pytest.mark.parametrize("variation", [0, 1])
def test_keyless_records_fail_alone(module_broker, topic, variation) -> None:
    _make_compacted(module_broker.bootstrap, topic)
    conf = {"bootstrap.servers": module_broker.bootstrap, "linger.ms": 200}
    if variation == 1:
        conf["batch.size"] = 1  # one record per batch
    producer = Producer(conf)
    outcomes: dict[int, int] = {}

    def report(err, msg) -> None:
        outcomes[int(msg.value().split(b"#")[1])] = 0 if err is None else err.code()

    for i in range(100):
        producer.produce(topic, value=b"msg #%d" % i, key=None if i % 10 == 0 else b"key-%d" % i,
                         partition=0, on_delivery=report)
    producer.flush(20)
    wait_until(lambda: len(outcomes) == 100 or producer.poll(0.1) < 0, 10, message="all delivery reports")
    invalid = sorted(i for i, code in outcomes.items() if code == KafkaError.INVALID_RECORD)
    assert invalid == list(range(0, 100, 10))
    others = {code for i, code in outcomes.items() if i % 10}
    # Variation 0: one batch, refused whole: the keyed records are "a different record's" fault.
    assert others == ({KafkaError._INVALID_DIFFERENT_RECORD} if variation == 0 else {0})
