"""Answers of the admin client's requests, and of the connection's and cluster's own. Sans-I/O.

The admin builds its requests with :mod:`._wire`; each ``parse_*`` here turns
an answer into the client's own values (:mod:`.types`, or the small
:class:`ItemError`/:class:`PartitionError` rows that carry an item's error
code and message) so the admin only decides what to raise. The connection's
ApiVersions handshake and SASL login (SaslHandshake, SaslAuthenticate) and the
cluster's FindCoordinator are built and read here too. The _wire modules are the only ones that know kio's field names.

A field a negotiated version may lack (see
:data:`~logbroker.client.versions.CLIENT_VERSIONS`) is read with a default
and a comment naming the version that added it.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

from logbroker.protocol import ApiKey, build, request_module, to_ms

from .assignors import decode_assignment
from .types import (
    BrokerInfo,
    ConsumerGroupDescription,
    ConsumerGroupMemberDescription,
    GroupDescription,
    GroupListing,
    LogDirDescription,
    MemberDescription,
    ProducerDescription,
    TopicPartition,
    TransactionDescription,
    TransactionListing,
)

__all__ = [
    "ConfigEntry",
    "CoordinatorAnswer",
    "ItemError",
    "PartitionError",
    "ResourceConfigs",
    "SaslAnswer",
    "api_versions_request",
    "parse_api_versions",
    "parse_consumer_group_describe",
    "parse_create_partitions",
    "parse_create_topics",
    "parse_delete_groups",
    "parse_delete_records",
    "parse_delete_topics",
    "parse_describe_configs",
    "parse_describe_groups",
    "parse_describe_log_dirs",
    "parse_describe_producers",
    "parse_describe_transactions",
    "parse_find_coordinator",
    "parse_incremental_alter_configs",
    "parse_list_groups",
    "parse_list_transactions",
    "parse_offset_commit",
    "parse_offset_fetch",
    "parse_sasl_authenticate",
    "parse_sasl_handshake",
    "parse_write_txn_markers",
    "sasl_authenticate_request",
    "sasl_handshake_request",
    "top_error_code",
]

_DEFAULT_CONFIG = 5  # DescribeConfigs config_source DEFAULT_CONFIG


class ItemError(NamedTuple):
    """The error code (0: none) and message of one named item of an answer: a topic,
    a group, a config resource."""

    name: str
    error_code: int
    error_message: str | None = None


class PartitionError(NamedTuple):
    """The error code (0: none) and message of one partition of an answer."""

    tp: TopicPartition
    error_code: int
    error_message: str | None = None


# -- the connection and the cluster ---------------------------------------------------


def api_versions_request(version: int, *, software_name: str, software_version: str) -> Any:
    m = request_module(ApiKey.API_VERSIONS, version)
    return build(m.ApiVersionsRequest, client_software_name=software_name,
                 client_software_version=software_version)


def parse_api_versions(body: Any) -> tuple[int, list[tuple[int, int, int]]]:
    """The error code and the (api key, min version, max version) rows of an ApiVersions answer."""
    return int(body.error_code), [(int(e.api_key), int(e.min_version), int(e.max_version)) for e in body.api_keys]


def sasl_handshake_request(version: int, mechanism: str) -> Any:
    return build(request_module(ApiKey.SASL_HANDSHAKE, version).SaslHandshakeRequest, mechanism=mechanism)


def parse_sasl_handshake(body: Any) -> tuple[int, tuple[str, ...]]:
    """The error code and the mechanisms the broker offers."""
    return int(body.error_code), tuple(body.mechanisms)


def sasl_authenticate_request(version: int, auth_bytes: bytes) -> Any:
    return build(request_module(ApiKey.SASL_AUTHENTICATE, version).SaslAuthenticateRequest, auth_bytes=auth_bytes)


class SaslAnswer(NamedTuple):
    """A SaslAuthenticate answer: the error code (and message), or the broker's next SASL bytes."""

    error_code: int
    error_message: str | None
    auth_bytes: bytes


def parse_sasl_authenticate(body: Any) -> SaslAnswer:
    return SaslAnswer(int(body.error_code), body.error_message, bytes(body.auth_bytes))


class CoordinatorAnswer(NamedTuple):
    """A FindCoordinator answer: the coordinator, or the error code (and message, v1+)."""

    error_code: int
    error_message: str | None
    broker: BrokerInfo


