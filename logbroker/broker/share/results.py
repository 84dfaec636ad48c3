"""What the share coordinator takes and answers: frozen commands and results.

The coordinator speaks no protocol: :class:`ShareError` names each outcome
after the Kafka error code the handlers send (``ShareError.X.value`` is the
name of the ``ErrorCode`` member), so the one mapping lives in
``broker/handlers/share.py``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from logbroker.broker.share.partition import AcquiredRange


class ShareError(enum.Enum):
    NONE = "none"
    COORDINATOR_LOAD_IN_PROGRESS = "coordinator_load_in_progress"
    NOT_COORDINATOR = "not_coordinator"
    COORDINATOR_NOT_AVAILABLE = "coordinator_not_available"
    INVALID_REQUEST = "invalid_request"
    GROUP_ID_NOT_FOUND = "group_id_not_found"
    NON_EMPTY_GROUP = "non_empty_group"
    OFFSET_OUT_OF_RANGE = "offset_out_of_range"
    GROUP_MAX_SIZE_REACHED = "group_max_size_reached"
    UNKNOWN_MEMBER_ID = "unknown_member_id"
    FENCED_MEMBER_EPOCH = "fenced_member_epoch"
    SHARE_SESSION_NOT_FOUND = "share_session_not_found"
    INVALID_SHARE_SESSION_EPOCH = "invalid_share_session_epoch"
    INVALID_RECORD_STATE = "invalid_record_state"
    UNKNOWN_TOPIC_OR_PARTITION = "unknown_topic_or_partition"
    UNKNOWN_TOPIC_ID = "unknown_topic_id"
    KAFKA_STORAGE_ERROR = "kafka_storage_error"
    INVALID_CONFIG = "invalid_config"
    UNKNOWN_SERVER_ERROR = "unknown_server_error"


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    """One ShareGroupHeartbeat. ``subscribed`` None means "unchanged"."""

    group_id: str
    member_id: str
    member_epoch: int
    subscribed: tuple[str, ...] | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """``assignment`` is None when unchanged since the member last heard it;
    otherwise ``(topic_id, topic name, partitions)`` for every assigned topic."""

    error: ShareError
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: tuple[tuple[uuid.UUID, str, tuple[int, ...]], ...] | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed: tuple[str, ...]
    assignment: tuple[tuple[uuid.UUID, str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """ShareGroupDescribe's (and DescribeGroups') view of one group."""

    group_id: str
    error: ShareError
    state: str = "Dead"
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: tuple[MemberDescription, ...] = ()
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ListedShareGroup:
    group_id: str
    state: str


@dataclass(frozen=True, slots=True)
class SessionResult:
    """The outcome of the share-session part of a ShareFetch/ShareAcknowledge."""

    error: ShareError
    partitions: tuple[tuple[str, int], ...] = ()
    """The session's partitions after this request (for a fetch)."""
    message: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionData:
    """What one share-partition contributes to a ShareFetch response."""

    topic: str
    partition: int
    error: ShareError = ShareError.NONE
    records: object = b""
    acquired: tuple[AcquiredRange, ...] = ()
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigDescription:
    """One group config as DescribeConfigs reports it."""

    name: str
    value: str
    is_default: bool


@dataclass(frozen=True, slots=True)
class ShareStatistics:
    groups: int
    members: int
    partitions: int
    sessions: int
    in_flight: int
    log_records: int


@dataclass(frozen=True, slots=True)
class SharePartitionCounts:
    """Where one share-partition stands: its window ``[start_offset, end_offset)``,
    the records in it by state, and the records acknowledged and archived
    since the broker started."""

    start_offset: int
    end_offset: int
    available: int
    in_flight: int
    acknowledged: int
    archived: int
    acknowledged_total: int
    archived_total: int


@dataclass(slots=True)
class Written:
    """Where a command's writes went: fsync points of the internal topic and the
    (topic, partition) pairs that grew (dead-letter topics), to wake fetches;
    ``available`` names share-partitions whose records became available again;
    ``failed``: the state could not be written (it is retried as snapshots), so
    nothing the command changed may be confirmed as durable."""

    flush: list = field(default_factory=list)
    appended: list = field(default_factory=list)
    available: list = field(default_factory=list)
    failed: bool = False
