"""KIP-848 consumer groups through the handlers with real request bytes:
ConsumerGroupHeartbeat (topic ids on the wire), ConsumerGroupDescribe,
ListGroups' type filter, OffsetCommit v9 and OffsetFetch v8/v9 with member epochs."""

from __future__ import annotations

import pytest

from logbroker.broker.handlers import is_served
from logbroker.protocol import ErrorCode

COMMIT, FETCH_OFFSETS, LIST, DESCRIBE_GROUPS, CREATE_TOPICS = 8, 9, 16, 15, 19
HEARTBEAT, DESCRIBE = 68, 69


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def h(make_harness):
    return make_harness(Clock(), group_consumer_heartbeat_interval_ms=300)


def create_topic(h, name, partitions):
    topic = h.req(CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=partitions, replication_factor=1,
                  assignments=(), configs=())
    assert h.call(CREATE_TOPICS, 7, "CreateTopicsRequest", topics=(topic,), timeout=1000).topics[0].error_code == 0
    return h.broker.topics()[name].topic_id


def beat(h, member, epoch, *, version=1, owned=None, names=None, regex=None, **fields):
    joining = epoch == 0
    topic_partitions = owned if owned is not None else (() if joining else None)
    return h.call(
        HEARTBEAT, version, "ConsumerGroupHeartbeatRequest", group_id=fields.pop("group_id", "g"), member_id=member,
        member_epoch=epoch, rebalance_timeout=30_000 if joining else -1,
        subscribed_topic_names=names if names is not None else (("t",) if joining and regex is None else None),
        subscribed_topic_regex=regex, topic_partitions=topic_partitions, **fields,
    )


def owned(h, topic_id, parts):
    return (h.req(HEARTBEAT, 1, "TopicPartitions", topic_id=topic_id, partitions=tuple(parts)),)


def test_both_apis_are_served_at_v0_and_v1():
    for key in (HEARTBEAT, DESCRIBE):
        assert is_served(key, 0) and is_served(key, 1) and not is_served(key, 2)
    assert is_served(COMMIT, 9) and is_served(FETCH_OFFSETS, 9)


def test_heartbeat_answers_with_topic_ids(h):
    tid = create_topic(h, "t", 4)
    r = beat(h, "m1", 0)
    assert r.error_code == 0 and r.member_id == "m1" and r.member_epoch == 1
    assert r.heartbeat_interval.total_seconds() == 0.3
    (tp,) = r.assignment.topic_partitions
    assert tp.topic_id == tid and sorted(tp.partitions) == [0, 1, 2, 3]
    r = beat(h, "m1", 1, owned=owned(h, tid, range(4)))
    assert r.error_code == 0 and r.assignment is None
    # v0: a joining member without an id gets one from the coordinator.
    r = beat(h, "", 0, version=0)
    assert r.error_code == 0 and r.member_id
    # v1: the client must name itself.
    r = beat(h, "", 0)
    assert r.error_code == ErrorCode.invalid_request and r.error_message == "MemberId can't be empty."


def test_heartbeat_errors_on_the_wire(h):
    create_topic(h, "t", 2)
    assert beat(h, "m", 0, server_assignor="nope").error_code == ErrorCode.unsupported_assignor == 112
    assert beat(h, "m", 0, regex="(").error_code == ErrorCode.invalid_regular_expression
    assert beat(h, "m", 5, group_id="none").error_code == ErrorCode.group_id_not_found
    beat(h, "m", 0)
    assert beat(h, "m", 9, owned=()).error_code == ErrorCode.fenced_member_epoch == 110
    assert beat(h, "x", 1, owned=()).error_code == ErrorCode.unknown_member_id
    beat(h, "s", 0, instance_id="i")
    assert beat(h, "s2", 0, instance_id="i").error_code == ErrorCode.unreleased_instance_id == 111


