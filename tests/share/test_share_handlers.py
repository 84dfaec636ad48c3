"""The share-group APIs with real request bytes, no sockets: ShareGroupHeartbeat,
ShareGroupDescribe, ShareFetch (v1, v2 with Renew), ShareAcknowledge,
ListGroups v5 and DescribeGroups, group configs."""

from __future__ import annotations

import uuid

import pytest

from kio.schema.errors import ErrorCode

from logbroker.broker.handlers import FetchOperation, Reply
from logbroker.broker.share import ShareError, ShareStateTopic
from logbroker.protocol import SUPPORTED_VERSIONS, ApiKey
from logbroker.records import decode_batches

HB, DESCRIBE, FETCH, ACK = 76, 77, 78, 79


@pytest.fixture
def h(make_harness):
    harness = make_harness()
    harness.env.topic("t", 2)
    harness.env.share.alter_configs("g", {"share.auto.offset.reset": "earliest"}, harness.broker.clock())
    return harness


def tid(h, topic="t"):
    return h.broker.topics()[topic].topic_id


def heartbeat(h, member, epoch, topics=None, group="g"):
    return h.call(HB, 1, "ShareGroupHeartbeatRequest", group_id=group, member_id=member, member_epoch=epoch,
                  subscribed_topic_names=tuple(topics) if topics is not None else None)


def share_fetch(h, member, epoch, partitions=(), acks=None, *, version=1, max_records=500, final=True,
                forgotten=(), group="g", max_wait=0, **extra):
    """ShareFetch for partitions of "t"; ``acks`` maps partition -> [(first, last, types)]."""
    acks = acks or {}
    wanted = sorted(set(partitions) | set(acks))
    topics = ()
    if wanted:
        topics = (h.req(FETCH, version, "FetchTopic", topic_id=tid(h), partitions=tuple(
            h.req(FETCH, version, "FetchPartition", partition_index=p, acknowledgement_batches=tuple(
                h.req(FETCH, version, "AcknowledgementBatch", first_offset=f, last_offset=last, acknowledge_types=types)
                for f, last, types in acks.get(p, ())
            ))
            for p in wanted
        )),)
    forgot = tuple(h.req(FETCH, version, "ForgottenTopic", topic_id=tid(h), partitions=tuple(forgotten))
                   for _ in [0] if forgotten)
    return h.call(FETCH, version, "ShareFetchRequest", final=final, group_id=group, member_id=member,
                  share_session_epoch=epoch, max_wait=max_wait, min_bytes=1, max_bytes=1 << 20,
                  max_records=max_records, batch_size=max_records, topics=topics, forgotten_topics_data=forgot,
                  **extra)


def share_ack(h, member, epoch, acks, *, version=1, group="g"):
    topics = (h.req(ACK, version, "AcknowledgeTopic", topic_id=tid(h), partitions=tuple(
        h.req(ACK, version, "AcknowledgePartition", partition_index=p, acknowledgement_batches=tuple(
            h.req(ACK, version, "AcknowledgementBatch", first_offset=f, last_offset=last, acknowledge_types=types)
            for f, last, types in batches
        ))
        for p, batches in sorted(acks.items())
    )),)
    return h.call(ACK, version, "ShareAcknowledgeRequest", group_id=group, member_id=member,
                  share_session_epoch=epoch, topics=topics)


def partitions(response):
    return {p.partition_index: p for t in response.responses for p in t.partitions}


def values(part):
    return [r.value.decode() for b in decode_batches(bytes(part.records)) for r in b.records]


def test_versions_are_advertised():
    assert SUPPORTED_VERSIONS[ApiKey.SHARE_GROUP_HEARTBEAT] == (1, 1)
    assert SUPPORTED_VERSIONS[ApiKey.SHARE_GROUP_DESCRIBE] == (1, 1)
    assert SUPPORTED_VERSIONS[ApiKey.SHARE_FETCH] == (1, 2)
    assert SUPPORTED_VERSIONS[ApiKey.SHARE_ACKNOWLEDGE] == (1, 2)
    assert SUPPORTED_VERSIONS[ApiKey.LIST_GROUPS] == (0, 5)


