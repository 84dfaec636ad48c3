"""Storage engine: segments, indexes, partition logs, recovery, the log manager.

Synchronous and protocol-agnostic: it imports only ``logbroker.records`` and
``logbroker.errors``. Byte layouts are in docs/on-disk-format.md, flush modes
and crash behaviour in docs/durability.md.
"""

from logbroker.storage.config import (
    DEFAULT_DIR_MODE as DEFAULT_DIR_MODE,
    DEFAULT_FILE_MODE as DEFAULT_FILE_MODE,
    TOPIC_CONFIG_DEFAULTS as TOPIC_CONFIG_DEFAULTS,
    FlushMode as FlushMode,
    LogConfig as LogConfig,
    LogManagerConfig as LogManagerConfig,
)
from logbroker.storage.damage import DamagedBatch as DamagedBatch, LostRange as LostRange
from logbroker.storage.files import write_atomically as write_atomically
from logbroker.storage.index import OffsetIndex as OffsetIndex, TimeIndex as TimeIndex
from logbroker.storage.loader import PartitionRecovery as PartitionRecovery
from logbroker.storage.manager import (
    MAX_PARTITIONS as MAX_PARTITIONS,
    LogManager as LogManager,
    RecoveryReport as RecoveryReport,
    TopicInfo as TopicInfo,
    validate_topic_name as validate_topic_name,
)
from logbroker.storage.partition import (
    AppendInfo as AppendInfo,
    PartitionLog as PartitionLog,
    ReadResult as ReadResult,
    SegmentInfo as SegmentInfo,
)
from logbroker.storage.repair import (
    PartitionRepair as PartitionRepair,
    RepairReport as RepairReport,
    repair_data_dir as repair_data_dir,
)
from logbroker.storage.segment import LogSegment as LogSegment
from logbroker.storage.txnindex import AbortedTxn as AbortedTxn, TxnIndexes as TxnIndexes

__all__ = [
    "AbortedTxn",
    "TxnIndexes",
    "DEFAULT_DIR_MODE",
    "DEFAULT_FILE_MODE",
    "TOPIC_CONFIG_DEFAULTS",
    "AppendInfo",
    "DamagedBatch",
    "FlushMode",
    "LogConfig",
    "LogManager",
    "LogManagerConfig",
    "LogSegment",
    "LostRange",
    "OffsetIndex",
    "PartitionLog",
    "PartitionRepair",
    "PartitionRecovery",
    "ReadResult",
    "RecoveryReport",
    "RepairReport",
    "SegmentInfo",
    "TimeIndex",
    "TopicInfo",
    "repair_data_dir",
    "validate_topic_name",
    "MAX_PARTITIONS",
    "write_atomically",
]
