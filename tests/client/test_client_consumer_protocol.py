"""Our consumer with ``group_protocol="consumer"`` (KIP-848) against a real ``logbroker serve``:
in one group with librdkafka ``group.protocol=consumer`` members, committing and resuming,
through the sync facade and ``logbroker consume``/``groups`` CLI; against Tansu, which lacks
the protocol, it fails clearly. The broker tells members to heartbeat every 300 ms."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import pytest
import trio
from click.testing import CliRunner

from brokerproc import BrokerProcess
from client_support import create_topic
from logbroker.cli.main import main as cli
from logbroker.client import Consumer, Producer, SyncConsumer, TopicPartition
from logbroker.errors import GroupError, InvalidConfigError

PARTITIONS = 6
ALL = set(range(PARTITIONS))


@pytest.fixture(scope="module")
def kip848(tmp_path_factory):
    base = tmp_path_factory.mktemp("kip848")
    config = base / "broker.toml"
    config.write_text("group_consumer_heartbeat_interval_ms = 300\ngroup_consumer_session_timeout_ms = 6000\n")
    proc = BrokerProcess(base / "data", "--config", str(config)).start()
    yield proc
    proc.kill()


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"kip848-{suffix}", f"kip848-group-{suffix}"


async def produce(bootstrap: str, topic: str, tag: str, per_partition: int) -> set[tuple[int, int]]:
    """``per_partition`` records to each partition; their (partition, offset)."""
    async with Producer(bootstrap, linger_ms=2) as producer:
        deliveries = [await producer.send(topic, f"{tag}-{i}".encode(), partition=p)
                      for p in range(PARTITIONS) for i in range(per_partition)]
        metas = [await d for d in deliveries]
    return {(m.partition, m.offset) for m in metas}


class RdkafkaMember:
    """A librdkafka ``group.protocol=consumer`` member polling in a thread; records what it read."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        from confluent_kafka import Consumer as CKConsumer

        self.consumer = CKConsumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                                    "auto.offset.reset": "earliest", "auto.commit.interval.ms": 200,
                                    "fetch.queue.backoff.ms": 10})
        self.consumer.subscribe([topic])
        self.seen: list[tuple[int, int]] = []
        self.parts: set[int] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.05)
            self.parts = {tp.partition for tp in self.consumer.assignment()}
            if msg is None:
                continue
            if msg.error():
                self.errors.append(str(msg.error()))
                continue
            self.seen.append((msg.partition(), msg.offset()))
        self.consumer.close()  # commits what it read, leaves with epoch -1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


async def read_into(consumer: Consumer, seen: list, stop: trio.Event) -> None:
    while not stop.is_set():
        with trio.move_on_after(0.2):
            seen.extend((r.partition, r.offset) for r in await consumer.getmany())


async def eventually(predicate, timeout: float, what: str) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
    assert predicate(), what


async def test_shares_a_group_with_librdkafka_members(kip848):
    topic, group = names()
    bootstrap = kip848.bootstrap
    await create_topic(bootstrap, topic, PARTITIONS)
    produced = await produce(bootstrap, topic, "first", 20)
    ours: list[tuple[int, int]] = []
    stop = trio.Event()
    async with Consumer(bootstrap, group_id=group, group_protocol="consumer", auto_offset_reset="earliest",
                        auto_commit_interval_ms=200) as consumer, trio.open_nursery() as nursery:
        await consumer.subscribe([topic])
        with trio.fail_after(15):
            assert {tp.partition for tp in await consumer.wait_assignment()} == ALL  # alone: everything
        nursery.start_soon(read_into, consumer, ours, stop)
        await eventually(lambda: len(ours) == len(produced), 15, "the first records")
        theirs = RdkafkaMember(bootstrap, topic, group)
        try:
            def split() -> bool:
                mine = {tp.partition for tp in consumer.assignment()}
                return bool(mine) and bool(theirs.parts) and not (mine & theirs.parts) and mine | theirs.parts == ALL

            await eventually(split, 20, "the partitions split between the two members")
            produced |= await produce(bootstrap, topic, "second", 20)
            await eventually(lambda: len(ours) + len(theirs.seen) >= len(produced), 20, "the second records")
            assert split()

            code, out, err = await trio.to_thread.run_sync(
                lambda: _cli("groups", "describe", group, "-b", bootstrap, "--format", "json"))
            described = json.loads(out)
            assert described["type"] == "consumer" and described["assignor"] == "uniform"
            assert described["group_epoch"] >= 2 and described["assignment_epoch"] >= 2
            members = {m["client_id"]: m for m in described["members"]}
            assert set(members) == {"logbroker-python", "rdkafka"}
            for m in members.values():
                assert m["member_epoch"] >= 1 and m["subscribed_topics"] == [topic]
                assert sorted(m["assignment"]) == sorted(m["target_assignment"])
            assert {p for _, p in members["logbroker-python"]["assignment"]} == \
                {tp.partition for tp in consumer.assignment()}
            assert members["logbroker-python"]["member_id"] == consumer.group_metadata().member_id
        finally:
            await trio.to_thread.run_sync(theirs.close)
        # the librdkafka member left: its partitions come back to us, from its committed offsets
        await eventually(lambda: {tp.partition for tp in consumer.assignment()} == ALL, 15, "all partitions back")
        produced |= await produce(bootstrap, topic, "third", 20)
        await eventually(lambda: len(set(ours) | set(theirs.seen)) >= len(produced), 20, "the third records")
        await trio.sleep(0.5)
        stop.set()
    assert not theirs.errors
    assert set(ours) | set(theirs.seen) == produced
    assert len(ours) == len(set(ours)) and not set(ours) & set(theirs.seen)  # nothing read twice


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr if result.stderr_bytes is not None else ""


