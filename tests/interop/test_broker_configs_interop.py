"""confluent-kafka's AdminClient against logbroker as librdkafka's tests/0081-admin.c
uses it: replica assignments naming the broker, and the BROKER config resource
(describe, alter, incremental alter; kept across a restart)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceType,
)

NODE = 5


def _admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def _one(futures):
    (future,) = futures.values()
    return future.result(15)


@pytest.fixture(scope="module")
def node_config(tmp_path_factory) -> str:
    """A config file giving the broker node id NODE (serve has no flag for it)."""
    path = tmp_path_factory.mktemp("config") / "broker.toml"
    path.write_text(f'"node.id" = {NODE}\n')
    return str(path)


@pytest.fixture(scope="module")
def node_broker(module_broker_factory, node_config):
    return module_broker_factory("--config", node_config)


def test_replica_assignments(node_broker, topic) -> None:
    admin = _admin(node_broker)
    _one(admin.create_topics([NewTopic(topic, 2, replica_assignment=[[NODE], [NODE]])]))
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    assert sorted(meta.partitions) == [0, 1] and meta.partitions[1].replicas == [NODE]
    with pytest.raises(KafkaException) as refused:
        _one(admin.create_topics([NewTopic(topic + "-x", 1, replica_assignment=[[NODE, NODE + 1]])]))
    assert refused.value.args[0].name() == "INVALID_REPLICA_ASSIGNMENT"
    _one(admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[NODE]])]))
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3
    with pytest.raises(KafkaException) as refused:
        _one(admin.create_partitions([NewPartitions(topic, 4, replica_assignment=[[NODE + 1]])]))
    assert refused.value.args[0].name() == "INVALID_REPLICA_ASSIGNMENT"


def test_broker_configs_alter_describe_and_survive_a_restart(module_broker_factory, node_config) -> None:
    broker = module_broker_factory("--config", node_config)
    admin = _admin(broker)
    me = str(NODE)
    configs = _one(admin.describe_configs([ConfigResource(ResourceType.BROKER, me)]))
    assert configs["node.id"].value == me and configs["node.id"].is_read_only
    assert not configs["log.retention.ms"].is_read_only
    assert configs["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # The legacy alter replaces every dynamic config of the resource; then one incremental SET.
    # (librdkafka refuses the cluster default's empty name itself: the handler tests cover it.)
    with pytest.warns(DeprecationWarning):
        _one(admin.alter_configs([ConfigResource(ResourceType.BROKER, me, set_config={
            "log.retention.ms": "3600000", "message.max.bytes": "500000"})]))
    resource = ConfigResource(ResourceType.BROKER, me, incremental_configs=[
        ConfigEntry("log.segment.bytes", "200000", incremental_operation=AlterConfigOpType.SET)])
    _one(admin.incremental_alter_configs([resource]))
    with pytest.raises(KafkaException) as refused:
        resource = ConfigResource(ResourceType.BROKER, me, incremental_configs=[
            ConfigEntry("port", "1", incremental_operation=AlterConfigOpType.SET)])
        _one(admin.incremental_alter_configs([resource]))
    assert refused.value.args[0].name() == "INVALID_REQUEST"
    assert "Cannot update these configs dynamically: Set(port)" in refused.value.args[0].str()

    def check(admin: AdminClient) -> None:
        described = _one(admin.describe_configs([ConfigResource(ResourceType.BROKER, me)]))
        for name, value in (("log.retention.ms", "3600000"), ("message.max.bytes", "500000"),
                            ("log.segment.bytes", "200000")):
            entry = described[name]
            assert (entry.value, entry.source) == (value, ConfigSource.DYNAMIC_BROKER_CONFIG.value)
            # confluent-kafka keys synonyms by name, so the same-named chain shows its last link only.
            assert [s.source for s in entry.synonyms.values()] == [ConfigSource.DEFAULT_CONFIG.value]

    check(admin)
    broker.restart()
    check(_admin(broker))
