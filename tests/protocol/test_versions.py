"""The version table: every range exists in kio, subsets for the server."""

from __future__ import annotations

import pytest

from kio.index import KioIndexError
from kio.index import load_request_schema
from kio.index import load_response_schema
from kio.schema.index import api_key_map

from logbroker.protocol import SUPPORTED_VERSIONS
from logbroker.protocol import ApiKey
from logbroker.protocol import api_versions_entries
from logbroker.protocol import enabled_versions
from logbroker.protocol import is_enabled
from logbroker.protocol.legacy import STAND_IN
from logbroker.protocol.legacy import is_legacy

EXPECTED = {
    "API_VERSIONS": (0, 4),
    "SASL_HANDSHAKE": (1, 1),
    "SASL_AUTHENTICATE": (0, 2),
    "METADATA": (0, 12),
    "PRODUCE": (0, 9),  # v0-2, Fetch v0-3 ...: protocol/legacy.py (kio has none)
    "FETCH": (0, 12),
    "LIST_OFFSETS": (0, 7),
    "OFFSET_FOR_LEADER_EPOCH": (2, 4),
    "DESCRIBE_CLUSTER": (0, 1),
    "CREATE_TOPICS": (2, 7),
    "DELETE_TOPICS": (1, 6),
    "CREATE_PARTITIONS": (0, 3),
    "DESCRIBE_CONFIGS": (1, 4),  # asked 0-4; kio 0.6.5 starts at v1
    "ALTER_CONFIGS": (0, 2),
    "DESCRIBE_LOG_DIRS": (1, 4),  # kio 0.6.5 starts at v1
    "INCREMENTAL_ALTER_CONFIGS": (0, 1),
    "DELETE_RECORDS": (0, 2),
    "INIT_PRODUCER_ID": (0, 5),
    "ADD_PARTITIONS_TO_TXN": (0, 5),
    "ADD_OFFSETS_TO_TXN": (0, 4),
    "END_TXN": (0, 4),
    "TXN_OFFSET_COMMIT": (0, 4),
    "WRITE_TXN_MARKERS": (1, 2),
    "DESCRIBE_PRODUCERS": (0, 0),
    "DESCRIBE_TRANSACTIONS": (0, 0),
    "LIST_TRANSACTIONS": (0, 2),
    "FIND_COORDINATOR": (0, 4),
    "JOIN_GROUP": (0, 7),
    "SYNC_GROUP": (0, 5),
    "HEARTBEAT": (0, 4),
    "LEAVE_GROUP": (0, 5),
    "OFFSET_COMMIT": (0, 9),
    "OFFSET_FETCH": (0, 9),
    "LIST_GROUPS": (0, 5),
    "DESCRIBE_GROUPS": (0, 5),
    "DELETE_GROUPS": (0, 2),
    "OFFSET_DELETE": (0, 0),
    "CONSUMER_GROUP_HEARTBEAT": (0, 1),
    "CONSUMER_GROUP_DESCRIBE": (0, 1),
    "DESCRIBE_ACLS": (1, 3),  # kio 0.6.5 starts at v1 (Kafka 4 dropped v0)
    "CREATE_ACLS": (1, 3),
    "DELETE_ACLS": (1, 3),
    "ELECT_LEADERS": (0, 2),
    "DESCRIBE_USER_SCRAM_CREDENTIALS": (0, 0),
    "ALTER_USER_SCRAM_CREDENTIALS": (0, 0),
    "DESCRIBE_TOPIC_PARTITIONS": (0, 0),
    "SHARE_GROUP_HEARTBEAT": (1, 1),
    "SHARE_GROUP_DESCRIBE": (1, 1),
    "SHARE_FETCH": (1, 2),
    "SHARE_ACKNOWLEDGE": (1, 2),
    "READ_SHARE_GROUP_STATE": (0, 0),  # answered from live state, for groups describe
    "DESCRIBE_SHARE_GROUP_OFFSETS": (0, 1),
    "ALTER_SHARE_GROUP_OFFSETS": (0, 0),
}


def test_table_is_the_agreed_one() -> None:
    assert {key.name: bounds for key, bounds in SUPPORTED_VERSIONS.items()} == EXPECTED


def test_every_api_key_has_a_range_and_kio_agrees_on_its_name() -> None:
    assert set(ApiKey) == set(SUPPORTED_VERSIONS)
    for key in ApiKey:
        assert api_key_map[key] == key.name.lower()


@pytest.mark.parametrize(
    ("key", "version"),
    [(k, v) for k, (lo, hi) in SUPPORTED_VERSIONS.items() for v in range(lo, hi + 1) if not is_legacy(k, v)],
)
def test_every_supported_version_exists_in_kio(key: ApiKey, version: int) -> None:
    request = load_request_schema(key, version)
    response = load_response_schema(key, version)
    assert request.__api_key__ == response.__api_key__ == key
    assert request.__version__ == response.__version__ == version


@pytest.mark.parametrize(
    ("key", "version"),
    [(k, v) for k, (lo, hi) in SUPPORTED_VERSIONS.items() for v in range(lo, hi + 1) if is_legacy(k, v)],
)
def test_legacy_versions_are_exactly_those_kio_lacks(key: ApiKey, version: int) -> None:
    with pytest.raises(KioIndexError):
        load_request_schema(key, version)
    assert load_request_schema(key, STAND_IN[key]).__version__ == STAND_IN[key] > version
    with pytest.raises(KioIndexError):
        load_request_schema(key, STAND_IN[key] - 1)


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        SUPPORTED_VERSIONS[ApiKey.FETCH] = (0, 0)  # type: ignore[index]


def test_entries_are_sorted_and_complete_by_default() -> None:
    entries = api_versions_entries()
    assert [key for key, _, _ in entries] == sorted(SUPPORTED_VERSIONS)
    assert (ApiKey.FETCH, 0, 12) in entries


def test_a_subset_always_includes_api_versions() -> None:
    entries = api_versions_entries([ApiKey.METADATA, ApiKey.PRODUCE])
    assert entries == (
        (ApiKey.PRODUCE, 0, 9),
        (ApiKey.METADATA, 0, 12),
        (ApiKey.API_VERSIONS, 0, 4),
    )
    assert api_versions_entries([]) == ((ApiKey.API_VERSIONS, 0, 4),)
    assert api_versions_entries(enabled_versions([3])) == api_versions_entries([3])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="67"):
        enabled_versions([67])


def test_is_enabled() -> None:
    assert is_enabled(ApiKey.FETCH, 12)
    assert is_enabled(1, 4)
    assert is_enabled(1, 0)  # old versions: protocol/legacy.py
    assert not is_enabled(1, -1)
    assert not is_enabled(1, 13)
    assert not is_enabled(4, 0)
    subset = enabled_versions([ApiKey.HEARTBEAT])
    assert is_enabled(ApiKey.HEARTBEAT, 4, subset)
    assert is_enabled(ApiKey.API_VERSIONS, 0, subset)
    assert not is_enabled(ApiKey.FETCH, 12, subset)