def parse_find_coordinator(body: Any) -> CoordinatorAnswer:
    return CoordinatorAnswer(int(body.error_code), getattr(body, "error_message", None),  # error_message: v1+
                             BrokerInfo(body.node_id, body.host, body.port))


def top_error_code(body: Any, group_id: str) -> int:
    """The error code of any coordinator answer: its top-level code, else the code of
    ``group_id`` in its groups, else the first of its results (0: none). Used to spot
    NOT_COORDINATOR and friends whatever the API."""
    code = getattr(body, "error_code", 0)
    if code:
        return int(code)
    for g in getattr(body, "groups", ()) or ():
        if getattr(g, "group_id", group_id) == group_id and getattr(g, "error_code", 0):
            return int(g.error_code)
    for r in getattr(body, "results", ()) or ():
        if getattr(r, "error_code", 0):
            return int(r.error_code)
    return 0


# -- topics and configs -------------------------------------------------------------


def parse_create_topics(body: Any) -> list[ItemError]:
    return [ItemError(t.name, int(t.error_code), t.error_message) for t in body.topics]


def parse_delete_topics(body: Any) -> list[ItemError]:
    return [ItemError(r.name, int(r.error_code), getattr(r, "error_message", None))  # error_message: v5+
            for r in body.responses]


def parse_create_partitions(body: Any) -> list[ItemError]:
    return [ItemError(r.name, int(r.error_code), r.error_message) for r in body.results]


def parse_incremental_alter_configs(body: Any) -> list[ItemError]:
    return [ItemError(r.resource_name, int(r.error_code), r.error_message) for r in body.responses]


class ConfigEntry(NamedTuple):
    """One config of a DescribeConfigs answer; ``is_default``: the broker's default value."""

    name: str
    value: str | None
    is_default: bool


class ResourceConfigs(NamedTuple):
    """One resource (topic or group) of a DescribeConfigs answer."""

    error: ItemError
    entries: tuple[ConfigEntry, ...]


def parse_describe_configs(body: Any) -> list[ResourceConfigs]:
    return [
        ResourceConfigs(
            ItemError(r.resource_name, int(r.error_code), r.error_message),
            tuple(ConfigEntry(c.name, c.value, c.config_source == _DEFAULT_CONFIG) for c in r.configs),
        )
        for r in body.results
    ]


# -- groups and offsets ---------------------------------------------------------------


def parse_list_groups(body: Any) -> tuple[int, list[GroupListing]]:
    """The error code and the groups of a ListGroups answer."""
    return int(body.error_code), [
        GroupListing(g.group_id, g.protocol_type,
                     getattr(g, "group_state", ""),  # v4+
                     getattr(g, "group_type", "").lower())  # v5+
        for g in body.groups
    ]


def parse_describe_groups(body: Any) -> list[GroupDescription]:
    """Each group of a DescribeGroups answer, with its error code; a consumer group's
    member assignments are decoded (left empty where they do not decode)."""
    out = []
    for g in body.groups:
        members = []
        for m in g.members:
            assignment: tuple[TopicPartition, ...] = ()
            if g.protocol_type == "consumer" and m.member_assignment:
                with contextlib.suppress(Exception):
                    assignment = decode_assignment(m.member_assignment).partitions
            members.append(MemberDescription(m.member_id, m.client_id, m.client_host,
                                             getattr(m, "group_instance_id", None),  # v4+
                                             assignment))
        out.append(GroupDescription(g.group_id, g.group_state, g.protocol_type, g.protocol_data,
                                    tuple(members), int(g.error_code)))
    return out


def _partitions(assignment: Any) -> tuple[TopicPartition, ...]:
    """A ConsumerGroupDescribe assignment as sorted partitions."""
    return tuple(sorted(TopicPartition(t.topic_name, p) for t in assignment.topic_partitions for p in t.partitions))


