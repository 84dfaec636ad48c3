"""The group APIs through their handlers, with real request bytes for every served version."""

import pytest

from logbroker.broker.groups import GroupOutcome
from logbroker.broker.handlers import SERVED_VERSIONS, is_served
from logbroker.broker.handlers.groups import ERROR_CODES
from logbroker.protocol import ApiKey, ErrorCode

FIND, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
COMMIT, FETCH_OFFSETS, DESCRIBE, LIST, DELETE, OFFSET_DELETE = 8, 9, 15, 16, 42, 47
CREATE_TOPICS = 19


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def h(make_harness, clock):
    return make_harness(clock, group_initial_rebalance_delay_ms=0)


def create_topic(h, name, partitions=2):
    topic = h.req(CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=partitions, replication_factor=1,
                  assignments=(), configs=())
    assert h.call(CREATE_TOPICS, 7, "CreateTopicsRequest", topics=(topic,), timeout=1000).topics[0].error_code == 0


def settle(h, clock):
    h.broker.fire_deadlines(clock.now)


def test_every_group_api_is_served_at_its_listed_versions():
    for key in (FIND, JOIN, HEARTBEAT, LEAVE, SYNC, COMMIT, FETCH_OFFSETS, DESCRIBE, LIST, DELETE, OFFSET_DELETE):
        low, high = SERVED_VERSIONS[ApiKey(key)]
        assert is_served(key, low) and is_served(key, high) and not is_served(key, high + 1)
    assert SERVED_VERSIONS[ApiKey.FIND_COORDINATOR] == (0, 4)


def test_every_coordinator_outcome_has_an_error_code():
    assert set(ERROR_CODES) == set(GroupOutcome)
    assert ERROR_CODES[GroupOutcome.MEMBER_ID_REQUIRED] == ErrorCode.member_id_required == 79


@pytest.mark.parametrize("version", range(4))
def test_find_coordinator(h, version):
    resp = h.call(FIND, version, "FindCoordinatorRequest", key="g", key_type=0)
    assert resp.error_code == ErrorCode.none
    assert (resp.node_id, resp.host, resp.port) == (0, h.broker.advertised_host, h.broker.advertised_port)
    if version >= 1:
        txn = h.call(FIND, version, "FindCoordinatorRequest", key="t", key_type=1)
        assert txn.error_code == ErrorCode.none and txn.node_id == 0  # this node coordinates transactions


@pytest.mark.parametrize("version", range(8))
def test_join_sync_heartbeat_leave_at_every_version(h, clock, version):
    sync_v, hb_v, leave_v = min(version, 5), min(version, 4), min(version, 5)
    protocol = h.req(JOIN, version, "JoinGroupRequestProtocol", name="range", metadata=b"meta")
    fields = dict(group_id="g", session_timeout=10_000, rebalance_timeout=20_000, member_id="",
                  group_instance_id=None, protocol_type="consumer", protocols=(protocol,))
    if version >= 4:
        first = h.call(JOIN, version, "JoinGroupRequest", **fields)
        assert first.error_code == ErrorCode.member_id_required and first.member_id.startswith("test-client-")
        fields["member_id"] = first.member_id
    pending = h.start(JOIN, version, "JoinGroupRequest", **fields)
    assert not pending.done
    settle(h, clock)
    joined = pending.response()
    assert joined.error_code == ErrorCode.none and joined.generation_id == 1
    member = joined.member_id
    assert joined.leader == member and joined.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in joined.members] == [(member, b"meta")]
    if version >= 7:
        assert joined.protocol_type == "consumer"

    assignment = h.req(SYNC, sync_v, "SyncGroupRequestAssignment", member_id=member, assignment=b"assigned")
    synced = h.call(SYNC, sync_v, "SyncGroupRequest", group_id="g", generation_id=1, member_id=member,
                    group_instance_id=None, protocol_type="consumer", protocol_name="range",
                    assignments=(assignment,))
    assert synced.error_code == ErrorCode.none and synced.assignment == b"assigned"

    beat = h.call(HEARTBEAT, hb_v, "HeartbeatRequest", group_id="g", generation_id=1, member_id=member,
                  group_instance_id=None)
    assert beat.error_code == ErrorCode.none
    stale = h.call(HEARTBEAT, hb_v, "HeartbeatRequest", group_id="g", generation_id=7, member_id=member,
                   group_instance_id=None)
    assert stale.error_code == ErrorCode.illegal_generation

    if leave_v >= 3:
        identity = h.req(LEAVE, leave_v, "MemberIdentity", member_id=member, group_instance_id=None, reason="bye")
        ghost = h.req(LEAVE, leave_v, "MemberIdentity", member_id="ghost", group_instance_id=None, reason=None)
        left = h.call(LEAVE, leave_v, "LeaveGroupRequest", group_id="g", members=(identity, ghost))
        assert left.error_code == ErrorCode.none
        assert [m.error_code for m in left.members] == [ErrorCode.none, ErrorCode.unknown_member_id]
    else:
        left = h.call(LEAVE, leave_v, "LeaveGroupRequest", group_id="g", member_id=member)
        assert left.error_code == ErrorCode.none
        again = h.call(LEAVE, leave_v, "LeaveGroupRequest", group_id="g", member_id=member)
        assert again.error_code == ErrorCode.unknown_member_id
    assert h.broker.groups.group("g").state.value == "Empty"


