"""Consumer groups: the group coordinator (classic groups and KIP-848
consumer groups) and the offsets it stores.

The coordinator is a state machine with time as a parameter
(:class:`GroupCoordinator`); its state is persisted to, and replayed from,
the internal topic ``__consumer_offsets`` (:class:`OffsetsTopic`, record
format in :mod:`.records`).
"""

from logbroker.broker.groups.config import GroupConfig as GroupConfig
from logbroker.broker.groups.consumer_commands import ConsumerGroups as ConsumerGroups
from logbroker.broker.groups.coordinator import (
    NEW_MEMBER_JOIN_TIMEOUT_MS as NEW_MEMBER_JOIN_TIMEOUT_MS,
    GroupCoordinator as GroupCoordinator,
)
from logbroker.broker.groups.consumer_group import TopicMeta as TopicMeta
from logbroker.broker.groups.offsets import OffsetStore as OffsetStore
from logbroker.broker.groups.offsets_log_format import OffsetValue as OffsetValue
from logbroker.broker.groups.registry import GroupRegistry as GroupRegistry
from logbroker.broker.groups.results import (
    CommitRequest as CommitRequest,
    CommitResult as CommitResult,
    ConsumerGroupDescription as ConsumerGroupDescription,
    ConsumerHeartbeat as ConsumerHeartbeat,
    ConsumerHeartbeatResult as ConsumerHeartbeatResult,
    ConsumerMemberDescription as ConsumerMemberDescription,
    CoordinatorStatistics as CoordinatorStatistics,
    FetchResult as FetchResult,
    GroupOutcome as GroupOutcome,
    GroupSummary as GroupSummary,
    JoinedMember as JoinedMember,
    JoinRequest as JoinRequest,
    JoinResult as JoinResult,
    LeaveResult as LeaveResult,
    ListedGroup as ListedGroup,
    MemberSummary as MemberSummary,
    OffsetDeleteResult as OffsetDeleteResult,
    SyncResult as SyncResult,
)
from logbroker.broker.groups.server_assignors import ASSIGNORS as ASSIGNORS
from logbroker.broker.groups.state import Group as Group, GroupState as GroupState
from logbroker.broker.groups.store import (
    OFFSETS_TOPIC as OFFSETS_TOPIC,
    FlushPoint as FlushPoint,
    OffsetsTopic as OffsetsTopic,
)
