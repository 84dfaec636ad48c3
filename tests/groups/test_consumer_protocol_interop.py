"""confluent-kafka (librdkafka) with ``group.protocol=consumer`` (KIP-848)
against a real ``logbroker serve``: members split partitions without
overlap, a joining member takes its share and a leaving one gives its
partitions up without any record read twice, committed offsets survive a
restart, a regex subscription picks up a topic created later, and a static
member comes back without moving anyone else's partitions.

The broker tells members to heartbeat every 100 ms (``group.consumer.heartbeat.interval.ms``)
so that reconciliation takes a few round trips of that, not of 5 s.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest
from brokerproc import BrokerProcess, unique_topic, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

BROKER_CONFIG = """\
"group.consumer.heartbeat.interval.ms" = 100
"group.consumer.session.timeout.ms" = 6000
"""


@pytest.fixture
def cg_broker(tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text(BROKER_CONFIG)
    proc = BrokerProcess(tmp_path / "data", "--config", str(config)).start()
    yield proc
    proc.kill()


def create(bootstrap: str, name: str, partitions: int = 6) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def commit_start(bootstrap: str, group: str, topic: str, partitions: int = 6) -> None:
    """Commit offset 0 for every partition before anyone joins, so members
    start from a committed offset instead of resetting to the beginning.
    librdkafka 2.16 can leave its offset-reset retry timer armed when a
    reconciliation pauses a partition while that reset is in flight; the timer
    later rewinds the partition to the beginning (or restarts a revoked one),
    a client-side replay that the broker cannot prevent."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    offsets = [TopicPartition(topic, p, 0) for p in range(partitions)]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)])
    futures[group].result(10)


