"""The client's public names, its error family, and its configs."""

from __future__ import annotations

import ast
import pathlib
import pickle

import pytest

import logbroker
import logbroker.client
from logbroker.client import ConsumerConfig, ProducerConfig, kafka_error
from logbroker.client.config import parse_bootstrap
from logbroker.errors import (
    ClientError,
    CommitFailedError,
    InvalidConfigError,
    KafkaError,
    KafkaTimeoutError,
    LogbrokerError,
    NotLeaderError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logbroker.protocol import ErrorCode

INIT = pathlib.Path(logbroker.client.__file__)


def test_every_public_name_is_exported_once_and_at_the_top():
    tree = ast.parse(INIT.read_text())
    names = [alias.asname for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(logbroker.client, name) is not None
    top_level = {"Producer", "Consumer", "Admin", "replay", "SyncProducer", "SyncConsumer", "SyncAdmin",
                 "ConsumerRecord", "RecordMetadata", "TopicPartition"}
    for name in top_level:
        assert getattr(logbroker, name) is getattr(logbroker.client, name)
    assert logbroker.KafkaError is KafkaError


def test_error_codes_map_to_typed_errors():
    error = kafka_error(ErrorCode.not_leader_or_follower, "moved", context="produce to t[0]")
    assert isinstance(error, NotLeaderError) and isinstance(error, KafkaError)
    assert isinstance(error, ClientError) and isinstance(error, LogbrokerError)
    assert error.code == ErrorCode.not_leader_or_follower and error.retriable
    assert "NOT_LEADER_OR_FOLLOWER" in str(error) and "moved" in str(error) and "t[0]" in str(error)
    assert type(kafka_error(ErrorCode.topic_already_exists)) is TopicAlreadyExistsError
    assert type(kafka_error(ErrorCode.rebalance_in_progress)) is CommitFailedError
    unknown = kafka_error(12345)
    assert type(unknown) is KafkaError and unknown.code == 12345 and not unknown.retriable
    assert UnknownTopicOrPartitionError().code == 3 and KafkaTimeoutError().retriable


def test_errors_survive_pickling():
    error = kafka_error(ErrorCode.unknown_topic_or_partition, context="x")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is UnknownTopicOrPartitionError and again.code == error.code and str(again) == str(error)


def test_configs_validate_once():
    assert ProducerConfig(acks="all").acks == -1 and ProducerConfig(acks=1, idempotence=False).acks == 1
    with pytest.raises(InvalidConfigError):
        ProducerConfig(acks=1)  # idempotence needs acks=all
    with pytest.raises(InvalidConfigError):
        ProducerConfig(partitioner="fnv")
    with pytest.raises(LogbrokerError):
        ProducerConfig(compression="brotli")
    with pytest.raises(InvalidConfigError):
        ConsumerConfig(auto_offset_reset="middle")
    with pytest.raises(InvalidConfigError):
        ConsumerConfig(assignors=("range", "cooperative-sticky"))
    with pytest.raises(InvalidConfigError):
        ProducerConfig.from_options(None, {"lingerms": 5})
    assert ConsumerConfig(assignors="roundrobin").assignors == ("roundrobin",)
    assert parse_bootstrap("a:1, b ,[::1]:9093") == (("a", 1), ("b", 9092), ("::1", 9093))
    with pytest.raises(InvalidConfigError):
        parse_bootstrap("a:x")
