"""DescribeTopicPartitions and ElectLeaders: the topic admin APIs of Kafka's
newer AdminClients, answered as a single node.

DescribeTopicPartitions (KIP-966; Kafka 4's ``describeTopics``) pages
through topics in name order: at most ``ResponsePartitionLimit`` partitions
(capped at :data:`MAX_PARTITIONS_PER_RESPONSE`, at least 1) per answer, and a
``NextCursor`` (topic, partition) to continue from. It needs DESCRIBE on each
topic: a topic named but not allowed answers TOPIC_AUTHORIZATION_FAILED
(with no topic id), one not named is left out, as in Kafka.

ElectLeaders needs ALTER on the cluster. This node leads every partition and
is every partition's preferred (only) replica, so each existing partition
answers ELECTION_NOT_NEEDED for both preferred and unclean elections; a null
topic list asks for every partition and, as in Kafka, leaves out those that
need no election.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.security.acls import CLUSTER, authorized_operations
from logbroker.errors import InvalidTopicError
from logbroker.protocol import ErrorCode
from logbroker.storage import validate_topic_name

if TYPE_CHECKING:
    from logbroker.broker.core import Broker
    from logbroker.protocol import Request

MAX_PARTITIONS_PER_RESPONSE = 2000
"""Kafka's ``max.request.partition.size.limit`` default, the cap on ResponsePartitionLimit."""
ZERO_UUID = uuid.UUID(int=0)
PREFERRED, UNCLEAN = 0, 1


def handle_describe_topic_partitions(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    cursor = body.cursor
    cursor_topic = cursor.topic_name if cursor is not None else ""
    topics = broker.topics()
    every_topic = not body.topics

    def error_topic(name: str, code: ErrorCode) -> Any:
        return build(mod.DescribeTopicPartitionsResponseTopic, error_code=code, name=name, topic_id=ZERO_UUID,
                     is_internal=False, partitions=())

    wanted = sorted({t for t in topics if t >= cursor_topic} if every_topic
                    else {t.name for t in body.topics if t.name >= cursor_topic})
    if cursor is not None and ((not every_topic and cursor_topic not in wanted) or cursor.partition_index < 0):
        # Kafka throws InvalidRequestException: every named topic gets the error.
        return build(request.response_class,
                     topics=tuple(error_topic(t.name, ErrorCode.invalid_request) for t in body.topics))
    allowed = [name for name in wanted if broker.allowed(ctx, "describe", "topic", name)]
    denied = [] if every_topic else [n for n in wanted if n not in set(allowed)]
    out: list[Any] = []
    next_cursor: Any = None
    remaining = max(min(MAX_PARTITIONS_PER_RESPONSE, int(body.response_partition_limit)), 1)
    node = broker.config.node_id
    for name in allowed:
        if remaining == 0:
            # The previous topic ended exactly at the limit: continue at this one.
            next_cursor = build(mod.Cursor, topic_name=name, partition_index=0)
            break
        info = topics.get(name)
        if info is None:
            if not every_topic:
                out.append(error_topic(name, _unknown_topic_code(name)))
            continue
        start = int(cursor.partition_index) if cursor is not None and name == cursor_topic else 0
        end = min(info.partitions, start + remaining)
        partitions = tuple(
            build(mod.DescribeTopicPartitionsResponsePartition, error_code=ErrorCode.none, partition_index=p,
                  leader_id=node, leader_epoch=0, replica_nodes=(node,), isr_nodes=(node,),
                  eligible_leader_replicas=(), last_known_elr=(), offline_replicas=())
            for p in range(start, end)
        )
        out.append(build(
            mod.DescribeTopicPartitionsResponseTopic, error_code=ErrorCode.none, name=name, topic_id=info.topic_id,
            is_internal=broker.is_internal_topic(name), partitions=partitions,
            topic_authorized_operations=authorized_operations(
                lambda op, name=name: broker.allowed(ctx, op, "topic", name), "topic"),
        ))
        if end < info.partitions:
            next_cursor = build(mod.Cursor, topic_name=name, partition_index=end)
            break
        remaining -= len(partitions)
    out += [error_topic(name, ErrorCode.topic_authorization_failed) for name in denied]
    return build(request.response_class, topics=tuple(out), next_cursor=next_cursor)


def _unknown_topic_code(name: str) -> ErrorCode:
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        return ErrorCode.invalid_topic_exception
    return ErrorCode.unknown_topic_or_partition


def handle_elect_leaders(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    election = int(getattr(body, "election_type", PREFERRED))  # v0 elects the preferred leader
    refused: tuple[ErrorCode, str | None] | None = None
    if not broker.allowed(ctx, "alter", "cluster", CLUSTER):
        refused = (ErrorCode.cluster_authorization_failed, None)
    elif election not in (PREFERRED, UNCLEAN):
        refused = (ErrorCode.invalid_request, f"Unknown election type {election}")
    if refused is not None:
        code, message = refused
        results = tuple(
            build(mod.ReplicaElectionResult, topic=t.topic, partition_result=tuple(
                build(mod.PartitionResult, partition_id=p, error_code=code, error_message=message)
                for p in t.partitions))
            for t in body.topic_partitions or ()
        )
        return build(request.response_class, error_code=code, replica_election_results=results)
    topics = broker.topics()
    if body.topic_partitions is None:
        # Every partition: all need no election, so every topic answers an empty list.
        results = tuple(build(mod.ReplicaElectionResult, topic=name, partition_result=()) for name in sorted(topics))
        return build(request.response_class, error_code=ErrorCode.none, replica_election_results=results)
    out = []
    for wanted in body.topic_partitions:
        info = topics.get(wanted.topic)
        rows = []
        for p in wanted.partitions:
            code = ErrorCode.election_not_needed
            message = None
            if info is None:
                code, message = ErrorCode.unknown_topic_or_partition, f"No such topic as {wanted.topic}"
            elif not 0 <= int(p) < info.partitions:
                code, message = ErrorCode.unknown_topic_or_partition, f"No such partition as {wanted.topic}-{int(p)}"
            rows.append(build(mod.PartitionResult, partition_id=p, error_code=code, error_message=message))
        out.append(build(mod.ReplicaElectionResult, topic=wanted.topic, partition_result=tuple(rows)))
    return build(request.response_class, error_code=ErrorCode.none, replica_election_results=tuple(out))