def produce(bootstrap: str, topic: str, count: int, partitions: int = 6, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert producer.flush(15) == 0


class Member:
    """A KIP-848 consumer polled by its own thread; records every (topic,
    partition, offset) it reads and every assignment it is given."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str, **extra) -> None:
        conf = {
            "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
            "client.id": name, "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "auto.commit.interval.ms": 100, "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 10,
            "topic.metadata.refresh.interval.ms": 1000,
            **extra,
        }
        self.name = name
        self.seen: list[tuple[str, int, int]] = []
        self.assigned: set[tuple[str, int]] = set()
        self.rebalances: list[tuple[str, frozenset]] = []
        self.errors: list[str] = []
        self.consumer = Consumer(conf)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _on_assign(self, consumer, partitions) -> None:
        parts = frozenset((p.topic, p.partition) for p in partitions)
        self.rebalances.append(("assign", parts))
        self.assigned |= parts

    def _on_revoke(self, consumer, partitions) -> None:
        parts = frozenset((p.topic, p.partition) for p in partitions)
        self.rebalances.append(("revoke", parts))
        self.assigned -= parts

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                self.errors.append(str(msg.error()))
                continue
            self.seen.append((msg.topic(), msg.partition(), msg.offset()))

    def partitions(self) -> set[int]:
        return {p for _, p in self.assigned}

    def close(self) -> None:
        """Leave the group (the consumer commits and sends its leave heartbeat)."""
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def no_duplicates(*members: Member) -> collections.Counter:
    counts = collections.Counter(rec for m in members for rec in m.seen)
    twice = {rec: n for rec, n in counts.items() if n > 1}
    assert not twice, f"read more than once: {sorted(twice)[:10]}"
    return counts


def test_members_split_partitions_and_hand_them_over_without_reading_twice(cg_broker):
    bs = cg_broker.bootstrap
    topic = unique_topic("kip848-split")
    group = unique_topic("g")
    create(bs, topic)
    produce(bs, topic, 600)
    commit_start(bs, group, topic)
    members: list[Member] = []
    try:
        a = Member(bs, group, [topic], "a")
        b = Member(bs, group, [topic], "b")
        members += [a, b]
        wait_until(lambda: len(a.partitions()) == 3 and len(b.partitions()) == 3, 20, what="a 3/3 split")
        assert not a.partitions() & b.partitions()
        wait_until(lambda: len(a.seen) + len(b.seen) >= 600, 20, what="the first 600 records")
        # Records keep arriving while the group changes.
        stop = threading.Event()
        produced = [600]

        def feed():
            while not stop.is_set():
                produce(bs, topic, 60, start=produced[0])
                produced[0] += 60
                time.sleep(0.05)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        c = Member(bs, group, [topic], "c")
        members.append(c)
        wait_until(lambda: all(len(m.partitions()) == 2 for m in (a, b, c)), 20, what="a 2/2/2 split")
        assert a.partitions() | b.partitions() | c.partitions() == set(range(6))
        time.sleep(0.5)
        a.close()
        members.remove(a)
        wait_until(lambda: len(b.partitions()) == 3 and len(c.partitions()) == 3, 20, what="a's partitions move")
        assert not b.partitions() & c.partitions()
        time.sleep(0.5)
        stop.set()
        feeder.join(10)
        total = produced[0]
        wait_until(lambda: len(set(a.seen) | set(b.seen) | set(c.seen)) >= total, 20, what="every record read")
        counts = no_duplicates(a, b, c)
        assert len(counts) == total
        assert not (a.errors or b.errors or c.errors)
    finally:
        for m in members:
            m.close()


def test_committed_offsets_survive_a_broker_restart(cg_broker):
    bs = cg_broker.bootstrap
    topic = unique_topic("kip848-restart")
    group = unique_topic("g")
    create(bs, topic)
    produce(bs, topic, 300)
    m = Member(bs, group, [topic], "m", **{"enable.auto.commit": False})
    try:
        wait_until(lambda: len(m.seen) >= 300, 20, what="300 records")
        m._stop.set()
        m._thread.join(5)
        offsets = m.consumer.commit(asynchronous=False)
        assert sum(tp.offset for tp in offsets) == 300
    finally:
        m.close()
    cg_broker.restart()
    bs = cg_broker.bootstrap
    produce(bs, topic, 60, start=300)
    m2 = Member(bs, group, [topic], "m2")
    try:
        wait_until(lambda: len(m2.seen) >= 60, 30, what="the 60 new records")
        time.sleep(0.3)
        assert len(m2.seen) == 60 and all(offset >= 50 for _, _, offset in m2.seen)
    finally:
        m2.close()


def test_regex_subscription_picks_up_a_topic_created_later(cg_broker):
    bs = cg_broker.bootstrap
    prefix = unique_topic("tpc").replace("-", "x")
    first, later = f"{prefix}-a", f"{prefix}-b"
    create(bs, first, 2)
    produce(bs, first, 20, partitions=2)
    m = Member(bs, unique_topic("g"), [f"^{prefix}-.*"], "re")
    try:
        wait_until(lambda: len(m.seen) >= 20, 20, what="the first topic's records")
        create(bs, later, 2)
        produce(bs, later, 10, partitions=2)
        wait_until(lambda: any(t == later for t, _, _ in m.seen), 30, what="records of the topic created later")
        wait_until(lambda: len(m.seen) >= 30, 10, what="all 30 records")
        assert {t for t, _ in m.assigned} == {first, later}
        no_duplicates(m)
    finally:
        m.close()


def test_a_static_member_rejoins_without_moving_the_others(cg_broker):
    bs = cg_broker.bootstrap
    topic = unique_topic("kip848-static")
    group = unique_topic("g")
    create(bs, topic)
    other = Member(bs, group, [topic], "other", **{"group.instance.id": "other"})
    static = Member(bs, group, [topic], "static", **{"group.instance.id": "s1"})
    try:
        wait_until(lambda: len(other.partitions()) == 3 and len(static.partitions()) == 3, 20, what="3/3 split")
        time.sleep(0.5)
        mine, theirs = static.partitions(), other.partitions()
        rebalances = len(other.rebalances)
        static.close()  # a static member leaves with epoch -2: its partitions wait for it
        time.sleep(0.5)
        static = Member(bs, group, [topic], "static-again", **{"group.instance.id": "s1"})
        wait_until(lambda: static.partitions() == mine, 20, what="the static member's partitions back")
        time.sleep(1.0)
        assert other.partitions() == theirs
        assert len(other.rebalances) == rebalances, other.rebalances
    finally:
        other.close()
        static.close()
