"""What both kinds of group member ask their coordinator: a request on a lane, committed offsets.

The classic member (:mod:`.group`) and the KIP-848 member
(:mod:`.consumer_group_member`) differ in how they join and commit, not in
how they find the coordinator or read committed offsets; that part is here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import trio

from logbroker.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import ApiKey, ErrorCode

from . import _wire
from ._errors import kafka_error
from .cluster import Cluster
from .types import TopicPartition

__all__ = ["COORDINATOR_CODES", "coordinator_request", "fetch_committed"]

COORDINATOR_CODES = frozenset(
    {ErrorCode.coordinator_not_available, ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress}
)
"""Codes after which the coordinator is looked up again."""


async def coordinator_request(cluster: Cluster, group_id: str, api_key: ApiKey, make_body: Callable[[int], Any], *,
                              extra_timeout_ms: int = 0, lane: str = "group") -> Any:
    """Send ``make_body(version)`` to ``group_id``'s coordinator on ``lane``; return the answer body.

    :raises KafkaError: UNSUPPORTED_VERSION when the coordinator serves no version we implement.
    :raises KafkaConnectionError, KafkaTimeoutError: as :meth:`Connection.request`.
    """
    node = await cluster.coordinator(group_id)
    conn = await cluster.connection(node, lane)
    version = conn.version(api_key)
    return await conn.request(api_key, version, make_body(version), extra_timeout_ms=extra_timeout_ms)


async def fetch_committed(cluster: Cluster, group_id: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Committed offsets of ``partitions`` in ``group_id`` (-1 for none).

    :raises KafkaError: a non-retriable error, or retriable ones past ``request_timeout_ms``.
    """
    config = cluster.config
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    deadline = trio.current_time() + config.request_timeout_ms / 1000
    attempt = 0
    while True:
        attempt += 1
        try:
            answer = await coordinator_request(
                cluster, group_id, ApiKey.OFFSET_FETCH, lambda v: _wire.offset_fetch_request(v, group_id, by_topic)
            )
            top = getattr(answer, "error_code", ErrorCode.none)
            if top in COORDINATOR_CODES:
                cluster.forget_coordinator(group_id)
                raise kafka_error(top, context="OffsetFetch")
            result = {}
            for t in answer.topics:
                for p in t.partitions:
                    if p.error_code in COORDINATOR_CODES or p.error_code == ErrorCode.unstable_offset_commit:
                        raise kafka_error(p.error_code, context="OffsetFetch")
                    if p.error_code not in (ErrorCode.none, ErrorCode.unknown_topic_or_partition):
                        raise kafka_error(p.error_code, context=f"OffsetFetch {t.name}[{p.partition_index}]")
                    result[TopicPartition(t.name, p.partition_index)] = p.committed_offset
            if top not in (ErrorCode.none,):
                raise kafka_error(top, context="OffsetFetch")
            return {tp: result.get(tp, -1) for tp in partitions}
        except (KafkaConnectionError, KafkaTimeoutError, KafkaError) as exc:
            if not exc.retriable or trio.current_time() + config.backoff(attempt) > deadline:
                raise
            await trio.sleep(config.backoff(attempt))
