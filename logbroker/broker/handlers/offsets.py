"""ListOffsets, OffsetForLeaderEpoch, DeleteRecords and InitProducerId.

ACLs as in Kafka: ListOffsets and OffsetForLeaderEpoch need DESCRIBE on the
topic, DeleteRecords DELETE (TOPIC_AUTHORIZATION_FAILED per partition);
InitProducerId (idempotent producers) needs IDEMPOTENT_WRITE on the cluster
or WRITE on at least one topic (Kafka 3.0+, KIP-679), else
CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import TOPIC_DENIED
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.handlers.errors import error_code_for
from logbroker.broker.handlers.transactions import init_transactional_producer
from logbroker.broker.security.acls import CLUSTER
from logbroker.errors import LogbrokerError


EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3


def _lookup(plog: Any, timestamp: int) -> tuple[int, int]:
    """(offset, timestamp) for a ListOffsets query; (-1, -1) when nothing matches."""
    if timestamp == EARLIEST:
        return plog.log_start_offset, -1
    if timestamp == LATEST:
        return plog.log_end_offset, -1
    if timestamp == MAX_TIMESTAMP:
        found = plog.max_timestamp()
        if found is None:
            return -1, -1
        ts, offset = found
        return offset, ts
    found = plog.offset_for_timestamp(timestamp)
    if found is None:
        return -1, -1
    offset, ts = found
    return offset, ts


def handle_list_offsets(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    # isolation_level 1 (read_committed, v2+): "latest" is the last stable offset.
    read_committed = int(getattr(request.body, "isolation_level", 0)) == 1
    topics_out = []
    for topic in request.body.topics:
        parts = []
        allowed = broker.allowed(ctx, "describe", "topic", topic.name)
        for p in topic.partitions:
            index = int(p.partition_index)
            try:
                if not allowed:
                    offset, ts, code = -1, -1, TOPIC_DENIED
                else:
                    plog = broker.partition(topic.name, index)
                    if read_committed and int(p.timestamp) == LATEST:
                        offset, ts = broker.last_stable_offset(topic.name, index, plog), -1
                    else:
                        offset, ts = _lookup(plog, int(p.timestamp))
                    code = ErrorCode.none
            except LogbrokerError as exc:
                offset, ts, code = -1, -1, error_code_for(exc)
            parts.append(
                build(
                    mod.ListOffsetsPartitionResponse,
                    partition_index=index,
                    error_code=code,
                    timestamp=ts,
                    offset=offset,
                    leader_epoch=0 if code == ErrorCode.none else -1,
                )
            )
        topics_out.append(build(mod.ListOffsetsTopicResponse, name=topic.name, partitions=tuple(parts)))
    return build(request.response_class, topics=tuple(topics_out))


def handle_offset_for_leader_epoch(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    topics_out = []
    for topic in request.body.topics:
        parts = []
        allowed = broker.allowed(ctx, "describe", "topic", topic.topic)
        for p in topic.partitions:
            index = int(p.partition)
            if not allowed:
                parts.append(build(mod.EpochEndOffset, error_code=TOPIC_DENIED, partition=index, leader_epoch=-1,
                                   end_offset=-1))
                continue
            try:
                end = broker.partition(topic.topic, index).log_end_offset
                code, epoch = ErrorCode.none, 0
                if int(p.leader_epoch) > 0:
                    # We have only ever had epoch 0; a later epoch is unknown here.
                    code, epoch, end = ErrorCode.none, -1, -1
            except LogbrokerError as exc:
                code, epoch, end = error_code_for(exc), -1, -1
            parts.append(
                build(mod.EpochEndOffset, error_code=code, partition=index, leader_epoch=epoch, end_offset=end)
            )
        topics_out.append(build(mod.OffsetForLeaderTopicResult, topic=topic.topic, partitions=tuple(parts)))
    return build(request.response_class, topics=tuple(topics_out))


def handle_delete_records(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    topics_out = []
    for topic in request.body.topics:
        parts = []
        allowed = broker.allowed(ctx, "delete", "topic", topic.name)
        for p in topic.partitions:
            index = int(p.partition_index)
            if not allowed:
                parts.append(build(mod.DeleteRecordsPartitionResult, partition_index=index, low_watermark=-1,
                                   error_code=TOPIC_DENIED))
                continue
            try:
                plog = broker.partition(topic.name, index)
                target = int(p.offset)
                if target == -1:
                    target = plog.log_end_offset
                if target < 0 or target > plog.log_end_offset:
                    raise_code = ErrorCode.offset_out_of_range
                    parts.append(
                        build(mod.DeleteRecordsPartitionResult, partition_index=index, low_watermark=-1, error_code=raise_code)
                    )
                    continue
                low, code = broker.delete_records(topic.name, index, target), ErrorCode.none
                broker.fetch_sessions.partitions_changed(((topic.name, index),))  # a new log start offset to tell
            except LogbrokerError as exc:
                low, code = -1, error_code_for(exc)
            parts.append(build(mod.DeleteRecordsPartitionResult, partition_index=index, low_watermark=low, error_code=code))
        topics_out.append(build(mod.DeleteRecordsTopicResult, name=topic.name, partitions=tuple(parts)))
    return build(request.response_class, topics=tuple(topics_out))


def handle_init_producer_id(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if body.transactional_id is not None:
        return init_transactional_producer(broker, ctx, request)
    if not _may_produce_idempotently(broker, ctx):
        return build(
            request.response_class,
            error_code=ErrorCode.cluster_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
    return build(
        request.response_class,
        error_code=ErrorCode.none,
        producer_id=broker.allocate_producer_id(),
        producer_epoch=0,
    )


def _may_produce_idempotently(broker: Broker, ctx: RequestContext) -> bool:
    """IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka's
    ``authorizeByResourceType``: the producer needs WRITE on every topic it
    then produces to anyway)."""
    if broker.allowed(ctx, "idempotent_write", "cluster", CLUSTER):
        return True  # also the answer, at no cost, when the authorizer is off
    return broker.allowed_on_any(ctx, "write", "topic")
