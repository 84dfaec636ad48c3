"""CreateTopics and CreatePartitions beyond the broker's partition limit answer
INVALID_PARTITIONS (37), as Kafka does, never UNKNOWN_SERVER_ERROR."""

from __future__ import annotations

import pytest

from logbroker.broker.handlers import error_code_for
from logbroker.errors import InvalidPartitionsError
from logbroker.protocol import ApiKey, ErrorCode
from logbroker.storage.manager import MAX_PARTITIONS


def create(h, name: str, partitions: int, *, validate_only: bool = False, version: int = 5):
    topic = h.req(ApiKey.CREATE_TOPICS, version, "CreatableTopic", name=name, num_partitions=partitions,
                  replication_factor=1, assignments=(), configs=())
    (result,) = h.call(ApiKey.CREATE_TOPICS, version, "CreateTopicsRequest", topics=(topic,), timeout=1000,
                       validate_only=validate_only).topics
    return result


def test_the_error_table_maps_invalid_partitions():
    assert error_code_for(InvalidPartitionsError("too many")) == ErrorCode.invalid_partitions


@pytest.mark.parametrize("validate_only", [False, True])
def test_create_topics_beyond_the_limit_answers_invalid_partitions(h, validate_only):
    result = create(h, "big", MAX_PARTITIONS + 1, validate_only=validate_only)
    assert result.error_code == ErrorCode.invalid_partitions
    assert str(MAX_PARTITIONS) in result.error_message
    assert "big" not in h.broker.topics()


def test_create_topics_at_zero_partitions_answers_invalid_partitions(h):
    assert create(h, "none", 0).error_code == ErrorCode.invalid_partitions


@pytest.mark.parametrize("validate_only", [False, True])
def test_create_partitions_beyond_the_limit_answers_invalid_partitions(h, validate_only):
    assert create(h, "t", 1).error_code == ErrorCode.none
    topic = h.req(ApiKey.CREATE_PARTITIONS, 1, "CreatePartitionsTopic", name="t", count=MAX_PARTITIONS + 1,
                  assignments=None)
    (result,) = h.call(ApiKey.CREATE_PARTITIONS, 1, "CreatePartitionsRequest", topics=(topic,), timeout=1000,
                       validate_only=validate_only).results
    assert result.error_code == ErrorCode.invalid_partitions
    assert h.broker.topics()["t"].partitions == 1