def test_heartbeat_join_assignment_and_leave(h):
    r = heartbeat(h, "m1", 0, ["t"])
    assert r.error_code == ErrorCode.none and r.member_id == "m1" and r.member_epoch == 1
    assert r.heartbeat_interval.total_seconds() == 5
    (tp,) = r.assignment.topic_partitions
    assert tp.topic_id == tid(h) and tp.partitions == (0, 1)
    r = heartbeat(h, "m1", 1)
    assert r.error_code == ErrorCode.none and r.assignment is None
    assert heartbeat(h, "m1", 9).error_code == ErrorCode.fenced_member_epoch
    assert heartbeat(h, "zz", 3).error_code == ErrorCode.unknown_member_id
    assert heartbeat(h, "m2", 0).error_code == ErrorCode.invalid_request
    r = heartbeat(h, "m1", -1)
    assert r.error_code == ErrorCode.none and r.member_epoch == -1


def test_share_group_describe(h):
    heartbeat(h, "m1", 0, ["t"])
    r = h.call(DESCRIBE, 1, "ShareGroupDescribeRequest", group_ids=("g", "nope"), include_authorized_operations=False)
    g, missing = r.groups
    assert g.error_code == ErrorCode.none and g.group_state == "Stable" and g.assignor_name == "simple"
    (m,) = g.members
    assert m.member_id == "m1" and m.client_id == "test-client" and m.subscribed_topic_names == ("t",)
    assert [(tp.topic_name, tp.partitions) for tp in m.assignment.topic_partitions] == [("t", (0, 1))]
    assert missing.error_code == ErrorCode.group_id_not_found


def test_fetch_acquires_and_piggybacked_acks_acknowledge(h):
    h.env.produce("t", [f"a{i}" for i in range(5)], partition=0)
    h.env.produce("t", [f"b{i}" for i in range(3)], partition=1)
    r = share_fetch(h, "m", 0, [0, 1])
    assert r.error_code == ErrorCode.none and r.acquisition_lock_timeout.total_seconds() == 1
    parts = partitions(r)
    assert values(parts[0]) == [f"a{i}" for i in range(5)]
    assert [(a.first_offset, a.last_offset, a.delivery_count) for a in parts[0].acquired_records] == [(0, 4, 1)]
    assert [(a.first_offset, a.last_offset) for a in parts[1].acquired_records] == [(0, 2)]
    assert parts[0].current_leader.leader_id == 0
    # epoch 1: accept partition 0, release partition 1; only the released records come back
    r = share_fetch(h, "m", 1, acks={0: [(0, 4, (1,))], 1: [(0, 2, (2,))]})
    parts = partitions(r)
    assert parts[0].acknowledge_error_code == 0 and not parts[0].acquired_records
    assert [(a.first_offset, a.delivery_count) for a in parts[1].acquired_records] == [(0, 2)]
    # wrong ack: records already acknowledged
    r = share_fetch(h, "m", 2, acks={0: [(0, 0, (1,))]})
    assert partitions(r)[0].acknowledge_error_code == ErrorCode.invalid_record_state.value


def test_fetch_session_errors(h):
    r = share_fetch(h, "m", 3, [0])
    assert r.error_code == ErrorCode.share_session_not_found
    share_fetch(h, "m", 0, [0])
    assert share_fetch(h, "m", 7, [0]).error_code == ErrorCode.invalid_share_session_epoch
    share_fetch(h, "m", 0, [0])
    r = share_fetch(h, "m", 0, acks={0: [(0, 0, (1,))]})
    assert r.error_code == ErrorCode.invalid_request


def test_unknown_topic_ids_are_reported_per_partition(h):
    body = h.req(FETCH, 1, "FetchTopic", topic_id=uuid.uuid4(), partitions=(
        h.req(FETCH, 1, "FetchPartition", partition_index=0, acknowledgement_batches=()),
    ))
    r = h.call(FETCH, 1, "ShareFetchRequest", group_id="g", member_id="m", share_session_epoch=0, max_wait=0,
               min_bytes=1, max_bytes=1000, max_records=10, batch_size=10, topics=(body,), forgotten_topics_data=())
    (topic,) = r.responses
    assert topic.partitions[0].error_code == ErrorCode.unknown_topic_id