async def test_commits_and_resumes_with_the_sync_facade_and_the_cli(kip848):
    topic, group = names()
    bootstrap = kip848.bootstrap
    await create_topic(bootstrap, topic, PARTITIONS)
    produced = await produce(bootstrap, topic, "a", 10)

    def first_half() -> list:
        with SyncConsumer(bootstrap, group_id=group, group_protocol="consumer", auto_offset_reset="earliest",
                          enable_auto_commit=False) as consumer:
            consumer.subscribe([topic], timeout=10)
            assert len(consumer.wait_assignment(timeout=10)) == PARTITIONS
            got: list = []
            while len(got) < 30:
                got.extend(consumer.getmany(30 - len(got), timeout=5))
            consumer.commit(timeout=10)
            return got

    got = await trio.to_thread.run_sync(first_half)
    assert len(got) == 30
    # ``logbroker consume --group-protocol consumer`` resumes from the committed offsets
    proc = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "logbroker", "consume", topic, "-b", bootstrap, "--group", group,
         "--group-protocol", "consumer", "--exit-at-end", "--print-offsets"],
        capture_output=True, text=True, timeout=60))
    assert proc.returncode == 0, proc.stderr
    printed = {tuple(int(x) for x in line.split("\t")[0].split(":")) for line in proc.stdout.splitlines()}
    assert printed == produced - {(r.partition, r.offset) for r in got}
    async with Consumer(bootstrap, group_id=group) as consumer:
        committed = {tp.partition: await consumer.committed(TopicPartition(topic, tp.partition))
                     for tp in [TopicPartition(topic, p) for p in ALL]}
    assert committed == {p: 10 for p in ALL}

    code, out, _ = await trio.to_thread.run_sync(lambda: _cli("groups", "list", "-b", bootstrap, "--type", "consumer"))
    assert code == 0 and any(line.split()[:2] == [group, "consumer"] for line in out.splitlines())
    code, out, _ = await trio.to_thread.run_sync(lambda: _cli("groups", "list", "-b", bootstrap, "--type", "classic"))
    assert group not in out
    code, out, _ = await trio.to_thread.run_sync(lambda: _cli("groups", "describe", group, "-b", bootstrap))
    assert code == 0 and "protocol consumer" in out and "assignor uniform" in out and "total lag 0" in out


async def test_pattern_subscription_takes_topics_the_broker_matches(kip848):
    topic, group = names()
    bootstrap = kip848.bootstrap
    await create_topic(bootstrap, topic, 2)
    async with Consumer(bootstrap, group_id=group, group_protocol="consumer", auto_offset_reset="earliest") as c:
        await c.subscribe(pattern=f"{topic[:-4]}.*")
        with trio.fail_after(15):
            assert await c.wait_assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}


async def test_against_a_broker_without_the_protocol_it_fails_clearly(tansu):
    async with Consumer(tansu.bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}", group_protocol="consumer") as c:
        await c.subscribe(["anything"])
        with trio.fail_after(20), pytest.raises(GroupError) as info:
            await c.wait_assignment()
    assert "broker does not support the consumer group protocol (ConsumerGroupHeartbeat); " \
           "use group_protocol='classic'" in str(info.value)


def test_a_pattern_needs_the_consumer_protocol():
    async def main():
        async with Consumer("127.0.0.1:1", group_id="g") as c:
            await c.subscribe(pattern="x.*")

    with pytest.raises(InvalidConfigError, match="needs group_protocol='consumer'"):
        trio.run(main)
