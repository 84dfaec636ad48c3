"""Request bodies and answer parsing for every API the client uses. Sans-I/O.

Each ``*_request(version, ...)`` returns the kio request object of that
version (:func:`logbroker.protocol.build` drops fields a version lacks, so one
function serves the whole range of :data:`~logbroker.client.versions.CLIENT_VERSIONS`);
each ``parse_*`` turns an answer into the client's own values. The _wire
modules (this one, ``_wire_admin`` and ``_wire_share``) are the only ones that
know kio's field names.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from logbroker.protocol import ApiKey, ErrorCode, build, request_module, to_ms

from .types import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo

__all__ = [
    "LATEST",
    "add_offsets_to_txn_request",
    "add_partitions_to_txn_request",
    "describe_producers_request",
    "describe_transactions_request",
    "end_txn_request",
    "list_transactions_request",
    "parse_add_partitions_to_txn",
    "txn_offset_commit_request",
    "write_txn_markers_request",
    "EARLIEST",
    "create_partitions_request",
    "create_topics_request",
    "ConsumerHeartbeatAnswer",
    "consumer_group_describe_request",
    "consumer_group_heartbeat_request",
    "delete_groups_request",
    "delete_records_request",
    "delete_topics_request",
    "describe_configs_request",
    "describe_groups_request",
    "describe_log_dirs_request",
    "fetch_request",
    "find_coordinator_request",
    "heartbeat_request",
    "incremental_alter_configs_request",
    "init_producer_id_request",
    "join_group_request",
    "leave_group_request",
    "list_groups_request",
    "list_offsets_request",
    "metadata_request",
    "offset_commit_request",
    "offset_fetch_request",
    "parse_consumer_group_heartbeat",
    "parse_metadata",
    "produce_request",
    "sync_group_request",
]

LATEST = -1
"""ListOffsets timestamp meaning "the log end offset" (high watermark)."""
EARLIEST = -2
"""ListOffsets timestamp meaning "the log start offset"."""

TOPIC_RESOURCE = 2
GROUP_RESOURCE = 32  # ConfigResource.Type.GROUP: share-group configs
_NULL_UUID = uuid.UUID(int=0)


def _m(key: ApiKey, version: int) -> Any:
    return request_module(key, version)


def ms(value: Any) -> int:
    """Milliseconds from a kio duration/timestamp (or an int)."""
    return to_ms(value)


# -- metadata -----------------------------------------------------------------


def metadata_request(version: int, topics: Iterable[str] | None, *, allow_auto_create: bool) -> Any:
    """Metadata for ``topics`` (None: every topic; empty: brokers only)."""
    m = _m(ApiKey.METADATA, version)
    topic_list = None
    if topics is not None:
        topic_list = [build(m.MetadataRequestTopic, name=t, topic_id=None) for t in topics]
    return build(
        m.MetadataRequest,
        topics=topic_list,
        allow_auto_topic_creation=allow_auto_create,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def parse_metadata(body: Any) -> ClusterMetadata:
    brokers = {
        b.node_id: BrokerInfo(b.node_id, b.host, b.port, getattr(b, "rack", None)) for b in body.brokers
    }
    topics = {}
    for t in body.topics:
        if t.name is None:
            continue
        parts = tuple(
            sorted(
                (
                    PartitionInfo(
                        topic=t.name,
                        partition=p.partition_index,
                        leader=p.leader_id,
                        leader_epoch=getattr(p, "leader_epoch", -1),
                        replicas=tuple(getattr(p, "replica_nodes", ())),
                        isr=tuple(getattr(p, "isr_nodes", ())),
                        error_code=int(p.error_code),
                    )
                    for p in t.partitions
                ),
                key=lambda p: p.partition,
            )
        )
        topic_id = getattr(t, "topic_id", None)
        topics[t.name] = TopicInfo(
            name=t.name,
            partitions=parts,
            error_code=int(t.error_code),
            topic_id=None if topic_id in (None, _NULL_UUID) else str(topic_id),
            internal=bool(getattr(t, "is_internal", False)),
        )
    return ClusterMetadata(
        brokers=brokers,
        topics=topics,
        controller_id=getattr(body, "controller_id", -1),
        cluster_id=getattr(body, "cluster_id", None),
    )


# -- produce and fetch -----------------------------------------------------------


def produce_request(
    version: int,
    acks: int,
    timeout_ms: int,
    batches: Mapping[str, list[tuple[int, bytes]]],
    transactional_id: str | None = None,
) -> Any:
    """A Produce request: ``batches`` maps topic -> [(partition, batch bytes)]."""
    m = _m(ApiKey.PRODUCE, version)
    topic_cls = m.TopicProduceData
    part_cls = m.PartitionProduceData
    return m.ProduceRequest(
        transactional_id=transactional_id,
        acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(
            topic_cls(name=topic, partition_data=tuple(part_cls(index=p, records=data) for p, data in parts))
            for topic, parts in batches.items()
        ),
    )


def fetch_request(
    version: int,
    *,
    max_wait_ms: int,
    min_bytes: int,
    max_bytes: int,
    isolation_level: int,
    partitions: Mapping[str, list[tuple[int, int, int]]],
) -> Any:
    """A full (sessionless) Fetch: ``partitions`` maps topic -> [(partition, offset, max bytes)]."""
    m = _m(ApiKey.FETCH, version)
    return build(
        m.FetchRequest,
        replica_id=-1,
        max_wait=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=isolation_level,
        session_id=0,
        session_epoch=-1,
        topics=[
            build(
                m.FetchTopic,
                topic=topic,
                partitions=[
                    build(
                        m.FetchPartition,
                        partition=p,
                        current_leader_epoch=-1,
                        fetch_offset=offset,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=limit,
                    )
                    for p, offset, limit in parts
                ],
            )
            for topic, parts in partitions.items()
        ],
        forgotten_topics_data=[],
        rack_id="",
    )


def list_offsets_request(
    version: int, targets: Mapping[str, list[tuple[int, int]]], *, isolation_level: int = 0
) -> Any:
    """ListOffsets: ``targets`` maps topic -> [(partition, timestamp or LATEST/EARLIEST)]."""
    m = _m(ApiKey.LIST_OFFSETS, version)
    return build(
        m.ListOffsetsRequest,
        replica_id=-1,
        isolation_level=isolation_level,
        topics=[
            build(
                m.ListOffsetsTopic,
                name=topic,
                partitions=[
                    build(m.ListOffsetsPartition, partition_index=p, current_leader_epoch=-1, timestamp=ts)
                    for p, ts in parts
                ],
            )
            for topic, parts in targets.items()
        ],
    )


def init_producer_id_request(version: int, *, transactional_id: str | None = None,
                             transaction_timeout_ms: int = 60_000, producer_id: int = -1,
                             producer_epoch: int = -1) -> Any:
    """InitProducerId; ``producer_id``/``producer_epoch`` name the current producer (v3+,
    KIP-360: bump the epoch of this producer rather than fence a stranger)."""
    m = _m(ApiKey.INIT_PRODUCER_ID, version)
    if version < 3:
        producer_id = producer_epoch = -1
    return build(
        m.InitProducerIdRequest,
        transactional_id=transactional_id,
        transaction_timeout=transaction_timeout_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )


# -- transactions ------------------------------------------------------------------


def add_partitions_to_txn_request(version: int, *, transactional_id: str, producer_id: int,
                                  producer_epoch: int, partitions: Mapping[str, list[int]]) -> Any:
    """AddPartitionsToTxn v0-3 (a producer's own form): ``partitions`` maps topic -> [partition]."""
    m = _m(ApiKey.ADD_PARTITIONS_TO_TXN, version)
    return build(
        m.AddPartitionsToTxnRequest,
        v3_and_below_transactional_id=transactional_id,
        v3_and_below_producer_id=producer_id,
        v3_and_below_producer_epoch=producer_epoch,
        v3_and_below_topics=[build(m.AddPartitionsToTxnTopic, name=t, partitions=sorted(ps))
                             for t, ps in partitions.items()],
    )


def parse_add_partitions_to_txn(body: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) -> error code of an AddPartitionsToTxn v0-3 answer."""
    return {
        (t.name, p.partition_index): int(p.partition_error_code)
        for t in body.results_by_topic_v3_and_below for p in t.results_by_partition
    }


def add_offsets_to_txn_request(version: int, *, transactional_id: str, producer_id: int, producer_epoch: int,
                               group_id: str) -> Any:
    m = _m(ApiKey.ADD_OFFSETS_TO_TXN, version)
    return build(m.AddOffsetsToTxnRequest, transactional_id=transactional_id, producer_id=producer_id,
                 producer_epoch=producer_epoch, group_id=group_id)


def end_txn_request(version: int, *, transactional_id: str, producer_id: int, producer_epoch: int,
                    commit: bool) -> Any:
    m = _m(ApiKey.END_TXN, version)
    return build(m.EndTxnRequest, transactional_id=transactional_id, producer_id=producer_id,
                 producer_epoch=producer_epoch, committed=commit)


def txn_offset_commit_request(
    version: int,
    *,
    transactional_id: str,
    group_id: str,
    producer_id: int,
    producer_epoch: int,
    generation_id: int,
    member_id: str,
    group_instance_id: str | None,
    offsets: Mapping[str, list[tuple[int, int, str | None]]],
) -> Any:
    """TxnOffsetCommit: ``offsets`` maps topic -> [(partition, offset, metadata)]; the
    group fields (v3+, KIP-447) let the coordinator refuse a zombie member's commit."""
    m = _m(ApiKey.TXN_OFFSET_COMMIT, version)
    return build(
        m.TxnOffsetCommitRequest,
        transactional_id=transactional_id,
        group_id=group_id,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        generation_id=generation_id,
        member_id=member_id,
        group_instance_id=group_instance_id,
        topics=[
            build(m.TxnOffsetCommitRequestTopic, name=topic, partitions=[
                build(m.TxnOffsetCommitRequestPartition, partition_index=p, committed_offset=o,
                      committed_leader_epoch=-1, committed_metadata=meta)
                for p, o, meta in parts
            ])
            for topic, parts in offsets.items()
        ],
    )


def list_transactions_request(version: int, *, states: Iterable[str] = (), producer_ids: Iterable[int] = (),
                              duration_ms: int = -1, pattern: str | None = None) -> Any:
    m = _m(ApiKey.LIST_TRANSACTIONS, version)
    return build(m.ListTransactionsRequest, state_filters=list(states), producer_id_filters=list(producer_ids),
                 duration_filter=duration_ms, transactional_id_pattern=pattern)


def describe_transactions_request(version: int, transactional_ids: Iterable[str]) -> Any:
    m = _m(ApiKey.DESCRIBE_TRANSACTIONS, version)
    return build(m.DescribeTransactionsRequest, transactional_ids=list(transactional_ids))


def describe_producers_request(version: int, partitions: Mapping[str, list[int]]) -> Any:
    m = _m(ApiKey.DESCRIBE_PRODUCERS, version)
    return build(m.DescribeProducersRequest, topics=[
        build(m.TopicRequest, name=t, partition_indexes=list(ps)) for t, ps in partitions.items()])


def write_txn_markers_request(version: int, *, producer_id: int, producer_epoch: int, commit: bool,
                              coordinator_epoch: int, partitions: Mapping[str, list[int]]) -> Any:
    """WriteTxnMarkers for one producer (what Kafka's admin sends to abort a hanging transaction)."""
    m = _m(ApiKey.WRITE_TXN_MARKERS, version)
    return build(m.WriteTxnMarkersRequest, markers=[
        build(m.WritableTxnMarker, producer_id=producer_id, producer_epoch=producer_epoch,
              transaction_result=commit, coordinator_epoch=coordinator_epoch,
              topics=[build(m.WritableTxnMarkerTopic, name=t, partition_indexes=list(ps))
                      for t, ps in partitions.items()]),
    ])


# -- groups ----------------------------------------------------------------------


def find_coordinator_request(version: int, key: str, key_type: int = 0) -> Any:
    m = _m(ApiKey.FIND_COORDINATOR, version)
    return build(m.FindCoordinatorRequest, key=key, key_type=key_type)


def join_group_request(
    version: int,
    *,
    group_id: str,
    member_id: str,
    group_instance_id: str | None,
    session_timeout_ms: int,
    rebalance_timeout_ms: int,
    protocol_type: str,
    protocols: list[tuple[str, bytes]],
) -> Any:
    m = _m(ApiKey.JOIN_GROUP, version)
    return build(
        m.JoinGroupRequest,
        group_id=group_id,
        session_timeout=session_timeout_ms,
        rebalance_timeout=rebalance_timeout_ms,
        member_id=member_id,
        group_instance_id=group_instance_id,
        protocol_type=protocol_type,
        protocols=[build(m.JoinGroupRequestProtocol, name=n, metadata=meta) for n, meta in protocols],
        reason=None,
    )


def sync_group_request(
    version: int,
    *,
    group_id: str,
    generation_id: int,
    member_id: str,
    group_instance_id: str | None,
    protocol_type: str,
    protocol_name: str,
    assignments: Mapping[str, bytes],
) -> Any:
    m = _m(ApiKey.SYNC_GROUP, version)
    return build(
        m.SyncGroupRequest,
        group_id=group_id,
        generation_id=generation_id,
        member_id=member_id,
        group_instance_id=group_instance_id,
        protocol_type=protocol_type,
        protocol_name=protocol_name,
        assignments=[build(m.SyncGroupRequestAssignment, member_id=k, assignment=v) for k, v in assignments.items()],
    )


def heartbeat_request(version: int, *, group_id: str, generation_id: int, member_id: str,
                      group_instance_id: str | None) -> Any:
    m = _m(ApiKey.HEARTBEAT, version)
    return build(
        m.HeartbeatRequest,
        group_id=group_id,
        generation_id=generation_id,
        member_id=member_id,
        group_instance_id=group_instance_id,
    )


def leave_group_request(version: int, *, group_id: str, member_id: str, group_instance_id: str | None) -> Any:
    m = _m(ApiKey.LEAVE_GROUP, version)
    members = []
    if version >= 3:
        members = [build(m.MemberIdentity, member_id=member_id, group_instance_id=group_instance_id,
                         reason="the consumer is closing")]
    return build(m.LeaveGroupRequest, group_id=group_id, member_id=member_id, members=members)


def offset_commit_request(
    version: int,
    *,
    group_id: str,
    generation_id: int,
    member_id: str,
    group_instance_id: str | None,
    offsets: Mapping[str, list[tuple[int, int, str | None]]],
) -> Any:
    """OffsetCommit: ``offsets`` maps topic -> [(partition, offset, metadata)].

    ``generation_id`` -1 with ``member_id`` "" commits for a group without
    members (what Kafka's reset tool does).
    """
    m = _m(ApiKey.OFFSET_COMMIT, version)
    return build(
        m.OffsetCommitRequest,
        group_id=group_id,
        generation_id_or_member_epoch=generation_id,
        member_id=member_id,
        group_instance_id=group_instance_id,
        retention_time=-1,
        topics=[
            build(
                m.OffsetCommitRequestTopic,
                name=topic,
                partitions=[
                    build(
                        m.OffsetCommitRequestPartition,
                        partition_index=p,
                        committed_offset=offset,
                        committed_leader_epoch=-1,
                        commit_timestamp=-1,
                        committed_metadata=meta,
                    )
                    for p, offset, meta in parts
                ],
            )
            for topic, parts in offsets.items()
        ],
    )


def offset_fetch_request(version: int, group_id: str, partitions: Mapping[str, list[int]] | None) -> Any:
    """OffsetFetch for ``partitions`` (topic -> [partition]); None asks for all (v2+)."""
    m = _m(ApiKey.OFFSET_FETCH, version)
    topics = None
    if partitions is not None:
        topics = [build(m.OffsetFetchRequestTopic, name=t, partition_indexes=list(ps)) for t, ps in partitions.items()]
    return build(m.OffsetFetchRequest, group_id=group_id, topics=topics, require_stable=False)


def list_groups_request(version: int, types: Iterable[str] = ()) -> Any:
    """ListGroups; ``types`` ("classic", "consumer", "share") filters by group type (v5+)."""
    m = _m(ApiKey.LIST_GROUPS, version)
    return build(m.ListGroupsRequest, states_filter=[], types_filter=list(types))


def describe_groups_request(version: int, group_ids: list[str]) -> Any:
    m = _m(ApiKey.DESCRIBE_GROUPS, version)
    return build(m.DescribeGroupsRequest, groups=list(group_ids), include_authorized_operations=False)


def consumer_group_describe_request(version: int, group_ids: list[str]) -> Any:
    m = _m(ApiKey.CONSUMER_GROUP_DESCRIBE, version)
    return build(m.ConsumerGroupDescribeRequest, group_ids=list(group_ids), include_authorized_operations=False)


def consumer_group_heartbeat_request(
    version: int,
    *,
    group_id: str,
    member_id: str,
    member_epoch: int,
    instance_id: str | None,
    rebalance_timeout_ms: int,
    subscribed_topic_names: Iterable[str] | None,
    subscribed_topic_regex: str | None,
    server_assignor: str | None,
    owned: Mapping[str, Iterable[int]] | None,
) -> Any:
    """ConsumerGroupHeartbeat (KIP-848). None (and -1 for the timeout) means "unchanged
    since the last heartbeat"; ``owned`` maps a topic id (UUID string) to partitions."""
    m = _m(ApiKey.CONSUMER_GROUP_HEARTBEAT, version)
    return build(
        m.ConsumerGroupHeartbeatRequest,
        group_id=group_id,
        member_id=member_id,
        member_epoch=member_epoch,
        instance_id=instance_id,
        rack_id=None,
        rebalance_timeout=rebalance_timeout_ms,
        subscribed_topic_names=None if subscribed_topic_names is None else list(subscribed_topic_names),
        subscribed_topic_regex=subscribed_topic_regex,
        server_assignor=server_assignor,
        topic_partitions=None if owned is None else [
            build(m.TopicPartitions, topic_id=uuid.UUID(topic_id), partitions=sorted(parts))
            for topic_id, parts in sorted(owned.items())
        ],
    )


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeatAnswer:
    """A ConsumerGroupHeartbeat answer: ``assignment`` maps topic id -> partitions,
    None when the answer carries none (the assignment did not change)."""

    error_code: int
    error_message: str | None
    member_id: str | None
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: dict[str, tuple[int, ...]] | None


def parse_consumer_group_heartbeat(body: Any) -> ConsumerHeartbeatAnswer:
    assignment = None
    if body.assignment is not None:
        assignment = {str(t.topic_id): tuple(sorted(t.partitions)) for t in body.assignment.topic_partitions}
    return ConsumerHeartbeatAnswer(
        error_code=int(body.error_code),
        error_message=body.error_message,
        member_id=body.member_id,
        member_epoch=int(body.member_epoch),
        heartbeat_interval_ms=ms(body.heartbeat_interval),
        assignment=assignment,
    )


def delete_groups_request(version: int, group_ids: list[str]) -> Any:
    m = _m(ApiKey.DELETE_GROUPS, version)
    return build(m.DeleteGroupsRequest, groups_names=list(group_ids))


def describe_share_group_offsets_request(version: int, group_id: str) -> Any:
    m = _m(ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, version)
    return build(m.DescribeShareGroupOffsetsRequest,
                 groups=[build(m.DescribeShareGroupOffsetsRequestGroup, group_id=group_id, topics=None)])


def alter_share_group_offsets_request(version: int, group_id: str, offsets: Mapping[str, list[tuple[int, int]]]) -> Any:
    """``offsets``: topic -> [(partition, new start offset)]."""
    m = _m(ApiKey.ALTER_SHARE_GROUP_OFFSETS, version)
    return build(m.AlterShareGroupOffsetsRequest, group_id=group_id, topics=[
        build(m.AlterShareGroupOffsetsRequestTopic, topic_name=topic, partitions=[
            build(m.AlterShareGroupOffsetsRequestPartition, partition_index=p, start_offset=o) for p, o in parts
        ])
        for topic, parts in offsets.items()
    ])


def read_share_group_state_request(version: int, group_id: str, partitions: Mapping[uuid.UUID, list[int]]) -> Any:
    m = _m(ApiKey.READ_SHARE_GROUP_STATE, version)
    return build(m.ReadShareGroupStateRequest, group_id=group_id, topics=[
        build(m.ReadStateData, topic_id=topic_id,
              partitions=[build(m.PartitionData, partition=p, leader_epoch=-1) for p in parts])
        for topic_id, parts in partitions.items()
    ])


# -- topics ----------------------------------------------------------------------


def create_topics_request(
    version: int,
    topics: list[tuple[str, int, int, Mapping[str, str]]],
    *,
    timeout_ms: int,
    validate_only: bool = False,
) -> Any:
    """CreateTopics: ``topics`` are (name, partitions, replication factor, configs); -1 = broker default."""
    m = _m(ApiKey.CREATE_TOPICS, version)
    return build(
        m.CreateTopicsRequest,
        topics=[
            build(
                m.CreatableTopic,
                name=name,
                num_partitions=partitions,
                replication_factor=rf,
                assignments=[],
                configs=[build(m.CreatableTopicConfig, name=k, value=v) for k, v in configs.items()],
            )
            for name, partitions, rf, configs in topics
        ],
        timeout=timeout_ms,
        validate_only=validate_only,
    )


def delete_topics_request(version: int, names: list[str], *, timeout_ms: int) -> Any:
    m = _m(ApiKey.DELETE_TOPICS, version)
    states = []
    if version >= 6:
        states = [build(m.DeleteTopicState, name=n, topic_id=_NULL_UUID) for n in names]
    return build(m.DeleteTopicsRequest, topic_names=list(names), topics=states, timeout=timeout_ms)


def create_partitions_request(version: int, counts: Mapping[str, int], *, timeout_ms: int) -> Any:
    m = _m(ApiKey.CREATE_PARTITIONS, version)
    return build(
        m.CreatePartitionsRequest,
        topics=[build(m.CreatePartitionsTopic, name=n, count=c, assignments=None) for n, c in counts.items()],
        timeout=timeout_ms,
        validate_only=False,
    )


def describe_configs_request(version: int, names: list[str], resource_type: int = TOPIC_RESOURCE,
                             keys: list[str] | None = None) -> Any:
    """Configs of each of ``names``: only ``keys`` if given, else every config."""
    m = _m(ApiKey.DESCRIBE_CONFIGS, version)
    return build(
        m.DescribeConfigsRequest,
        resources=[
            build(m.DescribeConfigsResource, resource_type=resource_type, resource_name=n,
                  configuration_keys=None if keys is None else tuple(keys))
            for n in names
        ],
        include_synonyms=False,
        include_documentation=False,
    )


def incremental_alter_configs_request(version: int, name: str, configs: Mapping[str, str | None],
                                      resource_type: int = TOPIC_RESOURCE) -> Any:
    """Set (value) or delete (None) each of ``configs`` on the topic (or group) ``name``."""
    m = _m(ApiKey.INCREMENTAL_ALTER_CONFIGS, version)
    return build(
        m.IncrementalAlterConfigsRequest,
        resources=[
            build(
                m.AlterConfigsResource,
                resource_type=resource_type,
                resource_name=name,
                configs=[
                    build(m.AlterableConfig, name=k, config_operation=0 if v is not None else 1, value=v)
                    for k, v in configs.items()
                ],
            )
        ],
        validate_only=False,
    )


def delete_records_request(version: int, offsets: Mapping[str, list[tuple[int, int]]], *, timeout_ms: int) -> Any:
    m = _m(ApiKey.DELETE_RECORDS, version)
    return build(
        m.DeleteRecordsRequest,
        topics=[
            build(
                m.DeleteRecordsTopic,
                name=t,
                partitions=[build(m.DeleteRecordsPartition, partition_index=p, offset=o) for p, o in parts],
            )
            for t, parts in offsets.items()
        ],
        timeout=timeout_ms,
    )


def describe_log_dirs_request(version: int, topics: Mapping[str, list[int]] | None) -> Any:
    """DescribeLogDirs of ``topics`` (topic -> [partition]); None asks for every partition."""
    m = _m(ApiKey.DESCRIBE_LOG_DIRS, version)
    wanted = None
    if topics is not None:
        wanted = [build(m.DescribableLogDirTopic, topic=t, partitions=list(ps)) for t, ps in topics.items()]
    return build(m.DescribeLogDirsRequest, topics=wanted)


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return f"error {code}"
