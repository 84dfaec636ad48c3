"""Topic administration through each client's admin API.

Each test creates a topic with config overrides, checks that a second create
fails with TOPIC_ALREADY_EXISTS and an invalid config with INVALID_CONFIG, reads
the partitions back from metadata, describes the topic configs (values and
sources), alters them, describes again, deletes the topic and checks it is gone
and that a second delete fails with UNKNOWN_TOPIC_OR_PARTITION.

kafka-python alters with IncrementalAlterConfigs (SET and DELETE) and then with
the legacy AlterConfigs; aiokafka only has the legacy AlterConfigs (which
replaces every override); confluent-kafka uses IncrementalAlterConfigs.
"""

from __future__ import annotations

import asyncio

from interop_support import create_topic, unique_topic, wait_until

TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_CONFIG = 40
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5

CREATE_CONFIGS = {"retention.ms": "123456", "max.message.bytes": "65536"}


def _check_created(configs: dict[str, tuple[str, int]]) -> None:
    """``configs``: name -> (value, source) for every config of a freshly created topic."""
    assert configs["retention.ms"] == ("123456", DYNAMIC_TOPIC_CONFIG)
    assert configs["max.message.bytes"] == ("65536", DYNAMIC_TOPIC_CONFIG)
    assert configs["cleanup.policy"] == ("delete", DEFAULT_CONFIG)
    assert configs["segment.ms"] == (str(7 * 24 * 3600 * 1000), DEFAULT_CONFIG)


# ------------------------------------------------------------------ kafka-python


def test_kafka_python_admin(module_broker):
    from kafka import KafkaAdminClient
    from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, ConfigSourceType

    name = unique_topic("admin-kp")
    admin = KafkaAdminClient(bootstrap_servers=module_broker.bootstrap, request_timeout_ms=10000)

    def describe() -> dict[str, tuple[str, int]]:
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
        entries = result["topic"][name]
        return {k: (v["value"], ConfigSourceType[v["config_source"]].value) for k, v in entries.items()}

    try:
        created = admin.create_topics(
            {name: {"num_partitions": 3, "replication_factor": 1, "configs": dict(CREATE_CONFIGS)}}
        )
        [entry] = created["topics"]
        assert (entry["name"], entry["error_code"]) == (name, 0)

        again = admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}}, raise_errors=False)
        assert [t["error_code"] for t in again["topics"]] == [TOPIC_ALREADY_EXISTS]
        bad = admin.create_topics(
            {unique_topic("admin-kp-bad"): {"num_partitions": 1, "replication_factor": 1,
                                            "configs": {"cleanup.policy": "bogus"}}},
            raise_errors=False,
        )
        assert [t["error_code"] for t in bad["topics"]] == [INVALID_CONFIG]

        assert name in admin.list_topics()
        [described] = admin.describe_topics([name])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
        assert all(p["leader_id"] == p["replica_nodes"][0] for p in described["partitions"])

        _check_created(describe())

        # IncrementalAlterConfigs: SET one override, DELETE another (back to its default).
        result = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name,
                            {"retention.ms": "999", "max.message.bytes": (AlterConfigOp.DELETE, None)})],
            incremental=True,
        )
        assert result == {"topic": {name: "OK"}}
        configs = describe()
        assert configs["retention.ms"] == ("999", DYNAMIC_TOPIC_CONFIG)
        assert configs["max.message.bytes"] == ("1048588", DEFAULT_CONFIG)

        # Legacy AlterConfigs (kafka-python re-sends the other overrides itself).
        result = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"segment.ms": "3600000"})], incremental=False
        )
        assert result == {"topic": {name: "OK"}}
        configs = describe()
        assert configs["segment.ms"] == ("3600000", DYNAMIC_TOPIC_CONFIG)
        assert configs["retention.ms"] == ("999", DYNAMIC_TOPIC_CONFIG)

        deleted = admin.delete_topics([name])
        assert [(t["name"], t["error_code"]) for t in deleted["topics"]] == [(name, 0)]
        wait_until(lambda: name not in admin.list_topics(), 10, message=f"{name} to disappear")
        again = admin.delete_topics([name], raise_errors=False)
        assert [t["error_code"] for t in again["topics"]] == [UNKNOWN_TOPIC_OR_PARTITION]
    finally:
        admin.close()


# ---------------------------------------------------------------------- aiokafka


def test_aiokafka_admin(module_broker):
    asyncio.run(asyncio.wait_for(_aiokafka_admin(module_broker.bootstrap), 60))