def test_describe_list_and_offsets(h):
    tid = create_topic(h, "t", 2)
    a = beat(h, "a", 0)
    described = h.call(DESCRIBE, 1, "ConsumerGroupDescribeRequest", group_ids=("g", "nope"),
                       include_authorized_operations=False).groups
    g, nope = described
    assert g.error_code == 0 and g.group_state == "Stable" and g.assignor_name == "uniform"
    assert (g.group_epoch, g.assignment_epoch) == (1, 1)
    (m,) = g.members
    assert m.member_id == "a" and m.member_epoch == 1 and m.subscribed_topic_names == ("t",)
    assert [(tp.topic_id, tp.topic_name, sorted(tp.partitions)) for tp in m.assignment.topic_partitions] == [
        (tid, "t", [0, 1])]
    assert m.target_assignment == m.assignment
    assert nope.error_code == ErrorCode.group_id_not_found
    listed = h.call(LIST, 5, "ListGroupsRequest", states_filter=(), types_filter=("consumer",)).groups
    assert [(x.group_id, x.group_type, x.group_state, x.protocol_type) for x in listed] == [
        ("g", "consumer", "Stable", "consumer")]
    assert h.call(LIST, 5, "ListGroupsRequest", states_filter=(), types_filter=("classic",)).groups == ()
    dg = h.call(DESCRIBE_GROUPS, 5, "DescribeGroupsRequest", groups=("g",), include_authorized_operations=False)
    assert dg.groups[0].group_state == "Dead" and dg.groups[0].error_code == 0

    def commit(epoch, version=9):
        part = h.req(COMMIT, version, "OffsetCommitRequestPartition", partition_index=0, committed_offset=17,
                     committed_leader_epoch=-1, committed_metadata="")
        topic = h.req(COMMIT, version, "OffsetCommitRequestTopic", name="t", partitions=(part,))
        resp = h.call(COMMIT, version, "OffsetCommitRequest", group_id="g", generation_id_or_member_epoch=epoch,
                      member_id="a", group_instance_id=None, retention_time=-1, topics=(topic,))
        return resp.topics[0].partitions[0].error_code

    assert commit(a.member_epoch + 1) == ErrorCode.stale_member_epoch == 113
    assert commit(a.member_epoch, version=8) == ErrorCode.unsupported_version
    assert commit(a.member_epoch) == 0

    def fetch(version, **member):
        topic = h.req(FETCH_OFFSETS, version, "OffsetFetchRequestTopics", name="t", partition_indexes=(0, 1))
        group = h.req(FETCH_OFFSETS, version, "OffsetFetchRequestGroup", group_id="g", topics=(topic,), **member)
        return h.call(FETCH_OFFSETS, version, "OffsetFetchRequest", groups=(group,), require_stable=False).groups[0]

    got = fetch(9, member_id="a", member_epoch=a.member_epoch)
    assert got.error_code == 0
    assert {p.partition_index: p.committed_offset for p in got.topics[0].partitions} == {0: 17, 1: -1}
    stale = fetch(9, member_id="a", member_epoch=a.member_epoch + 3)
    assert stale.error_code == ErrorCode.stale_member_epoch and stale.topics == ()
    assert fetch(9, member_id="zz", member_epoch=1).error_code == ErrorCode.unknown_member_id
    assert fetch(8).error_code == 0  # v8 names no member: an admin's fetch


def test_delete_groups_and_the_share_group_namespace(h):
    create_topic(h, "t", 2)
    beat(h, "a", 0)
    delete = lambda: h.call(42, 2, "DeleteGroupsRequest", groups_names=("g",)).results[0].error_code  # noqa: E731
    assert delete() == ErrorCode.non_empty_group
    assert beat(h, "a", -1).error_code == 0
    listed = h.call(LIST, 5, "ListGroupsRequest", states_filter=("empty",), types_filter=()).groups
    assert [(x.group_id, x.group_type, x.group_state) for x in listed] == [("g", "consumer", "Empty")]
    assert delete() == 0
    described = h.call(DESCRIBE, 1, "ConsumerGroupDescribeRequest", group_ids=("g",),
                       include_authorized_operations=False).groups[0]
    assert described.error_code == ErrorCode.group_id_not_found
    # A share group's id is not a consumer group's.
    share = h.call(76, 1, "ShareGroupHeartbeatRequest", group_id="sg", member_id="m", member_epoch=0,
                   rack_id=None, subscribed_topic_names=("t",))
    assert share.error_code == 0
    r = beat(h, "m", 0, group_id="sg")
    assert r.error_code == ErrorCode.group_id_not_found and "not a consumer group" in r.error_message