def test_a_waiting_join_is_answered_when_the_broker_shuts_down(h):
    protocol = h.req(JOIN, 5, "JoinGroupRequestProtocol", name="range", metadata=b"")
    pending = h.start(JOIN, 5, "JoinGroupRequest", group_id="g", session_timeout=10_000, rebalance_timeout=10_000,
                      member_id="", group_instance_id="static-1", protocol_type="consumer", protocols=(protocol,))
    assert not pending.done
    h.broker.shutdown_pending()
    assert pending.response().error_code == ErrorCode.not_coordinator


@pytest.mark.parametrize("commit_v, fetch_v", [(2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 6), (8, 7)])
def test_offset_commit_and_fetch_versions(h, commit_v, fetch_v):
    create_topic(h, "t")
    parts = tuple(
        h.req(COMMIT, commit_v, "OffsetCommitRequestPartition", partition_index=p, committed_offset=10 + p,
              committed_leader_epoch=0, committed_metadata="m")
        for p in (0, 1, 5)
    )
    topics = (h.req(COMMIT, commit_v, "OffsetCommitRequestTopic", name="t", partitions=parts),
              h.req(COMMIT, commit_v, "OffsetCommitRequestTopic", name="nope", partitions=parts[:1]))
    resp = h.call(COMMIT, commit_v, "OffsetCommitRequest", group_id="simple", generation_id_or_member_epoch=-1,
                  member_id="", group_instance_id=None, retention_time=-1, topics=topics)
    codes = {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}
    assert codes == {("t", 0): 0, ("t", 1): 0, ("t", 5): ErrorCode.unknown_topic_or_partition,
                     ("nope", 0): ErrorCode.unknown_topic_or_partition}
    want = (h.req(FETCH_OFFSETS, fetch_v, "OffsetFetchRequestTopic", name="t", partition_indexes=(0, 1, 3)),)
    fetched = h.call(FETCH_OFFSETS, fetch_v, "OffsetFetchRequest", group_id="simple", topics=want,
                     require_stable=False)
    got = {(t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
           for t in fetched.topics for p in t.partitions}
    assert got == {("t", 0): (10, "m", 0), ("t", 1): (11, "m", 0), ("t", 3): (-1, "", 0)}
    if fetch_v >= 2:
        everything = h.call(FETCH_OFFSETS, fetch_v, "OffsetFetchRequest", group_id="simple", topics=None,
                            require_stable=False)
        assert everything.error_code == 0
        assert {(t.name, p.partition_index) for t in everything.topics for p in t.partitions} == {("t", 0), ("t", 1)}
    if fetch_v >= 5:
        epochs = {p.partition_index: p.committed_leader_epoch for t in fetched.topics for p in t.partitions}
        assert epochs == {0: 0 if commit_v >= 6 else -1, 1: 0 if commit_v >= 6 else -1, 3: -1}


def test_offset_commit_waits_for_fsync_with_flush_always(make_harness):
    h = make_harness(flush="always")
    create_topic(h, "t")
    part = h.req(COMMIT, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                 committed_leader_epoch=-1, committed_metadata=None)
    topic = h.req(COMMIT, 8, "OffsetCommitRequestTopic", name="t", partitions=(part,))
    pending = h.start(COMMIT, 8, "OffsetCommitRequest", group_id="g", generation_id_or_member_epoch=-1,
                      member_id="", group_instance_id=None, topics=(topic,))
    pending.response()
    [(plog, offset)] = pending.reply.flush
    assert offset == plog.log_end_offset and plog.recovery_point < offset
    plog.flush(offset)
    assert plog.recovery_point == offset
    # flush=interval: no fsync before answering.
    h2 = make_harness()
    create_topic(h2, "t")
    pending = h2.start(COMMIT, 8, "OffsetCommitRequest", group_id="g", generation_id_or_member_epoch=-1,
                       member_id="", group_instance_id=None, topics=(topic,))
    pending.response()
    assert pending.reply.flush == []


def _member_of_stable_group(h, clock, group="g", topics=("t",)):
    meta = b"\x00\x00" + len(topics).to_bytes(4, "big") + b"".join(
        len(t).to_bytes(2, "big") + t.encode() for t in topics) + b"\xff\xff\xff\xff"
    protocol = h.req(JOIN, 5, "JoinGroupRequestProtocol", name="range", metadata=meta)
    pending = h.start(JOIN, 5, "JoinGroupRequest", group_id=group, session_timeout=10_000, rebalance_timeout=10_000,
                      member_id="", group_instance_id="i-1", protocol_type="consumer", protocols=(protocol,))
    settle(h, clock)
    member = pending.response().member_id
    assignment = h.req(SYNC, 3, "SyncGroupRequestAssignment", member_id=member, assignment=b"A")
    h.call(SYNC, 3, "SyncGroupRequest", group_id=group, generation_id=1, member_id=member, group_instance_id="i-1",
           assignments=(assignment,))
    return member


@pytest.mark.parametrize("version", range(5))
def test_list_groups(h, clock, version):
    _member_of_stable_group(h, clock)
    create_topic(h, "t")
    part = h.req(COMMIT, 2, "OffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                 committed_metadata="")
    topic = h.req(COMMIT, 2, "OffsetCommitRequestTopic", name="t", partitions=(part,))
    h.call(COMMIT, 2, "OffsetCommitRequest", group_id="simple", generation_id_or_member_epoch=-1, member_id="",
           retention_time=-1, topics=(topic,))
    listed = h.call(LIST, version, "ListGroupsRequest", states_filter=())
    assert listed.error_code == 0
    assert {(g.group_id, g.protocol_type) for g in listed.groups} == {("g", "consumer"), ("simple", "")}
    if version >= 4:
        assert {g.group_state for g in listed.groups} == {"Stable", "Empty"}
        stable = h.call(LIST, version, "ListGroupsRequest", states_filter=("stable",))
        assert [g.group_id for g in stable.groups] == ["g"]


@pytest.mark.parametrize("version", range(6))
def test_describe_groups(h, clock, version):
    member = _member_of_stable_group(h, clock)
    resp = h.call(DESCRIBE, version, "DescribeGroupsRequest", groups=("g", "missing"),
                  include_authorized_operations=False)
    g, missing = resp.groups
    assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (0, "Stable", "consumer", "range")
    assert [(m.member_id, m.client_id, m.member_assignment) for m in g.members] == [(member, "test-client", b"A")]
    if version >= 4:
        assert g.members[0].group_instance_id == "i-1"
    assert (missing.error_code, missing.group_state, missing.members) == (0, "Dead", ())


@pytest.mark.parametrize("version", range(3))
def test_delete_groups(h, clock, version):
    _member_of_stable_group(h, clock)
    create_topic(h, "t")
    part = h.req(COMMIT, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                 committed_leader_epoch=-1, committed_metadata="")
    topic = h.req(COMMIT, 8, "OffsetCommitRequestTopic", name="t", partitions=(part,))
    h.call(COMMIT, 8, "OffsetCommitRequest", group_id="simple", generation_id_or_member_epoch=-1, member_id="",
           group_instance_id=None, topics=(topic,))
    resp = h.call(DELETE, version, "DeleteGroupsRequest", groups_names=("g", "simple", "missing"))
    assert {r.group_id: r.error_code for r in resp.results} == {
        "g": ErrorCode.non_empty_group, "simple": 0, "missing": ErrorCode.group_id_not_found,
    }


def test_offset_delete(h, clock):
    create_topic(h, "t")
    create_topic(h, "u")
    member = _member_of_stable_group(h, clock, topics=("t",))
    parts = tuple(h.req(COMMIT, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                        committed_leader_epoch=-1, committed_metadata="") for _ in range(1))
    topics = tuple(h.req(COMMIT, 8, "OffsetCommitRequestTopic", name=n, partitions=parts) for n in ("t", "u"))
    resp = h.call(COMMIT, 8, "OffsetCommitRequest", group_id="g", generation_id_or_member_epoch=1,
                  member_id=member, group_instance_id="i-1", topics=topics)
    assert {p.error_code for t in resp.topics for p in t.partitions} == {0}
    dparts = (h.req(OFFSET_DELETE, 0, "OffsetDeleteRequestPartition", partition_index=0),)
    dtopics = tuple(h.req(OFFSET_DELETE, 0, "OffsetDeleteRequestTopic", name=n, partitions=dparts)
                    for n in ("t", "u", "nope"))
    resp = h.call(OFFSET_DELETE, 0, "OffsetDeleteRequest", group_id="g", topics=dtopics)
    assert resp.error_code == 0
    assert {t.name: t.partitions[0].error_code for t in resp.topics} == {
        "t": ErrorCode.group_subscribed_to_topic, "u": 0, "nope": ErrorCode.unknown_topic_or_partition,
    }
    missing = h.call(OFFSET_DELETE, 0, "OffsetDeleteRequest", group_id="missing", topics=dtopics)
    assert missing.error_code == ErrorCode.group_id_not_found


def test_internal_topic_is_created_on_first_use_and_marked_internal(h):
    assert "__consumer_offsets" not in h.broker.topics()
    create_topic(h, "t")
    part = h.req(COMMIT, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                 committed_leader_epoch=-1, committed_metadata="")
    topic = h.req(COMMIT, 8, "OffsetCommitRequestTopic", name="t", partitions=(part,))
    h.call(COMMIT, 8, "OffsetCommitRequest", group_id="g", generation_id_or_member_epoch=-1, member_id="",
           group_instance_id=None, topics=(topic,))
    info = h.broker.topics()["__consumer_offsets"]
    assert info.partitions == 1 and info.configs["cleanup.policy"] == "compact"
    meta = h.call(3, 12, "MetadataRequest", topics=None, allow_auto_topic_creation=False,
                  include_topic_authorized_operations=False)
    internal = {t.name: t.is_internal for t in meta.topics}
    assert internal == {"t": False, "__consumer_offsets": True}
