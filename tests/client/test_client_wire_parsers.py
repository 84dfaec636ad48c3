"""The sans-I/O _wire_admin and _wire_share modules: kio answers in, client values out,
and request bodies that drop what a version lacks. No sockets (convention 10)."""

from __future__ import annotations

import uuid

import pytest

from logbroker.client._wire_admin import (
    ItemError,
    parse_create_topics,
    parse_delete_topics,
    parse_describe_configs,
    parse_find_coordinator,
    parse_list_groups,
)
from logbroker.client._wire_share import (
    ACCEPT,
    RENEW,
    parse_read_share_group_state,
    share_acknowledge_request,
    share_fetch_request,
)
from logbroker.client.queue import QueueMessage
from logbroker.client.types import ConsumerRecord
from logbroker.errors import LogbrokerError
from logbroker.protocol import ApiKey, ErrorCode, build, response_module


def test_create_and_delete_topics_answers_carry_each_topics_error():
    m = response_module(ApiKey.CREATE_TOPICS, 2)
    body = build(m.CreateTopicsResponse, throttle_time=0, topics=[
        build(m.CreatableTopicResult, name="a", error_code=ErrorCode.none, error_message=None),
        build(m.CreatableTopicResult, name="b", error_code=ErrorCode.topic_already_exists, error_message="exists"),
    ])
    assert parse_create_topics(body) == [ItemError("a", 0, None), ItemError("b", 36, "exists")]
    m = response_module(ApiKey.DELETE_TOPICS, 1)  # v1 has no error_message
    body = build(m.DeleteTopicsResponse, throttle_time=0, responses=[
        build(m.DeletableTopicResult, name="a", error_code=ErrorCode.unknown_topic_or_partition)])
    assert parse_delete_topics(body) == [ItemError("a", 3, None)]


@pytest.mark.parametrize("version", [1, 4])
def test_describe_configs_tells_defaults_by_their_source(version):
    m = response_module(ApiKey.DESCRIBE_CONFIGS, version)

    def entry(name, source):
        return build(m.DescribeConfigsResourceResult, name=name, value="1", read_only=False, config_source=source,
                     is_sensitive=False, synonyms=[], config_type=0, documentation=None)

    body = build(m.DescribeConfigsResponse, throttle_time=0, results=[
        build(m.DescribeConfigsResult, error_code=ErrorCode.none, error_message=None, resource_type=2,
              resource_name="t", configs=[entry("retention.ms", 1), entry("segment.bytes", 5)])])
    [(error, entries)] = parse_describe_configs(body)
    assert error == ItemError("t", 0, None)
    assert [(c.name, c.is_default) for c in entries] == [("retention.ms", False), ("segment.bytes", True)]


def test_list_groups_before_v4_has_no_state_or_type():
    m = response_module(ApiKey.LIST_GROUPS, 0)
    body = build(m.ListGroupsResponse, error_code=ErrorCode.none,
                 groups=[build(m.ListedGroup, group_id="q", protocol_type="share")])
    code, [listing] = parse_list_groups(body)
    assert code == 0 and (listing.state, listing.group_type, listing.kind) == ("", "", "share")


def test_find_coordinator_v0_has_no_message():
    m = response_module(ApiKey.FIND_COORDINATOR, 0)
    body = build(m.FindCoordinatorResponse, error_code=ErrorCode.coordinator_not_available, node_id=-1,
                 host="", port=-1)
    answer = parse_find_coordinator(body)
    assert (answer.error_code, answer.error_message) == (15, None)


def test_read_share_group_state_counts_the_window_by_state():
    m = response_module(ApiKey.READ_SHARE_GROUP_STATE, 0)
    topic_id = uuid.uuid4()
    batches = [build(m.StateBatch, first_offset=10, last_offset=12, delivery_state=1, delivery_count=1),
               build(m.StateBatch, first_offset=13, last_offset=13, delivery_state=2, delivery_count=1),
               build(m.StateBatch, first_offset=14, last_offset=15, delivery_state=4, delivery_count=5)]
    body = build(m.ReadShareGroupStateResponse, results=[build(m.ReadStateResult, topic_id=topic_id, partitions=[
        build(m.PartitionResult, partition=0, error_code=ErrorCode.none, error_message=None, state_epoch=1,
              start_offset=10, state_batches=batches)])])
    [row] = parse_read_share_group_state(body)
    assert (row.topic_id, row.partition, row.start_offset) == (topic_id, 0, 10)
    assert (row.in_flight, row.acknowledged, row.archived, row.window) == (3, 1, 2, 6)


def test_share_requests_drop_renewals_below_v2():
    topic_id = uuid.uuid4()
    rows = {topic_id: {0: [(5, 5, (RENEW,)), (6, 7, (ACCEPT,))], 1: [(1, 1, (RENEW,))]}}
    common = dict(group_id="g", member_id="m", session_epoch=1)
    for version, expected in ((1, [(6, 7)]), (2, [(5, 5), (6, 7)])):
        fetch = share_fetch_request(version, max_wait_ms=10, max_bytes=100, max_records=5, partitions=rows, **common)
        [topic] = fetch.topics
        sent = {p.partition_index: [(b.first_offset, b.last_offset) for b in p.acknowledgement_batches]
                for p in topic.partitions}
        assert sent[0] == expected and set(sent) == {0, 1}  # every partition is fetched
        ack = share_acknowledge_request(version, partitions=rows, **common)
        [topic] = ack.topics
        assert [p.partition_index for p in topic.partitions] == ([0] if version == 1 else [0, 1])


async def test_a_queue_message_is_answered_once():
    answers = []
    record = ConsumerRecord("t", 0, 7, 0, None, b"v")
    message = QueueMessage(record, 1, lambda m, kind: answers.append((m.record.offset, kind)))
    assert not message.answered
    await message.ack()
    assert message.answered and answers == [(7, ACCEPT)]
    with pytest.raises(LogbrokerError, match="already answered"):
        await message.reject()
    assert answers == [(7, ACCEPT)]


async def test_a_refused_answer_leaves_the_message_unanswered():
    def refuse(message, kind):
        raise LogbrokerError("closed")

    message = QueueMessage(ConsumerRecord("t", 0, 1, 0, None, None), 1, refuse)
    with pytest.raises(LogbrokerError):
        await message.ack()
    assert not message.answered