def test_an_empty_fetch_long_polls_and_an_append_completes_it(h):
    share_fetch(h, "m", 0, [0, 1])
    assert share_fetch(h, "m", 1, final=False, max_wait=500) is None
    op = h.last_result
    assert isinstance(op, FetchOperation) and op.wait_ms == 500 and sorted(op.watch) == [("t", 0), ("t", 1)]
    h.env.produce("t", ["late"], partition=1)
    body = op.attempt(final=False)
    assert body is not None  # the response object; the server encodes it
    assert [a.first_offset for a in partitions(body)[1].acquired_records] == [0]


def test_max_records_zero_and_final_epoch_do_not_wait_or_acquire(h):
    h.env.produce("t", ["x"], partition=0)
    share_fetch(h, "m", 0, [0], max_records=0)
    assert not isinstance(h.last_result, FetchOperation)
    assert h.env.share.share_partition("g", "t", 0) is None or h.env.share.share_partition("g", "t", 0).in_flight == 0
    r = share_fetch(h, "m", 1, [0])
    assert [a.first_offset for a in partitions(r)[0].acquired_records] == [0]
    r = share_fetch(h, "m", -1, acks={0: [(0, 0, (1,))]})
    assert r.error_code == ErrorCode.none and partitions(r)[0].acknowledge_error_code == 0
    assert h.env.share.sessions.get("g", "m") is None
    assert h.env.share.share_partition("g", "t", 0).start == 1


def test_share_acknowledge_and_closing_with_it(h):
    h.env.produce("t", ["a", "b", "c"], partition=0)
    share_fetch(h, "m", 0, [0])
    r = share_ack(h, "m", 1, {0: [(0, 0, (1,))]})
    assert r.error_code == ErrorCode.none
    (part,) = partitions(r).values()
    assert part.error_code == ErrorCode.none
    assert share_ack(h, "m", 0, {0: [(1, 1, (1,))]}).error_code == ErrorCode.invalid_share_session_epoch
    # epoch -1 closes the session after the acks; records still held are released
    share_fetch(h, "m", 0, [0])
    r = share_ack(h, "m", -1, {0: []})
    assert r.error_code == ErrorCode.none
    sp = h.env.share.share_partition("g", "t", 0)
    assert sp.start == 1 and sp.record(1)[0] == 0  # available again


def test_share_acknowledge_wakes_fetches_of_released_partitions(h):
    woken = []
    h.env.share.wake = woken.extend  # the server's hook: notify the fetches waiting on these
    h.env.produce("t", ["a"], partition=0)
    share_fetch(h, "m", 0, [0])
    share_ack(h, "m", 1, {0: [(0, 0, (2,))]})
    assert isinstance(h.last_result, Reply) and ("t", 0) in woken


def test_v2_renew_extends_the_lock(h):
    h.env.produce("t", ["a"], partition=0)
    clock = {"now": 1_000_000}
    h.broker.clock = lambda: clock["now"]
    share_fetch(h, "m", 0, [0], version=2)
    clock["now"] += 900
    r = share_fetch(h, "m", 1, acks={0: [(0, 0, (4,))]}, version=2, is_renew_ack=True)
    assert r.error_code == ErrorCode.none and partitions(r)[0].acknowledge_error_code == 0
    clock["now"] += 900
    h.broker.fire_deadlines(clock["now"])
    assert h.env.share.share_partition("g", "t", 0).record(0)[0] == 1  # still acquired
    r = share_ack(h, "m", 2, {0: [(0, 0, (4,))]}, version=2)
    assert r.error_code == ErrorCode.none and r.acquisition_lock_timeout.total_seconds() == 1
    # v1 has no Renew
    share_fetch(h, "other", 0, [0])
    assert partitions(share_fetch(h, "other", 1, acks={0: [(0, 0, (4,))]})).get(0).acknowledge_error_code == \
        ErrorCode.invalid_record_state.value


def test_list_groups_shows_share_groups_with_their_type(h):
    heartbeat(h, "m1", 0, ["t"])
    for group in h.broker.groups.registry:
        h.broker.groups.registry.remove(group.group_id)
    r = h.call(16, 5, "ListGroupsRequest", states_filter=(), types_filter=())
    assert [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in r.groups] == [("g", "share", "Stable", "share")]
    assert h.call(16, 5, "ListGroupsRequest", states_filter=(), types_filter=("classic",)).groups == ()
    assert h.call(16, 5, "ListGroupsRequest", states_filter=("Empty",), types_filter=()).groups == ()
    assert [g.group_id for g in h.call(16, 4, "ListGroupsRequest", states_filter=()).groups] == ["g"]


