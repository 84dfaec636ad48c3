"""Share groups (KIP-932): queues on top of the log.

The coordinator (:class:`ShareCoordinator`) is a state machine with time as
a parameter: membership and the simple assignment, share sessions, and per
share-partition the in-flight window of record states (:class:`SharePartition`,
numpy columns, batch-level). Its state is persisted to, and replayed from, the
internal topic ``__share_group_state`` (:class:`ShareStateTopic`, record
format in :mod:`.records`); rejected or exhausted records can be copied to a
dead-letter topic (:mod:`.dlq`).
"""

from logbroker.broker.share.config import (
    DELIVERY_COUNT_LIMIT as DELIVERY_COUNT_LIMIT,
    DLQ_COPY_RECORD as DLQ_COPY_RECORD,
    DLQ_TOPIC as DLQ_TOPIC,
    GROUP_CONFIG_DEFAULTS as GROUP_CONFIG_DEFAULTS,
    LOCK_DURATION as LOCK_DURATION,
    GroupSettings as GroupSettings,
    ShareConfig as ShareConfig,
)
from logbroker.broker.share.coordinator import ShareCoordinator as ShareCoordinator
from logbroker.broker.share.dlq import (
    DLQ_HEADERS as DLQ_HEADERS,
    HEADER_GROUP as HEADER_GROUP,
    HEADER_PARTITION as HEADER_PARTITION,
    HEADER_TOPIC as HEADER_TOPIC,
)
from logbroker.broker.share.partition import (
    ACK_ACCEPT as ACK_ACCEPT,
    ACK_GAP as ACK_GAP,
    ACK_REJECT as ACK_REJECT,
    ACK_RELEASE as ACK_RELEASE,
    ACK_RENEW as ACK_RENEW,
    ACKNOWLEDGED as ACKNOWLEDGED,
    ACQUIRED as ACQUIRED,
    ARCHIVED as ARCHIVED,
    AVAILABLE as AVAILABLE,
    AcquiredRange as AcquiredRange,
    SharePartition as SharePartition,
)
from logbroker.broker.share.registry import ShareRegistry as ShareRegistry
from logbroker.broker.share.results import (
    ConfigDescription as ConfigDescription,
    GroupDescription as GroupDescription,
    HeartbeatRequest as HeartbeatRequest,
    HeartbeatResult as HeartbeatResult,
    ListedShareGroup as ListedShareGroup,
    MemberDescription as MemberDescription,
    PartitionData as PartitionData,
    SessionResult as SessionResult,
    ShareError as ShareError,
    SharePartitionCounts as SharePartitionCounts,
    ShareStatistics as ShareStatistics,
    Written as Written,
)
from logbroker.broker.share.sessions import (
    FINAL_EPOCH as FINAL_EPOCH,
    INITIAL_EPOCH as INITIAL_EPOCH,
    ShareSession as ShareSession,
)
from logbroker.broker.share.state import ShareState as ShareState
from logbroker.broker.share.store import SHARE_STATE_TOPIC as SHARE_STATE_TOPIC, ShareStateTopic as ShareStateTopic