def parse_consumer_group_describe(body: Any) -> tuple[list[ItemError], list[ConsumerGroupDescription]]:
    """Every group's error, and the description of every group of a ConsumerGroupDescribe answer."""
    errors = [ItemError(g.group_id, int(g.error_code), g.error_message) for g in body.groups]
    groups = [
        ConsumerGroupDescription(
            g.group_id, g.group_state, int(g.group_epoch), int(g.assignment_epoch), g.assignor_name,
            tuple(
                ConsumerGroupMemberDescription(
                    member_id=m.member_id, member_epoch=int(m.member_epoch), client_id=m.client_id,
                    client_host=m.client_host, instance_id=m.instance_id, rack_id=m.rack_id,
                    subscribed_topics=tuple(m.subscribed_topic_names),
                    subscribed_regex=m.subscribed_topic_regex,
                    assignment=_partitions(m.assignment), target_assignment=_partitions(m.target_assignment),
                )
                for m in g.members
            ),
            int(g.error_code),
        )
        for g in body.groups
    ]
    return errors, groups


def parse_delete_groups(body: Any) -> list[ItemError]:
    return [ItemError(r.group_id, int(r.error_code)) for r in body.results]


def parse_offset_fetch(body: Any) -> tuple[int, dict[TopicPartition, int]]:
    """The group's error code (v2+; 0 before) and its committed offsets, sorted
    (partitions with an error or no committed offset are left out)."""
    out = {
        TopicPartition(t.name, p.partition_index): int(p.committed_offset)
        for t in body.topics for p in t.partitions
        if not p.error_code and p.committed_offset >= 0
    }
    return int(getattr(body, "error_code", 0)), dict(sorted(out.items()))  # error_code: v2+


def parse_offset_commit(body: Any) -> list[PartitionError]:
    return [PartitionError(TopicPartition(t.name, p.partition_index), int(p.error_code))
            for t in body.topics for p in t.partitions]


def parse_delete_records(body: Any) -> tuple[list[PartitionError], dict[TopicPartition, int]]:
    """Every partition's error, and the new low watermark of each partition of a DeleteRecords answer."""
    errors = []
    marks = {}
    for t in body.topics:
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            errors.append(PartitionError(tp, int(p.error_code)))
            marks[tp] = int(p.low_watermark)
    return errors, marks


def parse_describe_log_dirs(body: Any, node: int) -> tuple[int, list[LogDirDescription]]:
    """The error code (v3+; 0 before) and the log directories of broker ``node``."""
    dirs = []
    for r in body.results:
        sizes = {TopicPartition(t.name, p.partition_index): int(p.partition_size)
                 for t in r.topics for p in t.partitions}
        dirs.append(LogDirDescription(node, r.log_dir, dict(sorted(sizes.items())),
                                      int(getattr(r, "total_bytes", -1)),  # v4+
                                      int(getattr(r, "usable_bytes", -1)),  # v4+
                                      int(r.error_code)))
    return int(getattr(body, "error_code", 0)), dirs  # error_code: v3+


# -- transactions -----------------------------------------------------------------------


def parse_list_transactions(body: Any) -> tuple[int, list[TransactionListing]]:
    return int(body.error_code), [TransactionListing(t.transactional_id, t.producer_id, t.transaction_state)
                                  for t in body.transaction_states]


def parse_describe_transactions(body: Any) -> list[TransactionDescription]:
    """Each transactional id of a DescribeTransactions answer, with its error code."""
    return [
        TransactionDescription(
            transactional_id=t.transactional_id, state=t.transaction_state, producer_id=t.producer_id,
            producer_epoch=t.producer_epoch, timeout_ms=to_ms(t.transaction_timeout),
            start_time_ms=to_ms(t.transaction_start_time),
            partitions=tuple(sorted(TopicPartition(d.topic, p) for d in t.topics for p in d.partitions)),
            error_code=int(t.error_code),
        )
        for t in body.transaction_states
    ]


def parse_describe_producers(body: Any) -> tuple[list[PartitionError], dict[TopicPartition, list[ProducerDescription]]]:
    """Every partition's error, and the producers active on each partition of a DescribeProducers answer."""
    errors = []
    producers = {}
    for t in body.topics:
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            errors.append(PartitionError(tp, int(p.error_code), p.error_message))
            producers[tp] = [
                ProducerDescription(a.producer_id, a.producer_epoch, a.last_sequence, a.last_timestamp,
                                    a.coordinator_epoch, a.current_txn_start_offset)
                for a in p.active_producers
            ]
    return errors, producers


def parse_write_txn_markers(body: Any) -> list[PartitionError]:
    return [PartitionError(TopicPartition(t.name, p.partition_index), int(p.error_code))
            for marker in body.markers for t in marker.topics for p in t.partitions]
