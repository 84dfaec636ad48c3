"""What the group coordinator takes and answers: frozen commands and results.

The coordinator speaks no protocol: :class:`GroupOutcome` names each outcome
after the Kafka error code the handlers send (``GroupOutcome.X.value`` is the
name of the ``ErrorCode`` member), so the one mapping lives in
``broker/handlers/groups.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from logbroker.broker.groups.offsets_log_format import OffsetValue


class GroupOutcome(enum.Enum):
    NONE = "none"
    COORDINATOR_LOAD_IN_PROGRESS = "coordinator_load_in_progress"
    COORDINATOR_NOT_AVAILABLE = "coordinator_not_available"
    NOT_COORDINATOR = "not_coordinator"
    ILLEGAL_GENERATION = "illegal_generation"
    INCONSISTENT_GROUP_PROTOCOL = "inconsistent_group_protocol"
    INVALID_GROUP_ID = "invalid_group_id"
    UNKNOWN_MEMBER_ID = "unknown_member_id"
    INVALID_SESSION_TIMEOUT = "invalid_session_timeout"
    REBALANCE_IN_PROGRESS = "rebalance_in_progress"
    MEMBER_ID_REQUIRED = "member_id_required"
    FENCED_INSTANCE_ID = "fenced_instance_id"
    GROUP_ID_NOT_FOUND = "group_id_not_found"
    NON_EMPTY_GROUP = "non_empty_group"
    GROUP_SUBSCRIBED_TO_TOPIC = "group_subscribed_to_topic"
    OFFSET_METADATA_TOO_LARGE = "offset_metadata_too_large"
    INVALID_COMMIT_OFFSET_SIZE = "invalid_commit_offset_size"
    UNSTABLE_OFFSET_COMMIT = "unstable_offset_commit"
    UNKNOWN_SERVER_ERROR = "unknown_server_error"
    # KIP-848 consumer groups
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_ASSIGNOR = "unsupported_assignor"
    UNRELEASED_INSTANCE_ID = "unreleased_instance_id"
    FENCED_MEMBER_EPOCH = "fenced_member_epoch"
    STALE_MEMBER_EPOCH = "stale_member_epoch"
    INVALID_REGULAR_EXPRESSION = "invalid_regular_expression"
    GROUP_MAX_SIZE_REACHED = "group_max_size_reached"
    UNSUPPORTED_VERSION = "unsupported_version"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """One JoinGroup. ``member_id`` "" means a new member; ``require_known_member_id``
    (JoinGroup v4+) makes a new dynamic member take the MEMBER_ID_REQUIRED round trip."""

    group_id: str
    member_id: str
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    group_instance_id: str | None = None
    require_known_member_id: bool = False
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The JoinGroup answer; ``members`` is filled for the leader only."""

    error: GroupOutcome
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[JoinedMember, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: GroupOutcome
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveResult:
    """``members``: (member_id, group_instance_id, error) in request order."""

    error: GroupOutcome
    members: tuple[tuple[str, str | None, GroupOutcome], ...] = ()


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """One OffsetCommit; ``offsets`` maps (topic, partition) to the value to store
    (its commit and expire timestamps are filled in by the coordinator).
    ``generation`` is the member epoch for a consumer group (OffsetCommit v9);
    ``api_version`` None means "not an OffsetCommit request" (tools)."""

    group_id: str
    generation: int
    member_id: str
    offsets: dict[tuple[str, int], OffsetValue]
    group_instance_id: str | None = None
    retention_ms: int = -1
    api_version: int | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """Per-partition errors, and where to fsync to make the commit durable (None: nothing written)."""

    errors: dict[tuple[str, int], GroupOutcome]
    flush: object | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """``offsets``: (topic, partition) -> committed value, or None where nothing is committed."""

    error: GroupOutcome
    offsets: dict[tuple[str, int], OffsetValue | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """DescribeGroups' view; metadata and assignments only when Stable (as Kafka)."""

    group_id: str
    error: GroupOutcome
    state: str
    protocol_type: str = ""
    protocol_name: str = ""
    members: tuple[MemberSummary, ...] = ()


@dataclass(frozen=True, slots=True)
class ListedGroup:
    """``group_type``: "classic" or "consumer" (KIP-848), as ListGroups v5 names them."""

    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


@dataclass(frozen=True, slots=True)
class OffsetDeleteResult:
    error: GroupOutcome
    partitions: dict[tuple[str, int], GroupOutcome] = field(default_factory=dict)
    flush: object | None = None


# -- KIP-848 consumer groups --------------------------------------------------------

TopicAssignment = tuple[tuple[str, tuple[int, ...]], ...]
"""((topic name, sorted partitions), ...) sorted by topic name."""


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeat:
    """One ConsumerGroupHeartbeat. Fields that are None were not sent (the
    client sends only what changed); ``owned`` are the partitions the member
    says it owns, by topic name (None: not sent)."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_names: tuple[str, ...] | None = None
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    owned: dict[str, frozenset[int]] | None = None
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeatResult:
    """The answer; ``assignment`` is None when it is not sent (unchanged)."""

    error: GroupOutcome
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = -1
    heartbeat_interval_ms: int = 0
    assignment: TopicAssignment | None = None


@dataclass(frozen=True, slots=True)
class ConsumerMemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_names: tuple[str, ...]
    subscribed_regex: str | None
    assignment: TopicAssignment
    target_assignment: TopicAssignment
    state: str = "stable"


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    """ConsumerGroupDescribe's view of one group (``error`` GROUP_ID_NOT_FOUND
    for an unknown group or one of another type, with Kafka's message)."""

    group_id: str
    error: GroupOutcome
    message: str | None = None
    state: str = ""
    group_epoch: int = -1
    assignment_epoch: int = -1
    assignor: str = ""
    members: tuple[ConsumerMemberDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class CoordinatorStatistics:
    groups: int
    members: int
    offsets: int
    log_records: int
