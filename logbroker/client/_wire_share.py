"""Share-group requests and answers (KIP-932) for the queue consumer and the admin. Sans-I/O.

The queue consumer's ShareGroupHeartbeat, ShareFetch and ShareAcknowledge,
and the answers of the admin's DescribeShareGroupOffsets,
AlterShareGroupOffsets and ReadShareGroupState (their requests are built by
:mod:`._wire`). Each ``*_request(version, ...)`` returns the kio request object
of that version (:func:`logbroker.protocol.build` drops fields a version
lacks); each ``parse_*`` turns an answer into the client's own values. The
_wire modules are the only ones that know kio's field names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from logbroker.protocol import ApiKey, build, request_module, to_ms

from ._wire_admin import ItemError, PartitionError
from .types import TopicPartition

__all__ = [
    "ACCEPT",
    "REJECT",
    "RELEASE",
    "RENEW",
    "AckRow",
    "AcquiredRange",
    "ShareFetchAnswer",
    "ShareGroupOffsets",
    "ShareHeartbeatAnswer",
    "SharePartitionData",
    "SharePartitionOffset",
    "ShareStateWindow",
    "parse_alter_share_group_offsets",
    "parse_describe_share_group_offsets",
    "parse_read_share_group_state",
    "parse_share_acknowledge",
    "parse_share_fetch",
    "parse_share_group_heartbeat",
    "share_acknowledge_request",
    "share_fetch_request",
    "share_group_heartbeat_request",
]

ACCEPT, RELEASE, REJECT, RENEW = 1, 2, 3, 4
"""Acknowledge types of an AcknowledgementBatch (Renew: ShareFetch/ShareAcknowledge v2+)."""

_RENEW_MIN_VERSION = 2
_IN_FLIGHT, _ACKNOWLEDGED, _ARCHIVED = 1, 2, 4  # ReadShareGroupState delivery states

AckRow = tuple[int, int, tuple[int, ...]]
"""An AcknowledgementBatch: first offset, last offset, acknowledge types."""


# -- the queue consumer ------------------------------------------------------------


def share_group_heartbeat_request(version: int, *, group_id: str, member_id: str, member_epoch: int,
                                  subscribed_topic_names: Iterable[str] | None) -> Any:
    """ShareGroupHeartbeat; ``member_epoch`` -1 leaves the group, ``subscribed_topic_names``
    None means "unchanged since the last heartbeat"."""
    m = request_module(ApiKey.SHARE_GROUP_HEARTBEAT, version)
    return build(
        m.ShareGroupHeartbeatRequest,
        group_id=group_id,
        member_id=member_id,
        member_epoch=member_epoch,
        rack_id=None,
        subscribed_topic_names=None if subscribed_topic_names is None else tuple(subscribed_topic_names),
    )


@dataclass(frozen=True, slots=True)
class ShareHeartbeatAnswer:
    """A ShareGroupHeartbeat answer: ``assignment`` maps topic id -> partitions, None
    when the answer carries none (the assignment did not change)."""

    error_code: int
    error_message: str | None
    member_id: str | None
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: dict[uuid.UUID, tuple[int, ...]] | None


def parse_share_group_heartbeat(body: Any) -> ShareHeartbeatAnswer:
    assignment = None
    if body.assignment is not None:
        assignment = {t.topic_id: tuple(int(p) for p in t.partitions) for t in body.assignment.topic_partitions}
    return ShareHeartbeatAnswer(
        error_code=int(body.error_code),
        error_message=body.error_message,
        member_id=body.member_id,
        member_epoch=int(body.member_epoch),
        heartbeat_interval_ms=to_ms(body.heartbeat_interval),
        assignment=assignment,
    )


def _rows(m: Any, version: int, rows: Iterable[AckRow]) -> tuple[Any, ...]:
    """AcknowledgementBatch objects; Renew rows are dropped below v2, which lacks Renew."""
    return tuple(
        build(m.AcknowledgementBatch, first_offset=first, last_offset=last, acknowledge_types=types)
        for first, last, types in rows
        if version >= _RENEW_MIN_VERSION or types != (RENEW,)
    )


def share_fetch_request(
    version: int,
    *,
    group_id: str,
    member_id: str,
    session_epoch: int,
    max_wait_ms: int,
    max_bytes: int,
    max_records: int,
    partitions: Mapping[uuid.UUID, Mapping[int, Sequence[AckRow]]],
) -> Any:
    """ShareFetch of ``partitions`` (topic id -> partition -> the acknowledgements to carry).
    Every partition is fetched, with or without acknowledgements; Renew rows are dropped
    below v2."""
    m = request_module(ApiKey.SHARE_FETCH, version)
    return build(
        m.ShareFetchRequest,
        group_id=group_id,
        member_id=member_id,
        share_session_epoch=session_epoch,
        max_wait=max_wait_ms,
        min_bytes=1,
        max_bytes=max_bytes,
        max_records=max_records,
        batch_size=max_records,
        topics=tuple(
            build(m.FetchTopic, topic_id=topic_id, partitions=tuple(
                build(m.FetchPartition, partition_index=p, acknowledgement_batches=_rows(m, version, rows))
                for p, rows in parts.items()
            ))
            for topic_id, parts in partitions.items()
        ),
        forgotten_topics_data=(),
    )


class AcquiredRange(NamedTuple):
    """Records a ShareFetch acquired for this member: offsets first..last, delivered ``delivery_count`` times."""

    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(frozen=True, slots=True)
class SharePartitionData:
    """One partition of a ShareFetch answer: its record batches (bytes as received) and
    the ranges of them acquired for this member."""

    topic_id: uuid.UUID
    partition: int
    error_code: int
    records: bytes | memoryview | None
    acquired: tuple[AcquiredRange, ...]


@dataclass(frozen=True, slots=True)
class ShareFetchAnswer:
    """A ShareFetch answer: the top-level error, how long acquired records stay locked,
    and every partition's data."""

    error_code: int
    error_message: str | None
    lock_timeout_ms: int
    partitions: tuple[SharePartitionData, ...]


