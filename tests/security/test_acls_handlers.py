"""ACLs on every API, through the handlers with real request bytes (no sockets).

alice gets exactly the rules a test grants; bob gets none. Each API is
refused with Kafka's error code (GROUP_AUTHORIZATION_FAILED 30,
TOPIC_AUTHORIZATION_FAILED 29, CLUSTER_AUTHORIZATION_FAILED 31) where
Kafka's authorizer refuses it, and works once the rule Kafka asks for is there.
"""

from __future__ import annotations

import pytest

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.deferred import Deferred
from logbroker.broker.handlers import FetchOperation, Reply, dispatch
from logbroker.broker.handlers._build import build
from logbroker.broker.security import Acl
from logbroker.broker.security.acls import OPERATION_CODES
from logbroker.broker.session import RequestContext, Session
from logbroker.protocol import (
    ApiKey,
    ErrorCode,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_module,
)
from logbroker.records import BatchBuilder

GROUP_DENIED, TOPIC_DENIED, CLUSTER_DENIED = 30, 29, 31
K = ApiKey


class Harness:
    """One broker with ``authorizer.enable``; requests are made as ``self.user``."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._correlation = 0
        self.user = "bob"

    def allow(self, kind: str, name: str, *operations: str, user: str = "alice", **extra) -> None:
        if self.broker.authorizer is None:
            return
        for op in operations:
            self.broker.authorizer.add(Acl(f"User:{user}", kind, name, op, **extra))

    def req(self, api_key, version, class_name, /, **fields):
        return build(getattr(request_module(api_key, version), class_name), **fields)

    def call(self, api_key: int, version: int, body_name: str, /, *, as_user: str | None = None, **fields):
        body = self.req(api_key, version, body_name, **fields)
        self._correlation += 1
        frame = encode_request(api_key, version, self._correlation, "test-client", body)
        request = decode_request(frame[4:])
        session = Session(principal=f"User:{as_user or self.user}", authenticated=True)
        result = dispatch(self.broker, request, RequestContext.for_request(request, session))
        if isinstance(result, Deferred):
            self.broker.fire_deadlines(self.broker.clock() + 60_000)
            assert result.done
            result = result.value
        if isinstance(result, FetchOperation):
            result = result.attempt(final=True)
        if isinstance(result, Reply):
            result = result.body
        payload = b"".join(bytes(p) for p in encode_response(request, result))[4:]
        correlation, decoded = decode_response(api_key, version, payload)
        assert correlation == self._correlation
        return decoded

    def produce(self, topic: str, values: list[bytes], partition: int = 0) -> None:
        builder = BatchBuilder()
        for value in values:
            builder.append(value, timestamp_ms=1000)
        self.broker.append(topic, partition, builder.build())


@pytest.fixture
def h(tmp_path):
    broker = Broker(BrokerConfig(data_dir=str(tmp_path / "data"), authorizer_enable=True,
                                 group_initial_rebalance_delay_ms=0))
    broker.create_topic("t", 2)
    broker.create_topic("t2", 1)
    harness = Harness(broker)
    yield harness
    broker.close()


def bits(*operations: str) -> int:
    return sum(1 << OPERATION_CODES[op] for op in operations)


# -- classic groups ---------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3])
def test_find_coordinator_needs_describe_on_the_group(h, version):
    assert h.call(K.FIND_COORDINATOR, version, "FindCoordinatorRequest", key="g").error_code == GROUP_DENIED
    h.allow("group", "g", "read")  # READ implies DESCRIBE
    resp = h.call(K.FIND_COORDINATOR, version, "FindCoordinatorRequest", key="g", as_user="alice")
    assert resp.error_code == 0 and resp.port == h.broker.advertised_port


@pytest.mark.parametrize("versions", [(0, 0, 0, 0), (7, 5, 4, 5)])
def test_membership_apis_need_read_on_the_group(h, versions):
    join_v, sync_v, hb_v, leave_v = versions
    protocol = h.req(K.JOIN_GROUP, join_v, "JoinGroupRequestProtocol", name="range", metadata=b"m")
    join = dict(group_id="g", session_timeout=10_000, rebalance_timeout=10_000, member_id="",
                protocol_type="consumer", protocols=(protocol,))
    resp = h.call(K.JOIN_GROUP, join_v, "JoinGroupRequest", **join)
    assert resp.error_code == GROUP_DENIED and resp.generation_id == -1 and resp.members == ()
    sync = dict(group_id="g", generation_id=1, member_id="m", protocol_type="consumer", protocol_name="range",
                assignments=())
    assert h.call(K.SYNC_GROUP, sync_v, "SyncGroupRequest", **sync).error_code == GROUP_DENIED
    hb = h.call(K.HEARTBEAT, hb_v, "HeartbeatRequest", group_id="g", generation_id=1, member_id="m")
    assert hb.error_code == GROUP_DENIED
    leave = dict(group_id="g", member_id="m",
                 members=(h.req(K.LEAVE_GROUP, leave_v, "MemberIdentity", member_id="m"),) if leave_v >= 3 else ())
    assert h.call(K.LEAVE_GROUP, leave_v, "LeaveGroupRequest", **leave).error_code == GROUP_DENIED
    # DESCRIBE (or anything but READ) on the group is not enough to join it.
    h.allow("group", "g", "describe")
    assert h.call(K.JOIN_GROUP, join_v, "JoinGroupRequest", as_user="alice", **join).error_code == GROUP_DENIED
    h.allow("group", "g", "read")
    resp = h.call(K.JOIN_GROUP, join_v, "JoinGroupRequest", as_user="alice", **join)
    assert resp.error_code in (0, ErrorCode.member_id_required)


def _commit(h, user, topics=("t", "t2")):
    mod = K.OFFSET_COMMIT
    return h.call(mod, 8, "OffsetCommitRequest", as_user=user, group_id="g", generation_id_or_member_epoch=-1,
                  member_id="", topics=tuple(
                      h.req(mod, 8, "OffsetCommitRequestTopic", name=name, partitions=(
                          h.req(mod, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=5,
                                committed_leader_epoch=-1, committed_metadata=""),))
                      for name in topics))


def _codes(resp):
    return {t.name: [p.error_code for p in t.partitions] for t in resp.topics}


def test_offset_commit_needs_read_on_the_group_and_each_topic(h):
    assert _codes(_commit(h, "bob")) == {"t": [GROUP_DENIED], "t2": [GROUP_DENIED]}
    h.allow("group", "g", "read")
    assert _codes(_commit(h, "alice")) == {"t": [TOPIC_DENIED], "t2": [TOPIC_DENIED]}
    h.allow("topic", "t", "read")
    h.allow("topic", "t2", "describe")  # DESCRIBE is not enough to commit
    assert _codes(_commit(h, "alice")) == {"t": [0], "t2": [TOPIC_DENIED]}
    assert h.broker.groups.fetch_offsets("g", None).offsets.keys() == {("t", 0)}


def test_offset_fetch_needs_describe_on_the_group_and_each_topic(h):
    h.allow("group", "g", "read")
    h.allow("topic", "t", "read")
    h.allow("topic", "t2", "read")
    assert _codes(_commit(h, "alice")) == {"t": [0], "t2": [0]}
    h.broker.authorizer.remove(Acl("User:alice", "topic", "t2", "read"))
    wanted = lambda v: tuple(h.req(K.OFFSET_FETCH, v, "OffsetFetchRequestTopic", name=n, partition_indexes=(0,))
                             for n in ("t", "t2"))
    # bob: top-level error from v2, per partition before.
    resp = h.call(K.OFFSET_FETCH, 7, "OffsetFetchRequest", group_id="g", topics=wanted(7))
    assert resp.error_code == GROUP_DENIED and resp.topics == ()
    resp = h.call(K.OFFSET_FETCH, 1, "OffsetFetchRequest", group_id="g", topics=wanted(1))
    assert _codes(resp) == {"t": [GROUP_DENIED], "t2": [GROUP_DENIED]}
    # alice: t2 is not hers to describe any more.
    resp = h.call(K.OFFSET_FETCH, 7, "OffsetFetchRequest", as_user="alice", group_id="g", topics=wanted(7))
    assert resp.error_code == 0 and _codes(resp) == {"t": [0], "t2": [TOPIC_DENIED]}
    assert [p.committed_offset for t in resp.topics for p in t.partitions] == [5, -1]
    # every offset of the group: t2 is left out, unnamed
    resp = h.call(K.OFFSET_FETCH, 7, "OffsetFetchRequest", as_user="alice", group_id="g", topics=None)
    assert _codes(resp) == {"t": [0]}
    # a user with DESCRIBE on the group may read its offsets
    h.allow("group", "g", "describe", user="carol")
    h.allow("topic", "*", "describe", user="carol")
    resp = h.call(K.OFFSET_FETCH, 7, "OffsetFetchRequest", as_user="carol", group_id="g", topics=None)
    assert _codes(resp) == {"t": [0], "t2": [0]}


def test_offset_delete_needs_delete_on_the_group_and_read_on_each_topic(h):
    h.allow("group", "g", "read", "delete")
    h.allow("topic", "t", "read")
    h.allow("topic", "t2", "read")
    assert _codes(_commit(h, "alice")) == {"t": [0], "t2": [0]}
    h.broker.authorizer.remove(Acl("User:alice", "topic", "t2", "read"))
    mod = K.OFFSET_DELETE
    topics = tuple(h.req(mod, 0, "OffsetDeleteRequestTopic", name=n,
                         partitions=(h.req(mod, 0, "OffsetDeleteRequestPartition", partition_index=0),))
                   for n in ("t", "t2"))
    resp = h.call(mod, 0, "OffsetDeleteRequest", group_id="g", topics=topics)
    assert resp.error_code == GROUP_DENIED and resp.topics == ()
    resp = h.call(mod, 0, "OffsetDeleteRequest", as_user="alice", group_id="g", topics=topics)
    assert resp.error_code == 0 and _codes(resp) == {"t": [0], "t2": [TOPIC_DENIED]}
    assert h.broker.groups.fetch_offsets("g", None).offsets.keys() == {("t2", 0)}


def _make_groups(h, *names):
    for name in names:
        h.allow("group", name, "read", user="maker")
        h.allow("topic", "t", "read", user="maker")
        mod = K.OFFSET_COMMIT
        resp = h.call(mod, 8, "OffsetCommitRequest", as_user="maker", group_id=name,
                      generation_id_or_member_epoch=-1, member_id="", topics=(
                          h.req(mod, 8, "OffsetCommitRequestTopic", name="t", partitions=(
                              h.req(mod, 8, "OffsetCommitRequestPartition", partition_index=0,
                                    committed_offset=1, committed_metadata=""),)),))
        assert _codes(resp) == {"t": [0]}


def test_list_groups_shows_only_describable_groups_unless_cluster_describe(h):
    _make_groups(h, "g1", "g2", "other")
    h.allow("group", "g-share", "read", user="maker")  # share groups are listed by the same rule
    h.allow("topic", "t", "describe", user="maker")
    assert h.call(K.SHARE_GROUP_HEARTBEAT, 1, "ShareGroupHeartbeatRequest", as_user="maker", group_id="g-share",
                  member_id="m", member_epoch=0, subscribed_topic_names=("t",)).error_code == 0
    listed = lambda user: sorted(g.group_id for g in h.call(K.LIST_GROUPS, 5, "ListGroupsRequest",
                                                             as_user=user).groups)
    assert listed("bob") == []
    h.allow("group", "g", "describe", pattern="prefixed")
    assert listed("alice") == ["g-share", "g1", "g2"]
    h.allow("cluster", "kafka-cluster", "describe")
    assert listed("alice") == ["g-share", "g1", "g2", "other"]


def test_describe_groups_per_group_with_authorized_operations(h):
    _make_groups(h, "g1", "g2")
    h.allow("group", "g1", "read", "delete")
    resp = h.call(K.DESCRIBE_GROUPS, 5, "DescribeGroupsRequest", as_user="alice", groups=("g2", "g1"),
                  include_authorized_operations=True)
    g2, g1 = resp.groups
    assert (g2.group_id, g2.error_code) == ("g2", GROUP_DENIED)
    assert (g1.group_id, g1.error_code, g1.group_state) == ("g1", 0, "Empty")
    assert g1.authorized_operations == bits("read", "describe", "delete")
    resp = h.call(K.DESCRIBE_GROUPS, 5, "DescribeGroupsRequest", as_user="alice", groups=("g1",),
                  include_authorized_operations=False)
    assert resp.groups[0].authorized_operations == -2147483648


def test_delete_groups_needs_delete_per_group(h):
    _make_groups(h, "g1", "g2")
    h.allow("group", "g1", "delete")
    resp = h.call(K.DELETE_GROUPS, 2, "DeleteGroupsRequest", as_user="alice", groups_names=("g1", "g2"))
    assert [(r.group_id, r.error_code) for r in resp.results] == [("g1", 0), ("g2", GROUP_DENIED)]
    assert not h.broker.groups.fetch_offsets("g1", None).offsets
    assert h.broker.groups.fetch_offsets("g2", None).offsets


# -- topics: offsets, records, configs, partitions ----------------------------------------------


def test_list_offsets_and_offset_for_leader_epoch_need_describe(h):
    h.produce("t", [b"a", b"b"])

    def list_offsets(user):
        topic = h.req(K.LIST_OFFSETS, 7, "ListOffsetsTopic", name="t", partitions=(
            h.req(K.LIST_OFFSETS, 7, "ListOffsetsPartition", partition_index=0, current_leader_epoch=-1,
                  timestamp=-1),))
        (part,) = h.call(K.LIST_OFFSETS, 7, "ListOffsetsRequest", as_user=user, replica_id=-1,
                         topics=(topic,)).topics[0].partitions
        return part.error_code, part.offset

    def epoch_end(user):
        topic = h.req(K.OFFSET_FOR_LEADER_EPOCH, 4, "OffsetForLeaderTopic", topic="t", partitions=(
            h.req(K.OFFSET_FOR_LEADER_EPOCH, 4, "OffsetForLeaderPartition", partition=0, current_leader_epoch=-1,
                  leader_epoch=0),))
        (part,) = h.call(K.OFFSET_FOR_LEADER_EPOCH, 4, "OffsetForLeaderEpochRequest", as_user=user,
                         replica_id=-1, topics=(topic,)).topics[0].partitions
        return part.error_code, part.end_offset

    assert list_offsets("alice") == (TOPIC_DENIED, -1) and epoch_end("alice") == (TOPIC_DENIED, -1)
    h.allow("topic", "t", "describe")
    assert list_offsets("alice") == (0, 2) and epoch_end("alice") == (0, 2)


def test_delete_records_needs_delete(h):
    h.produce("t", [b"a", b"b", b"c"])

    def delete(user):
        topic = h.req(K.DELETE_RECORDS, 2, "DeleteRecordsTopic", name="t", partitions=(
            h.req(K.DELETE_RECORDS, 2, "DeleteRecordsPartition", partition_index=0, offset=2),))
        (part,) = h.call(K.DELETE_RECORDS, 2, "DeleteRecordsRequest", as_user=user, topics=(topic,),
                         timeout=1000).topics[0].partitions
        return part.error_code, part.low_watermark

    h.allow("topic", "t", "read", "write", "alter")
    assert delete("alice") == (TOPIC_DENIED, -1)
    assert h.broker.partition("t", 0).log_start_offset == 0
    h.allow("topic", "t", "delete")
    assert delete("alice") == (0, 2)


def test_init_producer_id_needs_idempotent_write_or_write_on_a_topic(h):
    def init(user):
        return h.call(K.INIT_PRODUCER_ID, 4, "InitProducerIdRequest", as_user=user, transactional_id=None,
                      transaction_timeout=60_000, producer_id=-1, producer_epoch=-1)

    resp = init("bob")
    assert (resp.error_code, resp.producer_id) == (CLUSTER_DENIED, -1)
    h.allow("topic", "t", "read", user="bob")
    assert init("bob").error_code == CLUSTER_DENIED
    h.allow("topic", "pay", "write", user="bob", pattern="prefixed")
    assert init("bob").error_code == 0
    h.allow("topic", "*", "write", user="bob", permission="deny")  # denied everywhere: no topic to write
    assert init("bob").error_code == CLUSTER_DENIED
    h.allow("cluster", "kafka-cluster", "idempotent_write")
    resp = init("alice")
    assert resp.error_code == 0 and resp.producer_id >= 0


def _describe_configs(h, user, *resources):
    return [(r.resource_name, r.error_code, len(r.configs)) for r in h.call(
        K.DESCRIBE_CONFIGS, 4, "DescribeConfigsRequest", as_user=user, resources=tuple(
            h.req(K.DESCRIBE_CONFIGS, 4, "DescribeConfigsResource", resource_type=rtype, resource_name=name,
                  configuration_keys=None)
            for rtype, name in resources)).results]


def test_describe_configs_needs_describe_configs_on_topic_cluster_or_group(h):
    h.broker.share.alter_configs("sg", {"share.auto.offset.reset": "earliest"}, h.broker.clock())
    resources = [(2, "t"), (4, "0"), (32, "sg")]
    assert [(n, e) for n, e, _ in _describe_configs(h, "alice", *resources)] == [
        ("t", TOPIC_DENIED), ("0", CLUSTER_DENIED), ("sg", GROUP_DENIED)]
    h.allow("topic", "t", "read", "write", "describe")  # none of them grants configs
    assert _describe_configs(h, "alice", (2, "t"))[0][1] == TOPIC_DENIED
    h.allow("topic", "t", "describe_configs")
    h.allow("cluster", "kafka-cluster", "alter_configs")  # ALTER_CONFIGS implies DESCRIBE_CONFIGS
    h.allow("group", "sg", "describe_configs")
    described = _describe_configs(h, "alice", *resources)
    assert [e for _, e, _ in described] == [0, 0, 0] and all(n > 0 for _, _, n in described)


def test_alter_configs_need_alter_configs(h):
    h.broker.share.alter_configs("sg", {"share.auto.offset.reset": "earliest"}, h.broker.clock())

    def incremental(user, rtype, name, key, value):
        config = h.req(K.INCREMENTAL_ALTER_CONFIGS, 1, "AlterableConfig", name=key, config_operation=0, value=value)
        resource = h.req(K.INCREMENTAL_ALTER_CONFIGS, 1, "AlterConfigsResource", resource_type=rtype,
                         resource_name=name, configs=(config,))
        (r,) = h.call(K.INCREMENTAL_ALTER_CONFIGS, 1, "IncrementalAlterConfigsRequest", as_user=user,
                      resources=(resource,), validate_only=False).responses
        return r.error_code

    def legacy(user, rtype, name, key, value):
        config = h.req(K.ALTER_CONFIGS, 2, "AlterableConfig", name=key, value=value)
        resource = h.req(K.ALTER_CONFIGS, 2, "AlterConfigsResource", resource_type=rtype, resource_name=name,
                         configs=(config,))
        (r,) = h.call(K.ALTER_CONFIGS, 2, "AlterConfigsRequest", as_user=user, resources=(resource,),
                      validate_only=False).responses
        return r.error_code

    h.allow("topic", "t", "alter", "describe_configs")
    assert incremental("alice", 2, "t", "retention.ms", "1000") == TOPIC_DENIED
    assert legacy("alice", 2, "t", "retention.ms", "1000") == TOPIC_DENIED
    assert legacy("alice", 4, "0", "log.retention.ms", "1000") == CLUSTER_DENIED
    assert incremental("alice", 32, "sg", "share.record.lock.duration.ms", "20000") == GROUP_DENIED
    assert h.broker.topics()["t"].configs.get("retention.ms") is None
    h.allow("topic", "t", "alter_configs")
    h.allow("group", "sg", "alter_configs")
    assert incremental("alice", 2, "t", "retention.ms", "1000") == 0
    assert legacy("alice", 2, "t", "retention.ms", "2000") == 0
    assert incremental("alice", 32, "sg", "share.record.lock.duration.ms", "20000") == 0
    assert h.broker.topics()["t"].configs["retention.ms"] == "2000"


def test_create_partitions_needs_alter(h):
    def grow(user):
        topic = h.req(K.CREATE_PARTITIONS, 3, "CreatePartitionsTopic", name="t", count=4, assignments=None)
        return h.call(K.CREATE_PARTITIONS, 3, "CreatePartitionsRequest", as_user=user, topics=(topic,),
                      timeout=1000, validate_only=False).results[0].error_code

    h.allow("topic", "t", "read", "write", "alter_configs")
    assert grow("alice") == TOPIC_DENIED and h.broker.topics()["t"].partitions == 2
    h.allow("topic", "t", "alter")
    assert grow("alice") == 0 and h.broker.topics()["t"].partitions == 4


def test_create_topics_hides_configs_without_describe_configs(h):
    def create(name):
        topic = h.req(K.CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=1, replication_factor=1,
                      assignments=(), configs=())
        (r,) = h.call(K.CREATE_TOPICS, 7, "CreateTopicsRequest", as_user="alice", topics=(topic,),
                      timeout=1000).topics
        return r

    h.allow("topic", "new", "create", pattern="prefixed")
    r = create("new-1")
    assert (r.error_code, r.topic_config_error_code, r.num_partitions) == (0, TOPIC_DENIED, -1)
    assert "new-1" in h.broker.topics()
    h.allow("topic", "new-2", "describe_configs")
    r = create("new-2")
    assert (r.error_code, r.topic_config_error_code, r.num_partitions) == (0, 0, 1) and r.configs


def test_delete_topics_by_id_does_not_reveal_the_name(h):
    topic_id = h.broker.topics()["t2"].topic_id
    state = h.req(K.DELETE_TOPICS, 6, "DeleteTopicState", name=None, topic_id=topic_id)
    (r,) = h.call(K.DELETE_TOPICS, 6, "DeleteTopicsRequest", as_user="alice", topics=(state,),
                  timeout=1000).responses
    assert (r.name, r.error_code) == (None, ErrorCode.unknown_topic_id)
    h.allow("topic", "t2", "describe")
    (r,) = h.call(K.DELETE_TOPICS, 6, "DeleteTopicsRequest", as_user="alice", topics=(state,),
                  timeout=1000).responses
    assert (r.name, r.error_code) == ("t2", TOPIC_DENIED)
    h.allow("topic", "t2", "delete")
    (r,) = h.call(K.DELETE_TOPICS, 6, "DeleteTopicsRequest", as_user="alice", topics=(state,),
                  timeout=1000).responses
    assert (r.name, r.error_code) == ("t2", 0) and "t2" not in h.broker.topics()


# -- share groups (KIP-932) ---------------------------------------------------------------------


def _heartbeat(h, user, member="m1", epoch=0, topics=("t",)):
    return h.call(K.SHARE_GROUP_HEARTBEAT, 1, "ShareGroupHeartbeatRequest", as_user=user, group_id="sg",
                  member_id=member, member_epoch=epoch, subscribed_topic_names=topics)


def _share_fetch(h, user, epoch, acks=None, partitions=(0,), topic="t"):
    mod = K.SHARE_FETCH
    acks = acks or {}
    fetch_topic = h.req(mod, 1, "FetchTopic", topic_id=h.broker.topics()[topic].topic_id, partitions=tuple(
        h.req(mod, 1, "FetchPartition", partition_index=p, acknowledgement_batches=tuple(
            h.req(mod, 1, "AcknowledgementBatch", first_offset=f, last_offset=last, acknowledge_types=types)
            for f, last, types in acks.get(p, ())))
        for p in partitions))
    return h.call(mod, 1, "ShareFetchRequest", as_user=user, group_id="sg", member_id="m1",
                  share_session_epoch=epoch, max_wait=0, min_bytes=1, max_bytes=1 << 20, max_records=100,
                  batch_size=100, topics=(fetch_topic,), forgotten_topics_data=())


def _parts(resp):
    return {p.partition_index: p for t in resp.responses for p in t.partitions}


def test_share_group_heartbeat_needs_read_on_the_group_and_describe_on_topics(h):
    assert _heartbeat(h, "alice").error_code == GROUP_DENIED
    h.allow("group", "sg", "read")
    assert _heartbeat(h, "alice").error_code == TOPIC_DENIED
    assert h.broker.share.group("sg") is None  # nothing was joined
    h.allow("topic", "t", "describe")
    resp = _heartbeat(h, "alice")
    assert resp.error_code == 0 and resp.member_epoch == 1


def test_share_group_describe_needs_describe(h):
    h.allow("group", "sg", "read")
    h.allow("topic", "t", "read")
    assert _heartbeat(h, "alice").error_code == 0

    def describe(user):
        (g,) = h.call(K.SHARE_GROUP_DESCRIBE, 1, "ShareGroupDescribeRequest", as_user=user, group_ids=("sg",),
                      include_authorized_operations=True).groups
        return g

    g = describe("bob")
    assert (g.group_id, g.error_code, g.members) == ("sg", GROUP_DENIED, ())
    g = describe("alice")
    assert g.error_code == 0 and len(g.members) == 1 and g.authorized_operations == bits("read", "describe")
    # carol may describe the group, but not the topic its members are assigned
    h.allow("group", "sg", "describe", user="carol")
    g = describe("carol")
    assert (g.error_code, g.members) == (TOPIC_DENIED, ())


def test_share_fetch_and_acknowledge_need_read_on_the_group_and_the_topic(h):
    h.broker.share.alter_configs("sg", {"share.auto.offset.reset": "earliest"}, h.broker.clock())
    h.produce("t", [b"a", b"b"])
    resp = _share_fetch(h, "alice", 0)
    assert resp.error_code == GROUP_DENIED and resp.responses == ()
    h.allow("group", "sg", "read")
    h.allow("topic", "t", "describe")
    resp = _share_fetch(h, "alice", 0)
    (part,) = _parts(resp).values()
    assert resp.error_code == 0 and part.error_code == TOPIC_DENIED and part.acquired_records == ()
    h.allow("topic", "t", "read")
    resp = _share_fetch(h, "alice", 0)
    (part,) = _parts(resp).values()
    assert part.error_code == 0 and [(a.first_offset, a.last_offset) for a in part.acquired_records] == [(0, 1)]
    # READ on the topic revoked mid-session: acknowledgements and fetches of it are refused
    h.broker.authorizer.remove(Acl("User:alice", "topic", "t", "read"))
    resp = _share_fetch(h, "alice", 1, acks={0: [(0, 1, (1,))]})
    (part,) = _parts(resp).values()
    assert part.error_code == TOPIC_DENIED and part.acknowledge_error_code == TOPIC_DENIED
    mod = K.SHARE_ACKNOWLEDGE
    ack_topic = h.req(mod, 1, "AcknowledgeTopic", topic_id=h.broker.topics()["t"].topic_id, partitions=(
        h.req(mod, 1, "AcknowledgePartition", partition_index=0, acknowledgement_batches=(
            h.req(mod, 1, "AcknowledgementBatch", first_offset=0, last_offset=1, acknowledge_types=(1,)),)),))
    ack = dict(group_id="sg", member_id="m1", share_session_epoch=2, topics=(ack_topic,))
    assert h.call(mod, 1, "ShareAcknowledgeRequest", **ack).error_code == GROUP_DENIED
    resp = h.call(mod, 1, "ShareAcknowledgeRequest", as_user="alice", **ack)
    assert resp.error_code == 0 and _parts(resp)[0].error_code == TOPIC_DENIED
    h.allow("topic", "t", "read")
    resp = h.call(mod, 1, "ShareAcknowledgeRequest", as_user="alice", **dict(ack, share_session_epoch=3))
    assert _parts(resp)[0].error_code == 0


# -- without the authorizer ------------------------------------------------------------------------


def test_without_the_authorizer_everything_is_allowed(tmp_path):
    broker = Broker(BrokerConfig(data_dir=str(tmp_path / "open")))
    try:
        h = Harness(broker)
        broker.create_topic("t", 1)
        assert broker.authorizer is None
        resp = h.call(K.INIT_PRODUCER_ID, 4, "InitProducerIdRequest", transactional_id=None,
                      transaction_timeout=1000, producer_id=-1, producer_epoch=-1)
        assert resp.error_code == 0
        _make_groups(h, "g")
        (g,) = h.call(K.DESCRIBE_GROUPS, 5, "DescribeGroupsRequest", groups=("g",),
                      include_authorized_operations=True).groups
        # Kafka without an authorizer reports every operation the resource type supports.
        assert g.authorized_operations == bits("read", "describe", "delete", "describe_configs", "alter_configs")
    finally:
        broker.close()


def test_describe_cluster_and_metadata_report_authorized_operations_when_asked(h):
    h.allow("topic", "t", "read")
    resp = h.call(K.DESCRIBE_CLUSTER, 1, "DescribeClusterRequest", as_user="alice",
                  include_cluster_authorized_operations=True)
    assert resp.error_code == 0 and resp.cluster_authorized_operations == 0  # no DESCRIBE on the cluster
    h.allow("cluster", "kafka-cluster", "describe", "create")
    resp = h.call(K.DESCRIBE_CLUSTER, 1, "DescribeClusterRequest", as_user="alice",
                  include_cluster_authorized_operations=True)
    assert resp.cluster_authorized_operations == bits("describe", "create")
    resp = h.call(K.DESCRIBE_CLUSTER, 1, "DescribeClusterRequest", as_user="alice",
                  include_cluster_authorized_operations=False)
    assert resp.cluster_authorized_operations == -2147483648
    topic = h.req(K.METADATA, 10, "MetadataRequestTopic", name="t", topic_id=None)
    resp = h.call(K.METADATA, 10, "MetadataRequest", as_user="alice", topics=(topic,),
                  allow_auto_topic_creation=False, include_cluster_authorized_operations=True,
                  include_topic_authorized_operations=True)
    [t] = resp.topics
    assert t.topic_authorized_operations == bits("read", "describe")  # READ implies DESCRIBE
    assert resp.cluster_authorized_operations == bits("describe", "create")
