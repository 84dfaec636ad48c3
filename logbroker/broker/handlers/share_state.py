"""Share-group progress: DescribeShareGroupOffsets (Kafka's
``kafka-share-groups.sh --describe``: start offset and lag per partition),
AlterShareGroupOffsets (``--reset-offsets`` of an empty group) and
ReadShareGroupState (the per-record state of a share-partition's in-flight
window, which ``logbroker groups describe`` counts).

Kafka serves ReadShareGroupState from its share coordinator with what was
persisted; logbroker answers from the live window, so acquired records show
as ACQUIRED (1) with their delivery count. Both need DESCRIBE on the group.
"""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import GROUP_DENIED, TOPIC_DENIED
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.handlers._result import Reply
from logbroker.broker.share import ShareError
from logbroker.errors import UnknownTopicError


def _lag(broker: Broker, counts: Any, topic: str, partition: int) -> int:
    """Records not yet acknowledged or archived, up to the high watermark."""
    try:
        end = broker.partition(topic, partition).high_watermark
    except UnknownTopicError:  # deleted meanwhile
        return -1
    return max(0, end - counts.start_offset - counts.acknowledged - counts.archived)


def handle_describe_share_group_offsets(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    groups = []
    for group in request.body.groups:
        group_id = group.group_id
        if not broker.allowed(ctx, "describe", "group", group_id):
            groups.append(build(mod.DescribeShareGroupOffsetsResponseGroup, group_id=group_id, topics=(),
                                error_code=ErrorCode.group_authorization_failed))
            continue
        if not broker.share.is_share_group(group_id):
            groups.append(build(mod.DescribeShareGroupOffsetsResponseGroup, group_id=group_id, topics=(),
                                error_code=ErrorCode.group_id_not_found,
                                error_message=f"group {group_id} is not a share group"))
            continue
        known = {(t, p): c for (_, t, p), c in broker.share.partition_counts(group_id).items()}
        if group.topics is None:  # every partition the group has state for that may be described
            wanted: dict[str, list[int]] = {}
            for t, p in sorted(known):
                if broker.allowed(ctx, "describe", "topic", t):
                    wanted.setdefault(t, []).append(p)
        else:
            wanted = {t.topic_name: list(t.partitions) for t in group.topics}
        topics = []
        for topic, partitions in wanted.items():
            described = broker.allowed(ctx, "describe", "topic", topic)
            parts = []
            for p in partitions:
                counts = known.get((topic, p))
                if not described:
                    parts.append(build(mod.DescribeShareGroupOffsetsResponsePartition, partition_index=p,
                                       start_offset=-1, lag=-1,
                                       error_code=ErrorCode.topic_authorization_failed))
                elif not broker.has_topic(topic):
                    parts.append(build(mod.DescribeShareGroupOffsetsResponsePartition, partition_index=p,
                                       start_offset=-1, lag=-1,
                                       error_code=ErrorCode.unknown_topic_or_partition))
                elif counts is None:  # the group never fetched it: no start offset yet
                    parts.append(build(mod.DescribeShareGroupOffsetsResponsePartition, partition_index=p,
                                       start_offset=-1, lag=-1))
                else:
                    parts.append(build(mod.DescribeShareGroupOffsetsResponsePartition, partition_index=p,
                                       start_offset=counts.start_offset, leader_epoch=0,
                                       lag=_lag(broker, counts, topic, p)))
            topics.append(build(mod.DescribeShareGroupOffsetsResponseTopic, topic_name=topic,
                                topic_id=broker.share.topic_id(topic), partitions=tuple(parts)))
        groups.append(build(mod.DescribeShareGroupOffsetsResponseGroup, group_id=group_id, topics=tuple(topics)))
    return build(request.response_class, groups=tuple(groups))


def handle_read_share_group_state(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    body = request.body
    share = broker.share
    group_ok = broker.allowed(ctx, "describe", "group", body.group_id)
    results = []
    for topic in body.topics:
        name = share.topic_name(topic.topic_id) if topic.topic_id is not None else None
        parts = []
        for p in topic.partitions:
            index = int(p.partition)
            sp = share.share_partition(body.group_id, name, index) if name is not None else None
            if not group_ok:
                code = ErrorCode.group_authorization_failed
            elif name is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                code = ErrorCode.none  # without state (never fetched) nothing is in flight
            batches = ()
            if code is ErrorCode.none and sp is not None:
                batches = tuple(
                    build(mod.StateBatch, first_offset=first, last_offset=last, delivery_state=state,
                          delivery_count=count)
                    for first, last, state, count in sp.runs(live=True).tolist()
                )
            parts.append(build(
                mod.PartitionResult, partition=index, error_code=code, state_epoch=0,
                start_offset=sp.start if sp is not None and code is ErrorCode.none else -1,
                state_batches=batches,
            ))
        results.append(build(mod.ReadStateResult, topic_id=topic.topic_id, partitions=tuple(parts)))
    return build(request.response_class, results=tuple(results))


def handle_alter_share_group_offsets(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """READ on the group and on each topic, as Kafka; the group must have no members."""
    mod = module_of(request.response_class)
    body = request.body
    share = broker.share
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, responses=())
    wanted, denied = {}, set()
    for topic in body.topics:
        if not broker.allowed(ctx, "read", "topic", topic.topic_name):
            denied.add(topic.topic_name)
            continue
        for p in topic.partitions:
            wanted[(topic.topic_name, int(p.partition_index))] = int(p.start_offset)
    error, results, written = share.alter_start_offsets(body.group_id, wanted, broker.clock())
    if written is not None and written.failed:
        error = ShareError.KAFKA_STORAGE_ERROR
    if error is not ShareError.NONE:
        return build(request.response_class, error_code=getattr(ErrorCode, error.value),
                     error_message=f"share group {body.group_id}: {error.value}", responses=())
    responses = []
    for topic in body.topics:
        name = topic.topic_name
        parts = tuple(
            build(mod.AlterShareGroupOffsetsResponsePartition, partition_index=p.partition_index,
                  error_code=TOPIC_DENIED if name in denied
                  else getattr(ErrorCode, results[(name, int(p.partition_index))].value))
            for p in topic.partitions
        )
        responses.append(build(mod.AlterShareGroupOffsetsResponseTopic, topic_name=name,
                               topic_id=share.topic_id(name), partitions=parts))
    body_out = build(request.response_class, responses=tuple(responses))
    if broker.config.flush != "always" or written is None:
        return Reply(body_out)
    return Reply(body_out, flush=[(f.log, f.offset) for f in written.flush])
