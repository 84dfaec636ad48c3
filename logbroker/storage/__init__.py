"""Storage engine: segments, indexes, partition logs, recovery, log manager."""

from logbroker.storage.config import (
    TOPIC_CONFIG_DEFAULTS as TOPIC_CONFIG_DEFAULTS,
    FlushMode as FlushMode,
    LogConfig as LogConfig,
    LogManagerConfig as LogManagerConfig,
)
from logbroker.storage.loader import PartitionRecovery as PartitionRecovery
from logbroker.storage.partition import (
    AppendInfo as AppendInfo,
    PartitionLog as PartitionLog,
    ReadResult as ReadResult,
    SegmentInfo as SegmentInfo,
)
from logbroker.storage.manager import (
    LogManager as LogManager,
    RecoveryReport as RecoveryReport,
    TopicInfo as TopicInfo,
    validate_topic_name as validate_topic_name,
)