async def _aiokafka_admin(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    name = unique_topic("admin-aio")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()

    async def describe() -> dict[str, tuple[str, int]]:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [resource] = response.to_object()["resources"]
        assert (resource["error_code"], resource["resource_name"]) == (0, name)
        return {e["config_names"]: (e["config_value"], e["config_source"]) for e in resource["config_entries"]}

    try:
        response = await admin.create_topics([NewTopic(name, 3, 1, topic_configs=dict(CREATE_CONFIGS))])
        assert [(t[0], t[1]) for t in response.topic_errors] == [(name, 0)]
        response = await admin.create_topics([NewTopic(name, 1, 1)])
        assert [t[1] for t in response.topic_errors] == [TOPIC_ALREADY_EXISTS]
        response = await admin.create_topics(
            [NewTopic(unique_topic("admin-aio-bad"), 1, 1, topic_configs={"cleanup.policy": "bogus"})]
        )
        assert [t[1] for t in response.topic_errors] == [INVALID_CONFIG]

        assert name in await admin.list_topics()
        [described] = await admin.describe_topics([name])
        assert described["error_code"] == 0
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]

        _check_created(await describe())

        # Legacy AlterConfigs replaces every override: max.message.bytes goes back to its default.
        [response] = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": "999"})]
        )
        assert [(r[0], r[3]) for r in response.resources] == [(0, name)]
        configs = await describe()
        assert configs["retention.ms"] == ("999", DYNAMIC_TOPIC_CONFIG)
        assert configs["max.message.bytes"] == ("1048588", DEFAULT_CONFIG)

        response = await admin.delete_topics([name])
        assert [tuple(t) for t in response.topic_error_codes] == [(name, 0)]

        async def gone():
            deadline = asyncio.get_running_loop().time() + 10
            while name in await admin.list_topics():
                assert asyncio.get_running_loop().time() < deadline, f"{name} still listed"
                await asyncio.sleep(0.05)

        await gone()
        response = await admin.delete_topics([name])
        assert [t[1] for t in response.topic_error_codes] == [UNKNOWN_TOPIC_OR_PARTITION]
    finally:
        await admin.close()


# --------------------------------------------------------------- confluent-kafka


def test_confluent_admin(module_broker):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    name = unique_topic("admin-ck")
    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap, "socket.timeout.ms": 10000})

    def error_code(future) -> int:
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            return exc.args[0].code()
        return 0

    def describe() -> dict[str, tuple[str, int]]:
        [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
        return {k: (v.value, int(v.source)) for k, v in future.result(timeout=15).items()}

    [future] = admin.create_topics(
        [NewTopic(name, num_partitions=3, replication_factor=1, config=dict(CREATE_CONFIGS))]
    ).values()
    assert error_code(future) == 0
    [future] = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values()
    assert error_code(future) == TOPIC_ALREADY_EXISTS
    [future] = admin.create_topics(
        [NewTopic(unique_topic("admin-ck-bad"), num_partitions=1, replication_factor=1,
                  config={"cleanup.policy": "bogus"})]
    ).values()
    assert error_code(future) == INVALID_CONFIG

    metadata = admin.list_topics(topic=name, timeout=10)
    assert metadata.topics[name].error is None
    assert sorted(metadata.topics[name].partitions) == [0, 1, 2]
    assert {p.leader for p in metadata.topics[name].partitions.values()} == set(metadata.brokers)

    _check_created(describe())

    [future] = admin.incremental_alter_configs([ConfigResource(
        ResourceType.TOPIC, name,
        incremental_configs=[
            ConfigEntry("retention.ms", "999", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )]).values()
    assert error_code(future) == 0
    configs = describe()
    assert configs["retention.ms"] == ("999", DYNAMIC_TOPIC_CONFIG)
    assert configs["max.message.bytes"] == ("1048588", DEFAULT_CONFIG)

    [future] = admin.delete_topics([name], operation_timeout=10).values()
    assert error_code(future) == 0
    wait_until(lambda: name not in admin.list_topics(timeout=10).topics, 10, message=f"{name} to disappear")
    [future] = admin.delete_topics([name], operation_timeout=10).values()
    assert error_code(future) == UNKNOWN_TOPIC_OR_PARTITION


def test_confluent_list_all_topics(module_broker):
    """AdminClient.list_topics() with no topic asks Metadata for all topics (a null topic list)."""
    from confluent_kafka.admin import AdminClient

    name = unique_topic("admin-ck-all")
    create_topic(module_broker.bootstrap, name, partitions=2)
    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap, "socket.timeout.ms": 10000})
    metadata = admin.list_topics(timeout=10)
    assert sorted(metadata.topics[name].partitions) == [0, 1]
    assert [b.port for b in metadata.brokers.values()] == [module_broker.port]
