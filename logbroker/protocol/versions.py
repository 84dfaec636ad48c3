"""The API keys logbroker names and the one table of versions it can decode.

:data:`SUPPORTED_VERSIONS` is the single source of truth for "which (key,
version) pairs does the protocol layer accept". Handlers land over time, so the
server advertises (and accepts) a subset chosen by ``enabled_keys``; see
:func:`api_versions_entries` and :func:`is_enabled`. ApiVersions itself is
always enabled, because version negotiation needs it.

Every range is checked against kio 0.6.5's schemas by the tests, except the
old versions KIP-896 removed, which :mod:`.legacy` decodes (Produce v0-2,
Fetch v0-3, ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0). The ranges
follow the client survey in the project's Kafka research notes (§1: aiokafka
sets the floors, no classic API requires a flexible version); DescribeConfigs
starts at v1 because kio 0.6.5 has no v0.
"""

from __future__ import annotations

import enum

from collections.abc import Iterable
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "ApiKey",
    "SUPPORTED_VERSIONS",
    "api_versions_entries",
    "enabled_versions",
    "is_enabled",
]


class ApiKey(enum.IntEnum):
    """Kafka API keys that logbroker serves (values are the wire numbers)."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    WRITE_TXN_MARKERS = 27
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    SASL_AUTHENTICATE = 36
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69
    DESCRIBE_TOPIC_PARTITIONS = 75
    SHARE_GROUP_HEARTBEAT = 76
    SHARE_GROUP_DESCRIBE = 77
    SHARE_FETCH = 78
    SHARE_ACKNOWLEDGE = 79
    READ_SHARE_GROUP_STATE = 84
    DESCRIBE_SHARE_GROUP_OFFSETS = 90
    ALTER_SHARE_GROUP_OFFSETS = 91


SUPPORTED_VERSIONS: Final[Mapping[ApiKey, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.SASL_HANDSHAKE: (1, 1),
        ApiKey.API_VERSIONS: (0, 4),
        ApiKey.SASL_AUTHENTICATE: (0, 2),
        ApiKey.METADATA: (0, 12),
        ApiKey.PRODUCE: (0, 9),  # the versions kio lacks (KIP-896) are legacy.py's
        ApiKey.FETCH: (0, 12),
        ApiKey.LIST_OFFSETS: (0, 7),
        ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 4),
        ApiKey.DESCRIBE_CLUSTER: (0, 1),
        ApiKey.CREATE_TOPICS: (2, 7),
        ApiKey.DELETE_TOPICS: (1, 6),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.DESCRIBE_CONFIGS: (1, 4),  # kio 0.6.5 has no v0
        ApiKey.ALTER_CONFIGS: (0, 2),
        ApiKey.DESCRIBE_LOG_DIRS: (1, 4),  # kio 0.6.5 has no v0; v5 adds directory cordoning
        ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        ApiKey.DELETE_RECORDS: (0, 2),
        # Admin (kio 0.6.5 has no v0 of the ACL APIs; Kafka 4 dropped it).
        ApiKey.DESCRIBE_ACLS: (1, 3),
        ApiKey.CREATE_ACLS: (1, 3),
        ApiKey.DELETE_ACLS: (1, 3),
        ApiKey.ELECT_LEADERS: (0, 2),
        ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
        ApiKey.DESCRIBE_TOPIC_PARTITIONS: (0, 0),
        # Transactions: the transaction-version-1 protocol (EndTxn/TxnOffsetCommit
        # v5 and Produce v12 are TV2's; InitProducerId v6 is two-phase commit).
        ApiKey.INIT_PRODUCER_ID: (0, 5),
        ApiKey.ADD_PARTITIONS_TO_TXN: (0, 5),
        ApiKey.ADD_OFFSETS_TO_TXN: (0, 4),
        ApiKey.END_TXN: (0, 4),
        ApiKey.TXN_OFFSET_COMMIT: (0, 4),
        ApiKey.WRITE_TXN_MARKERS: (1, 2),  # kio has no v0 (Kafka 4 dropped it)
        ApiKey.DESCRIBE_PRODUCERS: (0, 0),
        ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
        ApiKey.LIST_TRANSACTIONS: (0, 2),
        ApiKey.FIND_COORDINATOR: (0, 4),
        ApiKey.JOIN_GROUP: (0, 7),
        ApiKey.SYNC_GROUP: (0, 5),
        ApiKey.HEARTBEAT: (0, 4),
        ApiKey.LEAVE_GROUP: (0, 5),
        ApiKey.OFFSET_COMMIT: (0, 9),
        ApiKey.OFFSET_FETCH: (0, 9),
        ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.DESCRIBE_GROUPS: (0, 5),
        ApiKey.DELETE_GROUPS: (0, 2),
        ApiKey.OFFSET_DELETE: (0, 0),
        # KIP-848 consumer groups (v1: the client makes its member id).
        ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),
        ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
        # Share groups (KIP-932): flexible-only; v2 of ShareFetch/ShareAcknowledge adds Renew.
        ApiKey.SHARE_GROUP_HEARTBEAT: (1, 1),
        ApiKey.SHARE_GROUP_DESCRIBE: (1, 1),
        ApiKey.SHARE_FETCH: (1, 2),
        ApiKey.SHARE_ACKNOWLEDGE: (1, 2),
        ApiKey.READ_SHARE_GROUP_STATE: (0, 0),
        ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: (0, 1),
        ApiKey.ALTER_SHARE_GROUP_OFFSETS: (0, 0),
    }
)
"""ApiKey -> (min version, max version), both inclusive. Read-only."""


def enabled_versions(
    enabled_keys: Iterable[int] | None = None,
) -> Mapping[ApiKey, tuple[int, int]]:
    """Return the part of :data:`SUPPORTED_VERSIONS` for ``enabled_keys``.

    ``None`` means every supported key. ApiVersions is always included.

    :raises ValueError: if a key is not in :data:`SUPPORTED_VERSIONS`.
    """
    if enabled_keys is None:
        return SUPPORTED_VERSIONS
    keys = {ApiKey.API_VERSIONS}
    for key in enabled_keys:
        if key not in SUPPORTED_VERSIONS:
            raise ValueError(f"API key {key!r} is not in SUPPORTED_VERSIONS")
        keys.add(ApiKey(key))
    return MappingProxyType({key: SUPPORTED_VERSIONS[key] for key in sorted(keys)})


def api_versions_entries(
    enabled_keys: Iterable[int] | None = None,
) -> tuple[tuple[ApiKey, int, int], ...]:
    """Return ``(api_key, min_version, max_version)`` rows sorted by key.

    These are the rows of an ApiVersions response; ``None`` advertises every
    supported key and ApiVersions is always present.

    :raises ValueError: if a key is not in :data:`SUPPORTED_VERSIONS`.
    """
    versions = enabled_versions(enabled_keys)
    return tuple((key, lo, hi) for key, (lo, hi) in sorted(versions.items()))


def is_enabled(
    api_key: int,
    api_version: int,
    versions: Mapping[ApiKey, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> bool:
    """Return True when ``versions`` (default: all supported) covers the pair."""
    bounds = versions.get(api_key)  # type: ignore[call-overload]  # an int finds its ApiKey (IntEnum hashes as int)
    return bounds is not None and bounds[0] <= api_version <= bounds[1]
