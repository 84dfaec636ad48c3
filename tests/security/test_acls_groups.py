"""Group, share-group and admin ACLs against a real ``logbroker serve`` with
SASL and the authorizer on, with kafka-python and confluent-kafka as clients.

One broker serves the module. ``admin`` is a super user; ``alice`` gets
exactly the rules each test grants (ACLs are re-read by the running broker).
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from kafka.structs import OffsetAndMetadata

from logbroker.broker.security import Acl, Authorizer, UserStore

GROUP_DENIED, TOPIC_DENIED = 30, 29


class Secured:
    """The module's broker, its ACLs and logins for each client library."""

    def __init__(self, proc, data) -> None:
        self.proc = proc
        self.bootstrap = proc.bootstrap
        self.acls = Authorizer(data)

    def allow(self, kind: str, name: str, *operations: str, user: str = "alice") -> None:
        for op in operations:
            self.acls.add(Acl(f"User:{user}", kind, name, op))
        time.sleep(0.01)  # a later change must not share the file's mtime and size

    @staticmethod
    def kafka_python(user: str) -> dict:
        return dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                    sasl_plain_username=user, sasl_plain_password=f"{user}-pw")

    def confluent(self, user: str, **extra) -> dict:
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": f"{user}-pw", **extra}

    def produce(self, topic: str, *values: bytes) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, **self.kafka_python("admin"))
        for value in values:
            producer.send(topic, value).get(timeout=10)
        producer.close()

    def commit(self, user: str, group: str, topic: str, offset: int = 1) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                                 **self.kafka_python(user))
        try:
            consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)})
        finally:
            consumer.close()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from brokerproc import BrokerProcess
    from kafka.admin import KafkaAdminClient, NewTopic

    root = tmp_path_factory.mktemp("acl-broker")
    data = root / "data"
    users = UserStore(data)
    for user in ("alice", "admin"):
        users.add(user, f"{user}-pw")
    config = root / "broker.toml"
    config.write_text('security_protocol = "SASL_PLAINTEXT"\nauthorizer_enable = true\n'
                      'super_users = "User:admin"\ngroup_initial_rebalance_delay_ms = 0\n')
    proc = BrokerProcess(data, "--config", str(config)).start()
    try:
        broker = Secured(proc, data)
        admin = KafkaAdminClient(bootstrap_servers=proc.bootstrap, **broker.kafka_python("admin"))
        admin.create_topics([NewTopic(name, 1, 1) for name in ("acl-t", "acl-w", "acl-hidden", "acl-q")])
        admin.close()
        broker.produce("acl-t", b"v")
        broker.allow("topic", "acl-t", "read")
        broker.allow("topic", "acl-w", "describe")
        yield broker
    finally:
        proc.kill()


def _consume_one(consumer, seconds=10.0) -> list[bytes]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batches = consumer.poll(200)
        if batches:
            return [m.value for records in batches.values() for m in records]
    return []


def test_a_consumer_group_needs_read_on_the_group(secured):
    login = secured.kafka_python("alice")
    secured.allow("group", "acl-described", "describe")  # finds its coordinator, may not join
    for group in ("acl-denied", "acl-described"):
        consumer = KafkaConsumer("acl-t", group_id=group, bootstrap_servers=secured.bootstrap,
                                 auto_offset_reset="earliest", **login)
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.poll(5000)
        consumer.close()
    secured.allow("group", "acl-ok", "read")
    consumer = KafkaConsumer("acl-t", group_id="acl-ok", bootstrap_servers=secured.bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, **login)
    assert _consume_one(consumer) == [b"v"]
    consumer.commit()
    assert consumer.committed(TopicPartition("acl-t", 0)) == 1
    consumer.close()


def test_confluent_consumer_is_told_group_authorization_failed(secured):
    from confluent_kafka import Consumer

    consumer = Consumer(secured.confluent("alice", **{"group.id": "acl-ck-denied", "auto.offset.reset": "earliest"}))
    consumer.subscribe(["acl-t"])
    error = None
    deadline = time.monotonic() + 10
    while error is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error():
            error = msg.error()
    consumer.close()
    assert error is not None and error.code() == GROUP_DENIED


def test_offset_commit_needs_topic_read_and_offset_fetch_topic_describe(secured):
    secured.allow("group", "acl-offsets", "read")
    # acl-w: DESCRIBE only, so no commit; acl-t: READ
    with pytest.raises(TopicAuthorizationFailedError):
        secured.commit("alice", "acl-offsets", "acl-w")
    secured.commit("alice", "acl-offsets", "acl-t", 1)
    secured.commit("admin", "acl-offsets", "acl-hidden", 7)
    secured.commit("admin", "acl-offsets", "acl-w", 3)

    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    def offsets(user):
        admin = AdminClient(secured.confluent(user))
        request = ConsumerGroupTopicPartitions("acl-offsets")
        result = admin.list_consumer_group_offsets([request])["acl-offsets"].result(10)
        return {tp.topic: tp.offset for tp in result.topic_partitions}

    assert offsets("admin") == {"acl-t": 1, "acl-hidden": 7, "acl-w": 3}
    assert offsets("alice") == {"acl-t": 1, "acl-w": 3}  # acl-hidden is not hers to describe


