"""DescribeTopicPartitions and ElectLeaders through the handlers with real
request bytes: pagination by cursor, topic ids, authorized operations,
unknown and refused topics; elections a single node never needs."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))

from admin_harness import AdminHarness

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.security import Acl, Authorizer
from logbroker.broker.security.acls import OPERATION_CODES, SUPPORTED_OPERATIONS
from logbroker.protocol import ApiKey as K
from logbroker.protocol import ErrorCode as E

DTP = K.DESCRIBE_TOPIC_PARTITIONS
ZERO = uuid.UUID(int=0)


def no_id(topic) -> bool:
    """The all-zero topic id (kio decodes it as None)."""
    return topic.topic_id in (None, ZERO)


def _harness(tmp_path, authorizer: bool) -> AdminHarness:
    data = tmp_path / "data"
    if authorizer:
        Authorizer(data).update(added=[
            Acl("User:admin", "cluster", "kafka-cluster", "alter"),
            Acl("User:admin", "topic", "a", "describe", pattern="prefixed"),
            Acl("User:admin", "topic", "b", "read"),
        ])
    broker = Broker(BrokerConfig(data_dir=str(data), authorizer_enable=authorizer))
    for name, partitions in (("a1", 3), ("a2", 2), ("a3", 1), ("b", 2), ("c", 1)):
        broker.create_topic(name, partitions)
    return AdminHarness(broker)


@pytest.fixture
def h(tmp_path):
    harness = _harness(tmp_path, authorizer=False)
    yield harness
    harness.broker.close()


@pytest.fixture
def secured(tmp_path):
    harness = _harness(tmp_path, authorizer=True)
    yield harness
    harness.broker.close()


def dtp(h, topics=(), limit=2000, cursor=None, as_user=None):
    cur = None if cursor is None else h.req(DTP, 0, "Cursor", topic_name=cursor[0], partition_index=cursor[1])
    return h.call(DTP, 0, "DescribeTopicPartitionsRequest", as_user=as_user, response_partition_limit=limit,
                  cursor=cur, topics=tuple(h.req(DTP, 0, "TopicRequest", name=t) for t in topics))


def pages(resp):
    return [(t.name, [p.partition_index for p in t.partitions]) for t in resp.topics]


def test_every_topic_with_ids_leaders_and_operations(h):
    resp = dtp(h)
    infos = h.broker.topics()
    assert pages(resp)[:5] == [("a1", [0, 1, 2]), ("a2", [0, 1]), ("a3", [0]), ("b", [0, 1]), ("c", [0])]
    assert resp.next_cursor is None
    node = h.broker.config.node_id
    for topic in resp.topics:
        assert topic.error_code == 0 and topic.topic_id == infos[topic.name].topic_id
        assert topic.is_internal is h.broker.is_internal_topic(topic.name)
        # No authorizer: every operation of a topic, as Kafka.
        assert topic.topic_authorized_operations == sum(1 << OPERATION_CODES[op] for op in SUPPORTED_OPERATIONS["topic"])
        for p in topic.partitions:
            assert (p.error_code, p.leader_id, p.leader_epoch, p.replica_nodes, p.isr_nodes, p.offline_replicas) == (
                0, node, 0, (node,), (node,), ())


def test_pages_follow_the_cursor_until_every_partition_is_seen(h):
    seen, cursor, answers = [], None, 0
    while True:
        resp = dtp(h, ["c", "a1", "a2", "b"], limit=2, cursor=cursor)
        answers += 1
        seen += [(t.name, p.partition_index) for t in resp.topics for p in t.partitions]
        assert sum(len(t.partitions) for t in resp.topics) <= 2
        if resp.next_cursor is None:
            break
        cursor = (resp.next_cursor.topic_name, resp.next_cursor.partition_index)
    assert seen == [("a1", 0), ("a1", 1), ("a1", 2), ("a2", 0), ("a2", 1), ("b", 0), ("b", 1), ("c", 0)]
    assert answers == 4


def test_cursor_mid_topic_and_at_a_topic_boundary(h):
    resp = dtp(h, limit=2)
    assert pages(resp) == [("a1", [0, 1])]
    assert (resp.next_cursor.topic_name, resp.next_cursor.partition_index) == ("a1", 2)
    resp = dtp(h, limit=3, cursor=("a1", 2))
    assert pages(resp) == [("a1", [2]), ("a2", [0, 1])]
    # The limit ran out exactly at the end of a2: continue at the start of the next topic.
    assert (resp.next_cursor.topic_name, resp.next_cursor.partition_index) == ("a3", 0)
    # A limit of 0 or less still returns one partition (Kafka: at least 1).
    assert pages(dtp(h, limit=0)) == [("a1", [0])]


def test_unknown_invalid_and_bad_cursor_topics(h):
    resp = dtp(h, ["nope", "a3", "bad name!"])
    by_name = {t.name: t for t in resp.topics}
    assert by_name["nope"].error_code == E.unknown_topic_or_partition and no_id(by_name["nope"])
    assert by_name["bad name!"].error_code == E.invalid_topic_exception
    assert by_name["a3"].error_code == 0
    # The cursor topic must be among the named topics, and its partition not negative.
    resp = dtp(h, ["a1"], cursor=("b", 0))
    assert [(t.name, t.error_code) for t in resp.topics] == [("a1", E.invalid_request)]
    assert [t.error_code for t in dtp(h, ["a1"], cursor=("a1", -1)).topics] == [E.invalid_request]
    # Listing every topic, a cursor topic that is gone is just skipped.
    assert pages(dtp(h, cursor=("b-gone", 0))) == [("c", [0])]


def test_describe_needs_describe_on_each_topic(secured):
    # Named topics the principal may not describe answer 29 with no id; unnamed ones are left out.
    resp = dtp(secured, ["a1", "c", "b"])
    assert (resp.topics[-1].name, resp.topics[-1].error_code) == ("c", E.topic_authorization_failed)
    assert no_id(resp.topics[-1])
    assert pages(resp)[:2] == [("a1", [0, 1, 2]), ("b", [0, 1])]
    assert [t.name for t in dtp(secured).topics] == ["a1", "a2", "a3", "b"]
    ops = {t.name: t.topic_authorized_operations for t in resp.topics}
    assert ops["a1"] == 1 << OPERATION_CODES["describe"]
    assert ops["b"] == (1 << OPERATION_CODES["read"]) | (1 << OPERATION_CODES["describe"])
    assert [t.name for t in dtp(secured, as_user="bob").topics] == []


# -- ElectLeaders -------------------------------------------------------------------------------


def elect(h, version, topics, election_type=0, as_user=None):
    tps = None if topics is None else tuple(
        h.req(K.ELECT_LEADERS, version, "TopicPartitions", topic=t, partitions=tuple(ps)) for t, ps in topics)
    fields = dict(topic_partitions=tps, timeout=60_000)
    if version >= 1:
        fields["election_type"] = election_type
    return h.call(K.ELECT_LEADERS, version, "ElectLeadersRequest", as_user=as_user, **fields)


def results(resp):
    return {r.topic: [(p.partition_id, p.error_code, p.error_message) for p in r.partition_result]
            for r in resp.replica_election_results}


@pytest.mark.parametrize("version, election_type", [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)])
def test_elections_are_never_needed_on_one_node(h, version, election_type):
    resp = elect(h, version, [("a1", [0, 2, 3]), ("nope", [0])], election_type)
    assert results(resp) == {
        "a1": [(0, E.election_not_needed, None), (2, E.election_not_needed, None),
               (3, E.unknown_topic_or_partition, "No such partition as a1-3")],
        "nope": [(0, E.unknown_topic_or_partition, "No such topic as nope")],
    }
    if version >= 1:
        assert resp.error_code == 0


def test_a_null_topic_list_answers_every_topic_with_nothing_to_elect(h):
    resp = elect(h, 2, None)
    assert resp.error_code == 0
    assert results(resp) == {name: [] for name in h.broker.topics()}


def test_unknown_election_type_and_missing_cluster_alter(secured):
    resp = elect(secured, 2, [("a1", [0])], election_type=5)
    assert resp.error_code == E.invalid_request
    assert results(resp) == {"a1": [(0, E.invalid_request, "Unknown election type 5")]}
    resp = elect(secured, 2, [("a1", [0, 1])], as_user="bob")
    assert resp.error_code == E.cluster_authorization_failed
    assert [code for _, code, _ in results(resp)["a1"]] == [E.cluster_authorization_failed] * 2
    assert elect(secured, 1, [("a1", [0])]).error_code == 0
