"""The values the client hands out: partitions, delivery results, records, metadata.

All are frozen (docs/contributing.md, convention 7). :class:`ConsumerRecord` is a named tuple
rather than a dataclass: the consumer makes one per record, and a tuple is
cheaper to make and to garbage-collect.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "BrokerInfo",
    "ClusterMetadata",
    "ConsumerGroupDescription",
    "ConsumerGroupMemberDescription",
    "ConsumerGroupMetadata",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "MemberDescription",
    "NewTopic",
    "OffsetAndTimestamp",
    "PartitionInfo",
    "ProducerDescription",
    "RecordMetadata",
    "TopicDescription",
    "TopicInfo",
    "TopicPartition",
    "TransactionDescription",
    "TransactionListing",
]


class TopicPartition(NamedTuple):
    """A (topic, partition) pair; a plain tuple, so ``("t", 0)`` works too."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a produced record landed: its offset is -1 with ``acks=0``.

    ``timestamp`` is the record's create time in ms, or the broker's append
    time when the topic uses LogAppendTime.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConsumerRecord(NamedTuple):
    """One consumed record. Header names are str; key, value and header values bytes or None.

    A named tuple: immutable, cheap to make, and (holding only atomic values)
    not tracked by the garbage collector.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def datetime(self) -> datetime.datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.timestamp / 1000, tz=datetime.UTC)


@dataclass(frozen=True, slots=True)
class OffsetAndTimestamp:
    """A ListOffsets answer: the offset, and the timestamp of that record (-1 if unknown)."""

    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition in a Metadata answer. ``leader`` is -1 while there is none."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic in a Metadata answer; ``partitions`` are sorted by index."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    error_code: int = 0
    topic_id: str | None = None
    internal: bool = False


@dataclass(frozen=True, slots=True)
class ClusterMetadata:
    """A snapshot of the cluster: brokers by node id and the topics asked about."""

    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    controller_id: int = -1
    cluster_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewTopic:
    """A topic for :meth:`Admin.create_topics`; -1 lets the broker choose."""

    name: str
    partitions: int = -1
    replication_factor: int = -1
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic with its partitions and (when asked for) its non-default configs."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    topic_id: str | None = None
    internal: bool = False
    configs: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupListing:
    """A listed group. ``group_type`` is "classic", "consumer" or "share" (ListGroups v5+;
    "" from older brokers); ``protocol_type`` is the classic protocol type ("consumer"...)."""

    group_id: str
    protocol_type: str
    state: str = ""
    group_type: str = ""

    @property
    def kind(self) -> str:
        """classic, consumer or share; brokers before ListGroups v5 do not say,
        and then only share groups are told apart (by their protocol type)."""
        if self.group_type:
            return self.group_type
        return "share" if self.protocol_type == "share" else "classic"


@dataclass(frozen=True, slots=True)
class SharePartitionProgress:
    """Where a share group stands on one partition.

    ``start_offset`` is the share-partition start offset (every record below
    it is acknowledged or archived); ``lag`` counts records up to the log end
    not yet acknowledged or archived: ``in_flight`` of them are acquired by a
    consumer now, ``available`` wait for (re)delivery. ``acknowledged`` and
    ``archived`` count the records in those states in the in-flight window
    ``[start_offset, start_offset + window)`` (below it every record is one
    or the other). ``-1`` where the group has no state for the partition yet.
    """

    topic: str
    partition: int
    start_offset: int
    log_end: int
    lag: int
    in_flight: int = 0
    available: int = 0
    acknowledged: int = 0
    archived: int = 0
    window: int = 0


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """A member of a described group; ``assignment`` is decoded for consumer groups."""

    member_id: str
    client_id: str
    client_host: str
    group_instance_id: str | None = None
    assignment: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberDescription:
    """A member of a consumer group under KIP-848 (ConsumerGroupDescribe): what it subscribes
    to, the partitions it owns now (``assignment``) and those the group means it to own
    (``target_assignment``; they differ while a rebalance moves partitions)."""

    member_id: str
    member_epoch: int
    client_id: str
    client_host: str
    instance_id: str | None = None
    rack_id: str | None = None
    subscribed_topics: tuple[str, ...] = ()
    subscribed_regex: str | None = None
    assignment: tuple[TopicPartition, ...] = ()
    target_assignment: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    """A consumer group under KIP-848 (ConsumerGroupDescribe). ``group_epoch`` counts the
    group's changes, ``assignment_epoch`` is the epoch of its target assignment (behind
    ``group_epoch`` while the assignor has not caught up); ``assignor`` is the server-side
    assignor it uses."""

    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: tuple[ConsumerGroupMemberDescription, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class LogDirDescription:
    """One log directory of one broker (DescribeLogDirs): its path, the volume's
    total and usable bytes (-1 when the broker does not say) and the size in
    bytes of each partition in it."""

    broker: int
    path: str
    sizes: dict[TopicPartition, int] = field(default_factory=dict)
    total_bytes: int = -1
    usable_bytes: int = -1
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadata:
    """What a transactional producer needs of a consumer to commit its offsets in a
    transaction (KIP-447): ``consumer.group_metadata()`` gives it to
    ``producer.send_offsets_to_transaction``. The group coordinator refuses the
    commit if the member was evicted or the generation moved on."""

    group_id: str
    generation_id: int = -1
    member_id: str = ""
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionListing:
    """One transactional id as ListTransactions reports it."""

    transactional_id: str
    producer_id: int
    state: str


@dataclass(frozen=True, slots=True)
class TransactionDescription:
    """One transactional id as DescribeTransactions reports it: its state, producer,
    timeout, start time (epoch ms, -1 when none is open) and the partitions of the
    open transaction. ``error_code`` is non-zero for an id the coordinator does not know."""

    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    start_time_ms: int
    partitions: tuple[TopicPartition, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class ProducerDescription:
    """A producer active on a partition (DescribeProducers): its epoch, last sequence and
    timestamp, the coordinator epoch of its last marker and the first offset of its
    open transaction (-1 when none is open)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int