def test_list_groups_shows_only_the_groups_a_principal_may_describe(secured):
    secured.commit("admin", "acl-listed", "acl-t")
    secured.commit("admin", "acl-secret", "acl-t")
    secured.allow("group", "acl-listed", "describe")
    from confluent_kafka.admin import AdminClient

    def listed(user):
        admin = AdminClient(secured.confluent(user))  # kept alive until the result is in
        return {g.group_id for g in admin.list_consumer_groups().result(10).valid}

    assert {"acl-listed", "acl-secret"} <= listed("admin")
    mine = listed("alice")
    assert "acl-listed" in mine and "acl-secret" not in mine


def test_admin_requests_need_their_acls(secured):
    from confluent_kafka import KafkaException, TopicPartition as CTP
    from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec

    admin = AdminClient(secured.confluent("alice"))

    def error_of(future) -> int | None:
        try:
            future.result(10)
        except KafkaException as exc:
            return exc.args[0].code()
        return None

    def describe_configs():
        return error_of(next(iter(admin.describe_configs([ConfigResource("topic", "acl-t")]).values())))

    assert describe_configs() == TOPIC_DENIED  # READ does not cover configs
    secured.allow("topic", "acl-t", "describe_configs")
    assert describe_configs() is None
    assert error_of(admin.delete_records([CTP("acl-t", 0, 1)])[CTP("acl-t", 0)]) == TOPIC_DENIED
    # Without DESCRIBE librdkafka stops at Metadata (TOPIC_AUTHORIZATION_FAILED there) and
    # reports _NOENT; ListOffsets' own answer is checked in test_acls_handlers.
    hidden = CTP("acl-hidden", 0)
    assert error_of(admin.list_offsets({hidden: OffsetSpec.latest()})[hidden]) is not None
    secured.allow("topic", "acl-hidden", "describe")
    fresh = AdminClient(secured.confluent("alice"))  # the first one remembers the topic as missing
    assert error_of(fresh.list_offsets({hidden: OffsetSpec.latest()})[hidden]) is None


def test_a_share_consumer_needs_read_on_its_share_group(secured):
    from confluent_kafka import KafkaException, ShareConsumer
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    def first_delivery(group):
        """The first record a ShareConsumer of ``group`` gets, or raises the error it is told."""
        consumer = ShareConsumer(secured.confluent("alice", **{"group.id": group, "fetch.wait.max.ms": 100}))
        try:
            consumer.subscribe(["acl-q"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for m in consumer.poll(0.2):
                    if m.error():
                        raise KafkaException(m.error())
                    return m.value()
            return None
        finally:
            consumer.close()

    secured.allow("group", "acl-share", "describe")  # finds the coordinator; the heartbeat is refused
    secured.allow("topic", "acl-q", "read")
    with pytest.raises(KafkaException) as raised:
        first_delivery("acl-share")
    assert raised.value.args[0].code() == GROUP_DENIED
    # With READ on the group it consumes (from the start: a group config the super user sets).
    secured.allow("group", "acl-share", "read")
    entry = ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.GROUP, "acl-share", incremental_configs=[entry])
    admin = AdminClient(secured.confluent("admin"))
    admin.incremental_alter_configs([resource])[resource].result(10)
    secured.produce("acl-q", b"job")
    assert first_delivery("acl-share") == b"job"


def test_our_queue_consumer_is_refused_without_read_on_the_group(broker_factory, tmp_path):
    """logbroker's QueueConsumer (no SASL: the principal is User:ANONYMOUS) against ACLs."""
    import trio

    from logbroker.client import QueueConsumer
    from logbroker.errors import KafkaError

    data = tmp_path / "data"
    acls = Authorizer(data)
    acls.add(Acl("User:ANONYMOUS", "topic", "jobs", "all"))
    acls.add(Acl("User:ANONYMOUS", "cluster", "kafka-cluster", "create"))
    acls.add(Acl("User:ANONYMOUS", "group", "workers", "describe"))
    config = tmp_path / "broker.toml"
    config.write_text("authorizer_enable = true\n")
    broker = broker_factory("--config", str(config), data_dir=data)

    async def join() -> None:
        from logbroker.client import Admin

        async with Admin(broker.bootstrap) as admin:
            await admin.create_topic("jobs", 1)
        async with QueueConsumer(broker.bootstrap, ["jobs"], group_id="workers"):
            pass

    with pytest.raises(KafkaError) as caught:  # the error itself, not an ExceptionGroup
        trio.run(join)
    assert caught.value.code == GROUP_DENIED
