"""Our client against ``logbroker serve`` and against Tansu, alone and in groups with kafka-python.

Tansu 0.6.0 answers ListOffsets from batch boundaries (the latest offset of a
multi-record batch is its base + 1) and ignores timestamps in lookups, so
tests that read end offsets send one record per batch there, and time-based
tests run against logbroker only.
"""

from __future__ import annotations

import datetime
import threading

import pytest
import trio

from logbroker.client import Admin, Consumer, Producer, TopicPartition, murmur2_partition

from client_support import create_topic

BASE_TS = 1_700_000_000_000
GROUP_OPTIONS = dict(session_timeout_ms=10_000, heartbeat_interval_ms=300, auto_commit_interval_ms=200)


async def _produce_singly(bootstrap, topic, partitions, per_partition, **options):
    """One record per batch (awaited), values "p<partition>-<i>", timestamps BASE_TS + i s."""
    async with Producer(bootstrap, linger_ms=0, **options) as producer:
        for p in range(partitions):
            for i in range(per_partition):
                await (await producer.send(topic, f"p{p}-{i}", key=f"k{i}", partition=p,
                                           timestamp_ms=BASE_TS + i * 1000, headers=[("i", str(i).encode())]))


async def test_produce_and_consume_round_trip(any_broker, topic):
    await create_topic(any_broker.bootstrap, topic, 2)
    with trio.fail_after(30):
        await _produce_singly(any_broker.bootstrap, topic, 2, 20)
        async with Consumer(any_broker.bootstrap, auto_offset_reset="earliest") as consumer:
            tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            assert await consumer.end_offsets(tps) == {tps[0]: 20, tps[1]: 20}
            consumer.assign(tps)
            records = []
            while len(records) < 40:
                records.extend(await consumer.getmany())
    for p in range(2):
        mine = [r for r in records if r.partition == p]
        assert [(r.offset, r.value, r.key, r.headers, r.timestamp) for r in mine] == [
            (i, f"p{p}-{i}".encode(), f"k{i}".encode(), (("i", str(i).encode()),), BASE_TS + i * 1000)
            for i in range(20)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_batches(any_broker, topic, codec):
    await create_topic(any_broker.bootstrap, topic, 1)
    values = [f"value-{i}-".encode() * 20 for i in range(500)]
    with trio.fail_after(30):
        async with Producer(any_broker.bootstrap, compression=codec, linger_ms=20) as producer:
            deliveries = [await producer.send(topic, v, partition=0) for v in values]
            assert [(await d).offset for d in deliveries] == list(range(500))
        async with Consumer(any_broker.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([(topic, 0)])
            got = []
            while len(got) < 500:
                got.extend(r.value for r in await consumer.getmany())
    assert got == values


async def test_replay_by_offset(any_broker, topic):
    await create_topic(any_broker.bootstrap, topic, 2)
    with trio.fail_after(30):
        await _produce_singly(any_broker.bootstrap, topic, 2, 10)
        async with Consumer(any_broker.bootstrap) as consumer:
            got = sorted([(r.partition, r.offset) async for r in consumer.replay(topic, start=4, stop=7)])
            assert got == [(p, o) for p in range(2) for o in (4, 5, 6)]
            got = sorted([(r.partition, r.offset) async for r in consumer.replay(topic, start=8)])
            assert got == [(p, o) for p in range(2) for o in (8, 9)]


async def test_replay_and_seek_by_time(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)
    with trio.fail_after(30):
        async with Producer(lb.bootstrap) as producer:  # many records per batch: logbroker handles it
            for p in range(2):
                for i in range(50):
                    producer.send_nowait(topic, f"{p}-{i}", partition=p, timestamp_ms=BASE_TS + i * 1000)
        start = datetime.datetime.fromtimestamp((BASE_TS + 10_000) / 1000, datetime.UTC)
        stop = datetime.datetime.fromtimestamp((BASE_TS + 12_500) / 1000, datetime.UTC)
        async with Consumer(lb.bootstrap) as consumer:
            got = sorted([(r.partition, r.offset) async for r in consumer.replay(topic, start=start, stop=stop)])
            assert got == [(p, o) for p in range(2) for o in (10, 11, 12)]
            consumer.assign([(topic, 0)])
            await consumer.seek_to_time(start)
            assert (await consumer.getone()).offset == 10


async def test_partitioners_agree_with_kafka_python_and_confluent(lb, topic):
    kafka = pytest.importorskip("kafka")
    await create_topic(lb.bootstrap, topic, 5)
    keys = [f"user-{i}".encode() for i in range(40)]

    def kafka_python_partitions():
        producer = kafka.KafkaProducer(bootstrap_servers=lb.bootstrap)
        try:
            return [producer.send(topic, b"v", key=k).get(timeout=20).partition for k in keys]
        finally:
            producer.close()

    theirs = await trio.to_thread.run_sync(kafka_python_partitions)
    with trio.fail_after(20):
        async with Producer(lb.bootstrap, partitioner="murmur2") as producer:
            ours = [(await d).partition for d in [await producer.send(topic, b"v", k) for k in keys]]
    assert ours == theirs == [murmur2_partition(k, 5) for k in keys]


async def _wait_split(members, partitions, timeout=30):
    """Wait until the members' assignments are disjoint and cover all ``partitions``."""
    with trio.fail_after(timeout):
        while True:
            owned = [m() for m in members]
            union = set().union(*owned)
            if all(owned) and sum(map(len, owned)) == len(union) == len(partitions):
                return owned
            await trio.sleep(0.05)


async def test_group_rebalance_with_two_of_our_consumers(any_broker, topic):
    await create_topic(any_broker.bootstrap, topic, 4)
    group = f"g-{topic}"
    all_tps = {TopicPartition(topic, p) for p in range(4)}
    with trio.fail_after(60):
        await _produce_singly(any_broker.bootstrap, topic, 4, 5)
        async with Consumer(any_broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                            **GROUP_OPTIONS) as a:
            await a.subscribe([topic])
            assert await a.wait_assignment() == all_tps
            first = [await a.getone() for _ in range(3)]
            await a.commit()
            async with Consumer(any_broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                                **GROUP_OPTIONS) as b:
                await b.subscribe([topic])
                owned_a, owned_b = await _wait_split([a.assignment, b.assignment], all_tps)
                assert len(owned_a) == len(owned_b) == 2
            # b left: a owns everything again
            await _wait_split([a.assignment], all_tps)
        async with Admin(any_broker.bootstrap) as admin:
            committed = await admin.list_group_offsets(group, [topic])
    assert sum(committed.values()) >= len(first)


class KafkaPythonMember:
    """A kafka-python consumer polling in a thread, in our group."""

    def __init__(self, bootstrap, topic, group, assignor="range"):
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        strategies = {"range": (RangePartitionAssignor, RoundRobinPartitionAssignor)}
        if assignor == "cooperative-sticky":
            from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

            strategies["cooperative-sticky"] = (CooperativeStickyAssignor,)
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
            session_timeout_ms=10_000, heartbeat_interval_ms=300,
            partition_assignment_strategy=strategies[assignor],
        )
        self.owned: set[TopicPartition] = set()
        self.values: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                self.values.extend(r.value for r in records)
            self.owned = {TopicPartition(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


@pytest.mark.parametrize("broker_name,assignor", [
    ("lb", "range"), ("lb", "cooperative-sticky"),
    ("tansu", "range"),  # Tansu takes ~5 s per rebalance; cooperative needs two
])
async def test_one_group_with_kafka_python(request, topic, broker_name, assignor):
    pytest.importorskip("kafka")
    any_broker = request.getfixturevalue(broker_name)
    await create_topic(any_broker.bootstrap, topic, 6)
    group = f"g-{topic}"
    all_tps = {TopicPartition(topic, p) for p in range(6)}
    theirs = await trio.to_thread.run_sync(KafkaPythonMember, any_broker.bootstrap, topic, group, assignor)
    try:
        with trio.fail_after(60):
            await _wait_split([lambda: theirs.owned], all_tps)
            async with Consumer(any_broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                                assignors=(assignor,), **GROUP_OPTIONS) as ours:
                await ours.subscribe([topic])
                owned_ours, owned_theirs = await _wait_split([ours.assignment, lambda: theirs.owned], all_tps)
                assert len(owned_ours) == len(owned_theirs) == 3
                await _produce_singly(any_broker.bootstrap, topic, 6, 2)
                mine = []
                while len(mine) + len(theirs.values) < 12:
                    with trio.move_on_after(0.2):
                        mine.extend(r.value for r in await ours.getmany())
                assert sorted(mine + theirs.values) == sorted(f"p{p}-{i}".encode() for p in range(6) for i in range(2))
                assert {int(v[1:2]) for v in mine} == {tp.partition for tp in owned_ours}
    finally:
        await trio.to_thread.run_sync(theirs.close)
