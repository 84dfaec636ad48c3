"""Real consumers of many partitions against ``logbroker serve`` with fetch
sessions (KIP-227) served.

kafka-python keeps an incremental fetch session per broker (after the first
FULL fetch it sends only changed partitions); librdkafka (confluent-kafka) and
aiokafka fetch without a session (session id 0, epoch -1) and must read as
before. Each consumer is assigned 200 partitions (4 topics x 50) and must read
every record exactly once while records keep arriving in a few partitions,
then while one of its topics is deleted (the broker closes the sessions that
hold it) and after another topic gets more partitions.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from interop_support import unique_topic

TOPICS, PARTITIONS = 4, 50
Key = tuple[str, int, int]  # topic, partition, offset


class _Consumer:
    def assign(self, positions: dict[tuple[str, int], int]) -> None:
        raise NotImplementedError

    def poll(self) -> list[tuple[Key, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Confluent(_Consumer):
    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                           "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                           "topic.metadata.refresh.interval.ms": 1000})

    def assign(self, positions):
        from confluent_kafka import TopicPartition

        self.c.assign([TopicPartition(t, p, o) for (t, p), o in positions.items()])

    def poll(self):
        out = []
        for m in self.c.consume(1000, 0.2):
            if m.error() is None:
                out.append(((m.topic(), m.partition(), m.offset()), m.value()))
        return out

    def close(self):
        self.c.close()


class _KafkaPython(_Consumer):
    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer

        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                               fetch_max_wait_ms=100, enable_incremental_fetch_sessions=True,
                               metadata_max_age_ms=1000)

    def assign(self, positions):
        from kafka import TopicPartition

        self.c.assign([TopicPartition(t, p) for t, p in positions])
        for (t, p), o in positions.items():
            self.c.seek(TopicPartition(t, p), o)

    def poll(self):
        out = []
        for records in self.c.poll(timeout_ms=200, max_records=5000).values():
            out.extend(((r.topic, r.partition, r.offset), r.value) for r in records)
        return out

    def close(self):
        self.c.close()


class _Aio(_Consumer):
    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self.loop = asyncio.new_event_loop()

        async def make():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                 fetch_max_wait_ms=100, metadata_max_age_ms=1000)
            await c.start()
            return c

        self.c = self.loop.run_until_complete(make())

    def assign(self, positions):
        from aiokafka import TopicPartition

        async def assign():
            self.c.assign([TopicPartition(t, p) for t, p in positions])
            for (t, p), o in positions.items():
                self.c.seek(TopicPartition(t, p), o)

        self.loop.run_until_complete(assign())

    def poll(self):
        got = self.loop.run_until_complete(self.c.getmany(timeout_ms=200, max_records=5000))
        return [((r.topic, r.partition, r.offset), r.value) for records in got.values() for r in records]

    def close(self):
        self.loop.run_until_complete(self.c.stop())
        self.loop.close()


CONSUMERS = {"confluent-kafka": _Confluent, "kafka-python": _KafkaPython, "aiokafka": _Aio}


class _World:
    """The topics, a producer, and every record produced (key -> value)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                  "topic.metadata.refresh.interval.ms": 500})
        self.sent: dict[Key, bytes] = {}
        self._failed: list[str] = []

    def create(self, names: list[str], partitions: int) -> None:
        from confluent_kafka.admin import NewTopic

        for f in self.admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            f.result(30)

    def produce(self, topic: str, partition: int, n: int) -> None:
        def delivered(err, msg):
            if err is not None:
                self._failed.append(str(err))
            else:
                self.sent[(msg.topic(), msg.partition(), msg.offset())] = msg.value()

        from confluent_kafka import KafkaException

        for _ in range(n):
            value = b"%s-%d-%d" % (topic.encode(), partition, len(self.sent) + len(self._failed))
            deadline = time.monotonic() + 15
            while True:
                try:  # a partition just added is unknown until the producer's metadata shows it
                    self.producer.produce(topic, value, partition=partition, on_delivery=delivered)
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    self.producer.poll(0.2)
        assert self.producer.flush(30) == 0
        assert not self._failed, self._failed

    def close(self) -> None:
        self.producer.flush(10)


def _read_until(consumer: _Consumer, got: dict[Key, bytes], dups: list[Key], want: dict[Key, bytes],
                timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not want.keys() <= got.keys() and time.monotonic() < deadline:
        for key, value in consumer.poll():
            if key in got:
                dups.append(key)
            got[key] = value
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} records not read, e.g. {missing[:5]}"
    assert {k: got[k] for k in want} == want


@pytest.mark.parametrize("client", list(CONSUMERS))
def test_consumer_of_200_partitions_reads_everything(broker_factory, client):
    broker = broker_factory()
    world = _World(broker.bootstrap)
    names = [unique_topic(f"fs{i}") for i in range(TOPICS)]
    world.create(names, PARTITIONS)
    for i, name in enumerate(names):  # some history in a few partitions
        world.produce(name, i, 5)
    consumer = CONSUMERS[client](broker.bootstrap)
    got: dict[Key, bytes] = {}
    dups: list[Key] = []
    try:
        consumer.assign({(t, p): 0 for t in names for p in range(PARTITIONS)})
        _read_until(consumer, got, dups, dict(world.sent))
        # Records keep arriving in a few partitions while the consumer reads.
        busy = [(names[0], 3), (names[1], 49), (names[2], 17)]
        for round_ in range(8):
            for topic, partition in busy:
                world.produce(topic, partition, 10 + round_)
            for _ in range(2):
                for key, value in consumer.poll():
                    if key in got:
                        dups.append(key)
                    got[key] = value
        _read_until(consumer, got, dups, dict(world.sent))
        if client == "kafka-python":  # it really used an incremental session
            handlers = consumer.c._fetcher._session_handlers  # type: ignore[attr-defined]
            assert any(h.next_metadata.epoch > 1 for h in handlers.values()), handlers
        # A topic is deleted under the consumer; the others keep being read.
        for f in world.admin.delete_topics([names[3]]).values():
            f.result(30)
        world.sent = {k: v for k, v in world.sent.items() if k[0] != names[3]}
        world.produce(names[0], 3, 7)
        world.produce(names[2], 0, 4)
        _read_until(consumer, got, dups, dict(world.sent))
        # Another topic gets more partitions; the consumer takes them too.
        from confluent_kafka.admin import NewPartitions

        for f in world.admin.create_partitions([NewPartitions(names[1], PARTITIONS + 10)]).values():
            f.result(30)
        positions = {(t, p): 1 + max([o for (tt, pp, o) in got if (tt, pp) == (t, p)], default=-1)
                     for t in names[:3] for p in range(PARTITIONS)}
        positions.update({(names[1], p): 0 for p in range(PARTITIONS, PARTITIONS + 10)})
        consumer.assign(positions)
        world.produce(names[1], PARTITIONS + 4, 6)
        world.produce(names[1], PARTITIONS + 9, 3)
        world.produce(names[2], 17, 5)
        _read_until(consumer, got, dups, dict(world.sent))
        assert not dups, f"{len(dups)} records read twice, e.g. {dups[:5]}"
    finally:
        consumer.close()
        world.close()
