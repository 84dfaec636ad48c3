"""The API versions the client implements, and the choice among a broker's.

For each key the client picks the highest version inside both its own range
and the broker's (ApiVersions), as librdkafka does. The ranges stop below the
versions that change semantics we do not implement: Fetch v13+ and
Metadata v13 (topic ids), FindCoordinator v4+ (batched keys), OffsetFetch v8+
(batched groups), ListOffsets v8+ (tiered storage), AddPartitionsToTxn v4+
(the broker-to-broker form), EndTxn v5 and TxnOffsetCommit v5 (transaction
version 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from logbroker.protocol import ApiKey

__all__ = ["CLIENT_VERSIONS", "negotiate"]

CLIENT_VERSIONS: Final[Mapping[ApiKey, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.API_VERSIONS: (0, 3),
        ApiKey.METADATA: (1, 12),
        ApiKey.PRODUCE: (3, 9),
        ApiKey.FETCH: (4, 12),
        ApiKey.LIST_OFFSETS: (1, 7),
        ApiKey.INIT_PRODUCER_ID: (0, 4),
        ApiKey.FIND_COORDINATOR: (0, 3),
        ApiKey.JOIN_GROUP: (1, 7),
        ApiKey.SYNC_GROUP: (0, 5),
        ApiKey.HEARTBEAT: (0, 4),
        ApiKey.LEAVE_GROUP: (0, 5),
        ApiKey.OFFSET_COMMIT: (2, 9),
        ApiKey.OFFSET_FETCH: (1, 7),
        ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.DESCRIBE_GROUPS: (0, 5),
        ApiKey.DELETE_GROUPS: (0, 2),
        ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),
        ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
        ApiKey.CREATE_TOPICS: (2, 7),
        ApiKey.DELETE_TOPICS: (1, 6),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.DESCRIBE_CONFIGS: (1, 4),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        ApiKey.DELETE_RECORDS: (0, 2),
        ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
        ApiKey.SHARE_GROUP_HEARTBEAT: (1, 1),
        ApiKey.SHARE_GROUP_DESCRIBE: (1, 1),
        ApiKey.SHARE_FETCH: (1, 2),
        ApiKey.SHARE_ACKNOWLEDGE: (1, 2),
        ApiKey.READ_SHARE_GROUP_STATE: (0, 0),
        ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: (0, 1),
        ApiKey.ALTER_SHARE_GROUP_OFFSETS: (0, 0),
        ApiKey.ADD_PARTITIONS_TO_TXN: (0, 3),
        ApiKey.ADD_OFFSETS_TO_TXN: (0, 4),
        ApiKey.END_TXN: (0, 4),
        ApiKey.TXN_OFFSET_COMMIT: (0, 4),
        ApiKey.WRITE_TXN_MARKERS: (1, 1),
        ApiKey.DESCRIBE_PRODUCERS: (0, 0),
        ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
        ApiKey.LIST_TRANSACTIONS: (0, 2),
    }
)
"""ApiKey -> (lowest, highest) version this client can encode and understand."""


def negotiate(
    broker_ranges: Iterable[tuple[int, int, int]],
    ours: Mapping[ApiKey, tuple[int, int]] = CLIENT_VERSIONS,
) -> dict[ApiKey, int]:
    """Return ApiKey -> the version to use, from ``(key, min, max)`` rows of ApiVersions.

    A key is left out when the ranges do not overlap or the broker lacks it.
    """
    chosen: dict[ApiKey, int] = {}
    for key, lo, hi in broker_ranges:
        mine = ours.get(key)  # type: ignore[call-overload]  # an int finds its ApiKey (IntEnum hashes as int)
        if mine is None:
            continue
        top = min(hi, mine[1])
        if top >= max(lo, mine[0]):
            chosen[ApiKey(key)] = top
    return chosen