def parse_share_fetch(body: Any) -> ShareFetchAnswer:
    return ShareFetchAnswer(
        error_code=int(body.error_code),
        error_message=body.error_message,
        lock_timeout_ms=to_ms(body.acquisition_lock_timeout),
        partitions=tuple(
            SharePartitionData(
                topic_id=topic.topic_id,
                partition=int(part.partition_index),
                error_code=int(part.error_code),
                records=part.records,
                acquired=tuple(AcquiredRange(int(a.first_offset), int(a.last_offset), int(a.delivery_count))
                               for a in part.acquired_records),
            )
            for topic in body.responses
            for part in topic.partitions
        ),
    )


def share_acknowledge_request(
    version: int,
    *,
    group_id: str,
    member_id: str,
    session_epoch: int,
    partitions: Mapping[uuid.UUID, Mapping[int, Sequence[AckRow]]],
) -> Any:
    """ShareAcknowledge of ``partitions`` (topic id -> partition -> acknowledgements);
    ``session_epoch`` -1 closes the share session. Renew rows are dropped below v2,
    and a partition left without rows is not sent."""
    m = request_module(ApiKey.SHARE_ACKNOWLEDGE, version)
    topics = []
    for topic_id, parts in partitions.items():
        rows = [(p, _rows(m, version, batches)) for p, batches in parts.items()]
        sent = tuple(build(m.AcknowledgePartition, partition_index=p, acknowledgement_batches=batches)
                     for p, batches in rows if batches)
        if sent:
            topics.append(build(m.AcknowledgeTopic, topic_id=topic_id, partitions=sent))
    return build(m.ShareAcknowledgeRequest, group_id=group_id, member_id=member_id,
                 share_session_epoch=session_epoch, topics=tuple(topics))


def parse_share_acknowledge(body: Any) -> int:
    """The top-level error code of a ShareAcknowledge answer."""
    return int(body.error_code)


# -- the admin's share-group answers -------------------------------------------------


def parse_alter_share_group_offsets(body: Any, group_id: str) -> tuple[ItemError, list[PartitionError]]:
    """The group's error and every partition's error of an AlterShareGroupOffsets answer."""
    group = ItemError(group_id, int(body.error_code), body.error_message)
    parts = [PartitionError(TopicPartition(t.topic_name, p.partition_index), int(p.error_code), p.error_message)
             for t in body.responses for p in t.partitions]
    return group, parts


class SharePartitionOffset(NamedTuple):
    """One partition of a DescribeShareGroupOffsets answer; ``lag`` is -1 before v1."""

    tp: TopicPartition
    topic_id: uuid.UUID
    start_offset: int
    lag: int
    error_code: int
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ShareGroupOffsets:
    """One group of a DescribeShareGroupOffsets answer."""

    group_id: str
    error_code: int
    error_message: str | None
    partitions: tuple[SharePartitionOffset, ...]


def parse_describe_share_group_offsets(body: Any) -> list[ShareGroupOffsets]:
    return [
        ShareGroupOffsets(
            group_id=g.group_id,
            error_code=int(g.error_code),
            error_message=g.error_message,
            partitions=tuple(
                SharePartitionOffset(TopicPartition(t.topic_name, p.partition_index), t.topic_id,
                                     int(p.start_offset), int(getattr(p, "lag", -1)),  # lag: v1+
                                     int(p.error_code), p.error_message)
                for t in g.topics for p in t.partitions
            ),
        )
        for g in body.groups
    ]


class ShareStateWindow(NamedTuple):
    """One partition of a ReadShareGroupState answer, counted: the records of the in-flight
    window ``[start_offset, start_offset + window)`` by state."""

    topic_id: uuid.UUID
    partition: int
    error_code: int
    start_offset: int
    in_flight: int
    acknowledged: int
    archived: int
    window: int


def parse_read_share_group_state(body: Any) -> list[ShareStateWindow]:
    out = []
    for r in body.results:
        for p in r.partitions:
            counts = {_IN_FLIGHT: 0, _ACKNOWLEDGED: 0, _ARCHIVED: 0}
            last = p.start_offset - 1
            for b in p.state_batches:
                last = max(last, b.last_offset)
                if b.delivery_state in counts:
                    counts[b.delivery_state] += b.last_offset - b.first_offset + 1
            out.append(ShareStateWindow(r.topic_id, int(p.partition), int(p.error_code), int(p.start_offset),
                                        counts[_IN_FLIGHT], counts[_ACKNOWLEDGED], counts[_ARCHIVED],
                                        last - p.start_offset + 1))
    return out