def test_describe_groups_describes_share_groups(h):
    heartbeat(h, "m1", 0, ["t"])
    r = h.call(15, 5, "DescribeGroupsRequest", groups=("g",), include_authorized_operations=False)
    (g,) = r.groups
    assert (g.error_code, g.group_state, g.protocol_type) == (ErrorCode.none, "Stable", "share")
    assert [m.member_id for m in g.members] == ["m1"]


@pytest.mark.parametrize("resource_type", [32, 3])
def test_group_configs_through_incremental_alter_and_describe_configs(h, resource_type):
    def alter(configs, op=0):
        return h.call(44, 1, "IncrementalAlterConfigsRequest", validate_only=False, resources=(
            h.req(44, 1, "AlterConfigsResource", resource_type=resource_type, resource_name="g2", configs=tuple(
                h.req(44, 1, "AlterableConfig", name=k, config_operation=op, value=v) for k, v in configs.items()
            )),
            h.req(44, 1, "AlterConfigsResource", resource_type=2, resource_name="t", configs=(
                h.req(44, 1, "AlterableConfig", name="retention.ms", config_operation=0, value="1000"),
            )),
        ))

    r = alter({"errors.deadletterqueue.topic.name": "dlq", "share.auto.offset.reset": "earliest"})
    assert [(x.resource_name, x.error_code) for x in r.responses] == [("g2", ErrorCode.none), ("t", ErrorCode.none)]
    assert h.broker.share.group("g2").settings.dlq_topic == "dlq"
    assert h.broker.topics()["t"].configs["retention.ms"] == "1000"
    r = alter({"share.auto.offset.reset": "never"})
    assert r.responses[0].error_code == ErrorCode.invalid_config
    alter({"share.auto.offset.reset": None}, op=1)
    r = h.call(32, 4, "DescribeConfigsRequest", include_synonyms=False, include_documentation=False, resources=(
        h.req(32, 4, "DescribeConfigsResource", resource_type=resource_type, resource_name="g2", configuration_keys=None),
    ))
    configs = {c.name: (c.value, c.config_source) for c in r.results[0].configs}
    assert configs["errors.deadletterqueue.topic.name"] == ("dlq", 8)  # GROUP_CONFIG
    assert configs["share.auto.offset.reset"] == ("latest", 5)  # DEFAULT_CONFIG


def test_with_flush_always_unwritten_acknowledgements_are_not_confirmed(make_harness, monkeypatch):
    """If __share_group_state cannot be written, ShareAcknowledge and ShareFetch
    answer KAFKA_STORAGE_ERROR instead of confirming what is not durable."""
    from logbroker.errors import StorageError

    h = make_harness(flush="always")
    h.env.topic("t", 2)
    h.env.share.alter_configs("g", {"share.auto.offset.reset": "earliest"}, h.broker.clock())
    h.env.produce("t", ["a", "b"], partition=0)
    share_fetch(h, "m", 0, [0])

    def refuse(self, records, now_ms, **kwargs):
        raise StorageError("disk gone")

    monkeypatch.setattr(ShareStateTopic, "append", refuse)  # the share-group state topic only
    r = share_ack(h, "m", 1, {0: [(0, 0, (1,))]})
    assert r.error_code == ErrorCode.kafka_storage_error
    r = share_fetch(h, "m", 2, acks={0: [(1, 1, (1,))]})
    assert r.error_code == ErrorCode.kafka_storage_error


def test_deleting_a_share_group_closes_its_share_sessions(h):
    h.env.produce("t", ["a"], partition=0)
    share_fetch(h, "m", 0, [0])
    share = h.env.share
    share.close_session(share.sessions.get("g", "m"), h.broker.clock())  # acquired records released
    # A share session without a member (it left) must not bring the group back after deletion.
    share.open_session("g", "m", 0, [("t", 0)], [], h.broker.clock())
    share.group("g").members.clear()
    assert share.delete_group("g", h.broker.clock())[0] is ShareError.NONE
    assert share.sessions.get("g", "m") is None and not share.is_share_group("g")
