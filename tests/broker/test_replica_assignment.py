"""Explicit replica assignments in CreateTopics and CreatePartitions: this
broker's id is accepted, anything else gets Kafka's code and message
(ReplicationControlManager)."""

import pytest

from logbroker.protocol import ErrorCode

CREATE_TOPICS, CREATE_PARTITIONS = 19, 37
NODE = 3


@pytest.fixture
def h(make_broker):
    return make_broker(node_id=NODE)


def create(h, name, assignments, partitions=-1, rf=-1, version=7, validate_only=False):
    made = tuple(h.req(CREATE_TOPICS, version, "CreatableReplicaAssignment", partition_index=p, broker_ids=tuple(ids))
                 for p, ids in assignments)
    topic = h.req(CREATE_TOPICS, version, "CreatableTopic", name=name, num_partitions=partitions,
                  replication_factor=rf, assignments=made, configs=())
    return h.call(CREATE_TOPICS, version, "CreateTopicsRequest", topics=(topic,), timeout=1000,
                  validate_only=validate_only).topics[0]


def grow(h, name, count, assignments, version=3):
    made = None if assignments is None else tuple(
        h.req(CREATE_PARTITIONS, version, "CreatePartitionsAssignment", broker_ids=tuple(ids)) for ids in assignments
    )
    topic = h.req(CREATE_PARTITIONS, version, "CreatePartitionsTopic", name=name, count=count, assignments=made)
    return h.call(CREATE_PARTITIONS, version, "CreatePartitionsRequest", topics=(topic,), timeout_ms=1000,
                  validate_only=False).results[0]


def test_an_assignment_naming_this_broker_creates_the_topic(h) -> None:
    result = create(h, "t", [(1, [NODE]), (0, [NODE]), (2, [NODE])])
    assert (result.error_code, result.num_partitions, result.replication_factor) == (ErrorCode.none, 3, 1)
    assert h.broker.topics()["t"].partitions == 3
    assert create(h, "v", [(0, [NODE])], validate_only=True).error_code == ErrorCode.none
    assert "v" not in h.broker.topics()


@pytest.mark.parametrize(("assignments", "partitions", "rf", "code", "message"), [
    ([(0, [NODE])], -1, 1, ErrorCode.invalid_request,
     "A manual partition assignment was specified, but replication factor was not set to -1."),
    ([(0, [NODE])], 1, -1, ErrorCode.invalid_request,
     "A manual partition assignment was specified, but numPartitions was not set to -1."),
    ([(0, [NODE]), (0, [NODE])], -1, -1, ErrorCode.invalid_replica_assignment,
     "Found multiple manual partition assignments for partition 0"),
    ([(0, [])], -1, -1, ErrorCode.invalid_replica_assignment,
     "The manual partition assignment includes an empty replica list."),
    ([(0, [NODE, NODE])], -1, -1, ErrorCode.invalid_replica_assignment,
     f"The manual partition assignment includes the broker {NODE} more than once."),
    ([(0, [NODE, 7])], -1, -1, ErrorCode.invalid_replica_assignment,
     "The manual partition assignment includes broker 7, but no such broker is registered."),
    ([(0, [NODE]), (2, [NODE])], -1, -1, ErrorCode.invalid_replica_assignment,
     "partitions should be a consecutive 0-based integer sequence"),
])
def test_a_wrong_assignment_gets_kafkas_error(h, assignments, partitions, rf, code, message) -> None:
    result = create(h, "t", assignments, partitions, rf)
    assert (result.error_code, result.error_message) == (code, message)
    assert "t" not in h.broker.topics()


def test_create_partitions_takes_an_assignment_of_this_broker_only(h) -> None:
    assert create(h, "t", [(0, [NODE])]).error_code == ErrorCode.none
    assert grow(h, "t", 3, [[NODE], [NODE]]).error_code == ErrorCode.none
    assert h.broker.topics()["t"].partitions == 3
    refused = grow(h, "t", 4, [[0]])
    assert (refused.error_code, refused.error_message) == (
        ErrorCode.invalid_replica_assignment,
        "The manual partition assignment includes broker 0, but no such broker is registered.",
    )
    short = grow(h, "t", 5, [[NODE]])
    assert (short.error_code, short.error_message) == (
        ErrorCode.invalid_replica_assignment,
        "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.",
    )
    assert grow(h, "t", 4, None).error_code == ErrorCode.none
    assert h.broker.topics()["t"].partitions == 4
