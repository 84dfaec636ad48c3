"""ListOffsets against partition leaders, shared by the consumer and the admin client."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping

import trio

from logbroker.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import ApiKey, ErrorCode

from . import _wire
from ._errors import kafka_error
from .cluster import Cluster
from .types import OffsetAndTimestamp, TopicPartition

__all__ = ["EARLIEST", "LATEST", "list_offsets", "timestamp_ms"]

LATEST = _wire.LATEST
EARLIEST = _wire.EARLIEST


def timestamp_ms(when: datetime.datetime | int | float) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC) or of a number of ms."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return int(when.timestamp() * 1000)
    return int(when)


async def list_offsets(
    cluster: Cluster,
    targets: Mapping[TopicPartition, int],
    *,
    isolation_level: int = 0,
) -> dict[TopicPartition, OffsetAndTimestamp]:
    """Ask each partition's leader for an offset: ``targets`` maps a partition to a
    timestamp in ms, :data:`LATEST` or :data:`EARLIEST`.

    For a timestamp the answer is the first offset whose timestamp is at or
    after it, or offset -1 when there is none. Retriable errors refresh the
    metadata and retry, for at most ``request_timeout_ms``.

    :raises KafkaError: a non-retriable error, or retriable ones that outlast the limit.
    """
    remaining = {TopicPartition(*tp): ts for tp, ts in targets.items()}
    result: dict[TopicPartition, OffsetAndTimestamp] = {}
    deadline = trio.current_time() + cluster.config.request_timeout_ms / 1000
    attempt = 0
    topics = {tp.topic for tp in remaining}
    for topic in topics:
        await cluster.topic(topic)
    while remaining:
        attempt += 1
        by_node: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for tp, ts in remaining.items():
            by_node[cluster.leader(tp.topic, tp.partition)][tp.topic].append((tp.partition, ts))
        last_error: KafkaError | None = None
        for node, request in by_node.items():
            if node < 0:
                last_error = kafka_error(ErrorCode.leader_not_available, context="ListOffsets")
                continue
            try:
                conn = await cluster.connection(node)
                version = conn.version(ApiKey.LIST_OFFSETS)
                answer = await conn.request(
                    ApiKey.LIST_OFFSETS, version,
                    _wire.list_offsets_request(version, request, isolation_level=isolation_level),
                )
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                last_error = exc
                continue
            for topic in answer.topics:
                for p in topic.partitions:
                    tp = TopicPartition(topic.name, p.partition_index)
                    if tp not in remaining:
                        continue
                    if p.error_code == ErrorCode.none:
                        result[tp] = OffsetAndTimestamp(p.offset, getattr(p, "timestamp", -1))
                        del remaining[tp]
                        continue
                    error = kafka_error(p.error_code, context=f"ListOffsets {tp.topic}[{tp.partition}]")
                    if not error.retriable:
                        raise error
                    last_error = error
        if not remaining:
            break
        if last_error is None:
            last_error = kafka_error(ErrorCode.unknown_server_error, "partitions missing from the answer",
                                     context="ListOffsets")
        if trio.current_time() + cluster.config.backoff(attempt) > deadline:
            raise last_error
        await trio.sleep(cluster.config.backoff(attempt))
        await cluster.refresh(topics)
    return result
