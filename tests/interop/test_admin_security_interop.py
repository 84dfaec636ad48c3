"""The ACL, SCRAM and topic admin APIs with real AdminClients against a real
``logbroker serve``: confluent-kafka (librdkafka) and kafka-python create,
describe and delete ACLs and SCRAM credentials; a new rule or credential is in
force for the very next request or login; DescribeTopicPartitions,
ElectLeaders and OffsetDelete answer as Kafka does for one node."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    ElectionType,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
)
from confluent_kafka import TopicPartition as CkPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from logbroker.broker.security import UserStore


def _sasl_broker(broker_factory, tmp_path, *, authorizer: bool):
    data = tmp_path / "data"
    store = UserStore(data)
    store.add("admin", "admin-pw")
    store.add("alice", "alice-pw")
    lines = ['security_protocol = "SASL_PLAINTEXT"']
    if authorizer:
        lines += ["authorizer_enable = true", 'super_users = "User:admin"']
    config = tmp_path / "broker.toml"
    config.write_text("\n".join(lines) + "\n")
    return broker_factory("--config", str(config), data_dir=data)


def _conf(broker, user: str, password: str, mechanism: str = "SCRAM-SHA-256") -> dict:
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}


def _produce(conf: dict, topic: str):
    """One record; the delivery error (None on success)."""
    errors = []
    producer = Producer({**conf, "message.timeout.ms": 10_000})
    producer.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(15) == 0
    return errors[0]


def _binding(principal: str, topic: str, operation, permission=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*", operation, permission)


def test_confluent_acls_are_created_described_deleted_and_in_force(broker_factory, tmp_path):
    broker = _sasl_broker(broker_factory, tmp_path, authorizer=True)
    admin = AdminClient(_conf(broker, "admin", "admin-pw"))
    alice = _conf(broker, "alice", "alice-pw")
    admin.create_topics([NewTopic("guarded", 1, 1)])["guarded"].result(15)
    assert _produce(alice, "guarded").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    allow = _binding("User:alice", "guarded", AclOperation.WRITE)
    for future in admin.create_acls([allow]).values():
        assert future.result(15) is None
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    assert admin.describe_acls(everything).result(15) == [allow]
    assert _produce(alice, "guarded") is None  # the next request is allowed

    deny = _binding("User:alice", "guarded", AclOperation.ALL, AclPermissionType.DENY)
    admin.create_acls([deny])[deny].result(15)
    assert _produce(alice, "guarded").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # alice may not administer ACLs: she lacks ALTER/DESCRIBE on the cluster.
    alice_admin = AdminClient(alice)
    with pytest.raises(KafkaException) as refused:
        alice_admin.create_acls([allow])[allow].result(15)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # librdkafka drops DescribeAcls' top-level error code (rd_kafka_DescribeAclsResponse_parse):
    # alice sees no rules; kafka-python's test below sees the refusal itself.
    assert alice_admin.describe_acls(everything).result(15) == []

    alices = AclBindingFilter(ResourceType.TOPIC, "guarded", ResourcePatternType.MATCH, "User:alice", None,
                              AclOperation.ANY, AclPermissionType.ANY)
    deleted = admin.delete_acls([alices])[alices].result(15)
    assert sorted(deleted, key=str) == sorted([allow, deny], key=str)
    assert admin.describe_acls(everything).result(15) == []
    assert _produce(alice, "guarded").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_confluent_scram_credentials_log_in_at_once(broker_factory, tmp_path):
    broker = _sasl_broker(broker_factory, tmp_path, authorizer=False)
    admin = AdminClient(_conf(broker, "admin", "admin-pw"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion("newbie", info, b"fresh-pw")
    assert admin.alter_user_scram_credentials([upsert])["newbie"].result(15) is None
    described = admin.describe_user_scram_credentials(["newbie"])["newbie"].result(15)
    assert [(c.mechanism, c.iterations) for c in described.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 8192)]
    # A fresh SCRAM client logs in with the new credential.
    assert _produce(_conf(broker, "newbie", "fresh-pw", "SCRAM-SHA-512"), "scram-topic") is None

    too_few = UserScramCredentialUpsertion("weak", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw")
    with pytest.raises(KafkaException) as refused:
        admin.alter_user_scram_credentials([too_few])["weak"].result(15)
    assert refused.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    with pytest.raises(KafkaException) as refused:
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(15)
    assert refused.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    gone = UserScramCredentialDeletion("newbie", ScramMechanism.SCRAM_SHA_512)
    assert admin.alter_user_scram_credentials([gone])["newbie"].result(15) is None
    locked_out = AdminClient(_conf(broker, "newbie", "fresh-pw", "SCRAM-SHA-512"))
    with pytest.raises(KafkaException):
        locked_out.list_topics(timeout=3)


def test_kafka_python_admin_acls_and_scram(broker_factory, tmp_path):
    from kafka import KafkaProducer
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import (
        NewTopic as KpNewTopic,
    )
    from kafka.admin import (
        ResourceType as KpResourceType,
    )
    from kafka.admin._users import ScramMechanism as KpMechanism
    from kafka.admin._users import UserScramCredentialUpsertion as KpUpsertion
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        TopicAuthorizationFailedError,
    )

    broker = _sasl_broker(broker_factory, tmp_path, authorizer=True)
    sasl = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, sasl_plain_username="admin",
                             sasl_plain_password="admin-pw", **sasl)
    try:
        admin.create_topics([KpNewTopic("kp-topic", 1, 1)])
        acl = ACL(principal="User:kp", host="*", operation=ACLOperation.WRITE,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(KpResourceType.TOPIC, "kp-", ACLResourcePatternType.PREFIXED))
        result = admin.create_acls([acl])
        assert result["failed"] == [] and len(result["succeeded"]) == 1
        found, error = admin.describe_acls(ACLFilter(
            principal="User:kp", host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.TOPIC, "kp-topic", ACLResourcePatternType.MATCH)))
        assert [(a.resource_pattern.resource_name, a.resource_pattern.pattern_type) for a in found] == [
            ("kp-", ACLResourcePatternType.PREFIXED)]

        upsert = KpUpsertion("kp", KpMechanism.SCRAM_SHA_256, "kp-pw", iterations=4096)
        assert admin.alter_user_scram_credentials([upsert]) == {"kp": None}
        described = admin.describe_user_scram_credentials(["kp"])
        assert described["kp"]["credential_infos"] == [{"mechanism": KpMechanism.SCRAM_SHA_256, "iterations": 4096}]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, sasl_plain_username="kp",
                                 sasl_plain_password="kp-pw", enable_idempotence=False, **sasl)
        producer.send("kp-topic", b"v").get(timeout=15)
        producer.close()

        outsider = KafkaAdminClient(bootstrap_servers=broker.bootstrap, sasl_plain_username="alice",
                                    sasl_plain_password="alice-pw", **sasl)
        try:
            with pytest.raises(ClusterAuthorizationFailedError):
                outsider.describe_acls(ACLFilter(
                    principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY)))
        finally:
            outsider.close()

        deleted = admin.delete_acls([ACLFilter(
            principal="User:kp", host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY))])
        [(_, matched, error)] = deleted
        assert len(matched) == 1 and error.errno == 0
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, sasl_plain_username="kp",
                                 sasl_plain_password="kp-pw", enable_idempotence=False, max_block_ms=5000, **sasl)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send("kp-topic", b"v").get(timeout=15)
        producer.close()
    finally:
        admin.close()


def test_describe_topics_elect_leaders_and_offset_delete(module_broker, topic):
    from confluent_kafka import Consumer
    from kafka import TopicPartition as KpPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupSubscribedToTopicError, NoError

    admin = AdminClient({"bootstrap.servers": module_broker.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(15)

    # librdkafka 2.16's describe_topics asks Metadata, not DescribeTopicPartitions (kafka-python's below does).
    described = admin.describe_topics(TopicCollection([topic]))[topic].result(15)
    assert described.name == topic and [p.id for p in described.partitions] == [0, 1, 2]
    assert described.topic_id is not None and str(described.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"
    assert all(p.leader is not None and p.leader.id == p.replicas[0].id for p in described.partitions)

    # ElectLeaders: the leader is already the preferred one.
    result = admin.elect_leaders(ElectionType.PREFERRED, [CkPartition(topic, 0), CkPartition(topic, 7)]).result(15)
    errors = {tp.partition: (err.code() if err is not None else None) for tp, err in result.items()}
    assert errors == {0: KafkaError.ELECTION_NOT_NEEDED, 7: KafkaError.UNKNOWN_TOPIC_OR_PART}

    # kafka-python pages DescribeTopicPartitions by cursor, and deletes a group's offsets.
    kp = KafkaAdminClient(bootstrap_servers=module_broker.bootstrap)
    try:
        page = kp.describe_topic_partitions([topic], response_partition_limit=2)
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1]
        assert page["next_cursor"] == {"topic_name": topic, "partition_index": 2}
        page = kp.describe_topic_partitions([topic], cursor=page["next_cursor"])
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [2]

        group = f"{topic}-g"
        consumer = Consumer({"bootstrap.servers": module_broker.bootstrap, "group.id": group,
                             "enable.auto.commit": False, "session.timeout.ms": 6000})
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        consumer.commit(offsets=[CkPartition(topic, 0, 5)], asynchronous=False)
        # While the group consumes the topic, its offsets cannot be deleted.
        refused = kp.delete_group_offsets(group, [KpPartition(topic, 0)])
        assert refused == {KpPartition(topic, 0): GroupSubscribedToTopicError}
        consumer.close()
        assert kp.delete_group_offsets(group, [KpPartition(topic, 0)]) == {KpPartition(topic, 0): NoError}
        offsets = kp.list_group_offsets({group: None})
        assert KpPartition(topic, 0) not in offsets[group]
    finally:
        kp.close()
