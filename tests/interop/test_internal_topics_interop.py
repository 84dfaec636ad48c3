"""Internal topics are the broker's: every client that can send a create,
delete, CreatePartitions, DeleteRecords, config change or produce for one
is refused with Kafka's error code, and the groups' offsets survive.

Each client against a real ``logbroker serve``: confluent-kafka's and
kafka-python's AdminClient, our CLI, kcat (produce and metadata only:
kcat sends nothing else).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic, ResourceType,
)

from interop_support import kafka_admin, unique_topic

OFFSETS = "__consumer_offsets"
NEVER_CREATED = ("__share_group_state", "__transaction_state")
INVALID_REQUEST, INVALID_TOPIC, INVALID_CONFIG = 42, 17, 40


@pytest.fixture(scope="module")
def broker(module_broker_factory):
    proc = module_broker_factory()
    # A group commits, so __consumer_offsets exists with an offset to lose.
    consumer = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": "keeper"})
    admin = AdminClient({"bootstrap.servers": proc.bootstrap})
    admin.create_topics([NewTopic("kept", 1)])["kept"].result(10)
    consumer.commit(offsets=[TopicPartition("kept", 0, 7)], asynchronous=False)
    consumer.close()
    return proc


def _committed(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "keeper"})
    try:
        return consumer.committed([TopicPartition("kept", 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def _confluent_error(future) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        future.result(10)
    return info.value.args[0]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logbroker", *args], capture_output=True, text=True, timeout=60)


# -- create ------------------------------------------------------------------------


@pytest.mark.parametrize("name", (OFFSETS, *NEVER_CREATED))
def test_confluent_admin_cannot_create_an_internal_topic(broker, name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    error = _confluent_error(admin.create_topics([NewTopic(name, 3)])[name])
    assert error.code() == INVALID_REQUEST and "internal topic" in error.str()
    assert (name in _topics(broker.bootstrap)) == (name == OFFSETS)


@pytest.mark.parametrize("name", (OFFSETS, *NEVER_CREATED))
def test_kafka_python_admin_cannot_create_an_internal_topic(broker, name):
    from kafka.errors import InvalidRequestError

    admin = kafka_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidRequestError):
            admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()
    assert (name in _topics(broker.bootstrap)) == (name == OFFSETS)


def test_cli_cannot_create_an_internal_topic(broker):
    result = _cli("topics", "create", "__share_group_state", "--bootstrap", broker.bootstrap)
    assert result.returncode != 0
    assert "internal topic __share_group_state" in result.stderr and "Traceback" not in result.stderr
    assert "__share_group_state" not in _topics(broker.bootstrap)


# -- produce and auto-creation ---------------------------------------------------------


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
@pytest.mark.parametrize("name", (OFFSETS, "__share_group_state"))
def test_kcat_cannot_produce_to_or_auto_create_an_internal_topic(broker, name):
    result = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", name, "-X", "message.timeout.ms=3000"],
                            input=b"forged\n", capture_output=True, timeout=30)
    assert result.returncode != 0
    assert name not in _topics(broker.bootstrap) or name == OFFSETS
    assert _committed(broker.bootstrap) == 7


# -- delete ------------------------------------------------------------------------


def test_confluent_admin_cannot_delete_an_internal_topic(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    error = _confluent_error(admin.delete_topics([OFFSETS])[OFFSETS])
    assert error.code() == INVALID_TOPIC  # librdkafka shows its own text for this code
    assert OFFSETS in _topics(broker.bootstrap)


def test_kafka_python_admin_cannot_delete_an_internal_topic(broker):
    from kafka.errors import InvalidTopicError

    admin = kafka_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidTopicError):
            admin.delete_topics([OFFSETS])
    finally:
        admin.close()
    assert OFFSETS in _topics(broker.bootstrap)


def test_cli_cannot_delete_an_internal_topic_and_offsets_survive_a_restart(broker):
    result = _cli("topics", "delete", OFFSETS, "--bootstrap", broker.bootstrap)
    assert result.returncode != 0
    assert "internal topic __consumer_offsets" in result.stderr and "Traceback" not in result.stderr
    broker.restart()
    assert _committed(broker.bootstrap) == 7


# -- partitions, records, configs ----------------------------------------------------------


def test_confluent_admin_cannot_add_partitions_delete_records_or_break_configs(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert _confluent_error(admin.create_partitions([NewPartitions(OFFSETS, 4)])[OFFSETS]).code() == INVALID_TOPIC
    deleted = admin.delete_records([TopicPartition(OFFSETS, 0, 1)])
    error = _confluent_error(next(iter(deleted.values())))
    assert error.code() == INVALID_TOPIC
    resource = ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])
    error = _confluent_error(admin.incremental_alter_configs([resource])[resource])
    assert error.code() == INVALID_CONFIG and "cleanup.policy" in error.str()
    tuning = ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=[
        ConfigEntry("segment.ms", "86400000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([tuning])[tuning].result(10)
    assert _committed(broker.bootstrap) == 7


def test_kafka_python_admin_cannot_add_partitions_delete_records_or_break_configs(broker):
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import ConfigResource as KafkaConfigResource, ConfigResourceType
    from kafka.errors import InvalidTopicError

    admin = kafka_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidTopicError):
            admin.create_partitions({OFFSETS: 4})
        with pytest.raises(InvalidTopicError):
            admin.delete_records({KafkaTopicPartition(OFFSETS, 0): 1})
        resource = KafkaConfigResource(ConfigResourceType.TOPIC, OFFSETS, configs={"cleanup.policy": "delete"})
        errors = str(admin.alter_configs([resource], raise_on_unknown=False))  # the failures, by resource
        assert "InvalidConfigurationError" in errors and "must keep cleanup.policy=compact" in errors
    finally:
        admin.close()
    assert _committed(broker.bootstrap) == 7


def test_cli_cannot_add_partitions_or_break_configs(broker):
    grown = _cli("topics", "alter", OFFSETS, "--partitions", "4", "--bootstrap", broker.bootstrap)
    assert grown.returncode != 0 and "internal topic" in grown.stderr
    policy = _cli("topics", "alter", OFFSETS, "--config", "cleanup.policy=delete", "--bootstrap", broker.bootstrap)
    assert policy.returncode != 0 and "cleanup.policy" in policy.stderr
    assert "Traceback" not in grown.stderr + policy.stderr


def test_a_user_topic_named_with_two_underscores_is_an_ordinary_topic(broker):
    name = "__" + unique_topic("mine")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1)])[name].result(10)
    admin.delete_topics([name])[name].result(10)


def test_internal_names_are_one_list():
    # The CLI, the broker and these tests must agree on the names.
    from logbroker.broker.internal_topic import INTERNAL_TOPICS

    assert {OFFSETS, *NEVER_CREATED} <= INTERNAL_TOPICS
    assert os.path.basename(__file__).startswith("test_")
