"""The admin client against ``logbroker serve``: topics, configs, groups, offsets."""

from __future__ import annotations

import datetime

import pytest
import trio

from logbroker.client import Admin, Consumer, NewTopic, Producer, TopicPartition
from logbroker.errors import GroupError, KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

BASE_TS = 1_700_000_000_000


async def test_topics(lb, topic):
    with trio.fail_after(30):
        async with Admin(lb.bootstrap) as admin:
            errors = await admin.create_topics([NewTopic(topic, 2, configs={"retention.ms": "60000"}),
                                                NewTopic(topic + "-bad", 0)])
            assert errors[topic] is None and isinstance(errors[topic + "-bad"], KafkaError)
            with pytest.raises(TopicAlreadyExistsError):
                await admin.create_topic(topic, 2)
            assert topic in await admin.list_topics()
            (described,) = await admin.describe_topics([topic], configs=True)
            assert [p.partition for p in described.partitions] == [0, 1]
            assert all(p.leader >= 0 for p in described.partitions)
            assert described.configs["retention.ms"] == "60000"
            await admin.alter_topic(topic, partitions=4, configs={"retention.ms": "120000"})
            (described,) = await admin.describe_topics([topic], configs=True)
            assert len(described.partitions) == 4 and described.configs["retention.ms"] == "120000"
            await admin.alter_topic(topic, configs={"retention.ms": None})
            assert "retention.ms" not in (await admin.describe_configs([topic]))[topic]
            with pytest.raises(KafkaError):
                await admin.alter_topic(topic, partitions=2)  # not an increase
            await admin.delete_topic(topic)
            with pytest.raises(UnknownTopicOrPartitionError):
                await admin.describe_topics([topic])
            with pytest.raises(UnknownTopicOrPartitionError):
                await admin.delete_topic(topic)


async def test_groups_and_offsets(lb, topic):
    group = f"g-{topic}"
    with trio.fail_after(40):
        async with Producer(lb.bootstrap) as producer:
            for i in range(10):
                producer.send_nowait(topic, b"%d" % i, partition=0, timestamp_ms=BASE_TS + i * 1000)
        async with Admin(lb.bootstrap) as admin:
            offsets = await admin.list_offsets({(topic, 0): "earliest"})
            assert offsets[TopicPartition(topic, 0)].offset == 0
            assert await admin.topic_offsets(topic) == {0: 10}
            at = datetime.datetime.fromtimestamp((BASE_TS + 4000) / 1000, datetime.UTC)
            assert await admin.topic_offsets(topic, at) == {0: 4}
            async with Consumer(lb.bootstrap, group_id=group, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=300) as consumer:
                await consumer.subscribe([topic])
                await consumer.wait_assignment()
                for _ in range(6):
                    await consumer.getone()
                await consumer.commit()
                listed = {g.group_id: g for g in await admin.list_groups()}
                assert listed[group].protocol_type == "consumer"
                (described,) = await admin.describe_groups([group])
                assert described.state == "Stable" and described.protocol == "range"
                assert described.members[0].assignment == (TopicPartition(topic, 0),)
                with pytest.raises(GroupError) as info:
                    await admin.reset_offsets(group, topic, "earliest")
                assert info.value.code == 68  # NON_EMPTY_GROUP
                assert (await admin.delete_groups([group]))[group] is not None
            assert await admin.list_group_offsets(group) == {TopicPartition(topic, 0): 6}
            assert await admin.reset_offsets(group, topic, "earliest") == {TopicPartition(topic, 0): 0}
            assert await admin.reset_offsets(group, topic, at) == {TopicPartition(topic, 0): 4}
            assert await admin.reset_offsets(group, topic, 99) == {TopicPartition(topic, 0): 10}  # clamped
            assert await admin.list_group_offsets(group, [topic]) == {TopicPartition(topic, 0): 10}
            low = await admin.delete_records({(topic, 0): 3})
            assert low == {TopicPartition(topic, 0): 3}
            assert (await admin.delete_groups([group]))[group] is None
            assert group not in {g.group_id for g in await admin.list_groups()}
