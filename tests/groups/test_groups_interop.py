"""Consumer groups of real clients against a real ``logbroker serve``.

Each member runs in its own process (``group_member.py``) and commits
synchronously after every record, reporting what it processed, what it
committed and its assignment; the tests SIGKILL members and restart the
broker. Session timeout 6 s, heartbeat 1 s.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid

import pytest

from interop_support import create_topic, wait_until
from member_process import MemberProcess

CLIENTS = ("kafka-python", "aiokafka", "confluent-kafka")
PARTITIONS = 6
ALL = list(range(PARTITIONS))


def names(client: str, what: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return f"{what}-{client}-{suffix}", f"group-{what}-{client}-{suffix}"


def produce(bootstrap: str, topic: str, tag: str, per_partition: int = 10, partitions: int = PARTITIONS):
    """Produce ``per_partition`` records to each partition; returns {(partition, offset): value}."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        futures = [
            (p, f"{tag}-{p}-{i}", producer.send(topic, value=f"{tag}-{p}-{i}".encode(), partition=p))
            for p in range(partitions) for i in range(per_partition)
        ]
        producer.flush(15)
        out = {}
        for p, value, future in futures:
            meta = future.get(15)
            out[(meta.partition, meta.offset)] = value
        return out
    finally:
        producer.close()


def wait_split(members: list[MemberProcess], timeout: float = 30.0, partitions: int = PARTITIONS) -> None:
    """Wait until the members hold disjoint, non-empty assignments covering every partition, for 0.5 s."""
    def split() -> bool:
        parts = [m.parts for m in members]
        flat = [p for ps in parts for p in ps]
        return all(parts) and sorted(flat) == list(range(partitions))

    stable_since = None
    deadline = time.monotonic() + timeout
    while True:
        if split():
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 0.5:
                return
        else:
            stable_since = None
        dead = [m for m in members if not m.alive]
        if dead or time.monotonic() > deadline:
            detail = "\n".join(f"{m.name}: {m.parts} {''.join(m.stderr[-5:])}" for m in members)
            raise AssertionError(f"no clean split after {timeout}s:\n{detail}")
        time.sleep(0.05)


def processed(members: list[MemberProcess]) -> set[tuple[int, int]]:
    return {(p, o) for m in members for p, o, _, _ in m.records}


def check_once(members: list[MemberProcess], expected: dict) -> int:
    """Every expected record was processed, with its value; a record processed
    again was never committed before (so with synchronous commits, duplicates
    only follow a failed commit or a SIGKILL). Returns the number of duplicates."""
    runs: dict[tuple[int, int], list[tuple[float, bool]]] = {}
    for m in members:
        commits = {(p, o): t for p, o, t in m.committed}
        for p, o, value, t in m.records:
            assert expected.get((p, o), value) == value, f"record {(p, o)} has the wrong value"
            committed_at = commits.get((p, o))
            runs.setdefault((p, o), []).append((t, committed_at is not None and committed_at >= t))
    missing = set(expected) - set(runs)
    assert not missing, f"{len(missing)} records never processed, e.g. {sorted(missing)[:5]}"
    duplicates = 0
    for key, seen in runs.items():
        seen.sort()
        for t, committed in seen[:-1]:
            assert not committed, f"record {key} was committed and then processed again"
        duplicates += len(seen) - 1
    return duplicates


# -- admin views -------------------------------------------------------------------


def _parse_assignment(raw: bytes) -> list[int]:
    """Partitions in a consumer-protocol Assignment (version, [topic, [partition]], user data)."""
    if not raw:
        return []
    pos = 2
    (topics,) = struct.unpack_from(">i", raw, pos)
    pos += 4
    parts = []
    for _ in range(topics):
        (length,) = struct.unpack_from(">h", raw, pos)
        pos += 2 + length
        (count,) = struct.unpack_from(">i", raw, pos)
        pos += 4
        parts.extend(struct.unpack_from(f">{count}i", raw, pos))
        pos += 4 * count
    return sorted(parts)


def admin_view(client: str, bootstrap: str, group: str) -> dict:
    """{"listed": bool, "listed_state": str|None, "state": str, "assignments": sorted list of partition lists}."""
    if client == "kafka-python":
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            listed = {g["group_id"]: g.get("group_state") for g in admin.list_groups()}
            desc = admin.describe_groups([group])[group]
        finally:
            admin.close()
        assignments = [
            sorted(p for t in m["member_assignment"]["assigned_partitions"] for p in t["partitions"])
            for m in desc["members"]
        ]
        return {"listed": group in listed, "listed_state": listed.get(group), "state": desc["group_state"],
                "assignments": sorted(assignments)}
    if client == "aiokafka":
        from aiokafka.admin import AIOKafkaAdminClient

        async def view():
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                listed = dict(await admin.list_consumer_groups())
                [resp] = await admin.describe_consumer_groups([group])
            finally:
                await admin.close()
            error_code, _, state, _, _, members = resp.groups[0][:6]
            assert error_code == 0
            return {"listed": group in listed, "listed_state": None, "state": state,
                    "assignments": sorted(_parse_assignment(m[-1]) for m in members)}

        return asyncio.run(view())
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = {g.group_id: g.state.name for g in admin.list_consumer_groups().result(timeout=10).valid}
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assignments = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions) for m in desc.members)
    return {"listed": group in listed, "listed_state": listed.get(group), "state": desc.state.name,
            "assignments": assignments}


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_members_split_partitions_and_take_over_from_leavers_and_the_dead(group_broker, client):
    bootstrap = group_broker.bootstrap
    topic, group = names(client, "split")
    create_topic(bootstrap, topic, PARTITIONS)
    expected = produce(bootstrap, topic, "before")
    a = MemberProcess(client, bootstrap, topic, group, name="a")
    b = MemberProcess(client, bootstrap, topic, group, name="b")
    members = [a, b]
    try:
        wait_split([a, b])
        c = MemberProcess(client, bootstrap, topic, group, name="c")
        members.append(c)
        wait_split([a, b, c])
        assert all(len(m.parts) == 2 for m in (a, b, c))

        view = admin_view(client, bootstrap, group)
        assert view["listed"] and view["state"].lower() == "stable"
        assert view["listed_state"] in (None, "Stable", "STABLE")
        assert view["assignments"] == sorted([a.parts, b.parts, c.parts])

        expected |= produce(bootstrap, topic, "three")
        a.stop()  # a clean leave: its partitions go to the others
        wait_split([b, c])
        expected |= produce(bootstrap, topic, "two")
        b.kill()  # no goodbye: c takes over after the session timeout
        wait_split([c], timeout=30)
        expected |= produce(bootstrap, topic, "one")
        wait_until(lambda: set(expected) <= processed(members), 30, message="every record processed")
        c.stop()
    finally:
        for m in members:
            m.kill()
    assert all(m.records for m in members)
    assert {p for p, *_ in c.records} == set(ALL)  # c ended up with every partition
    duplicates = check_once(members, expected)
    # Only b's in-flight records (SIGKILL between processing and the commit's answer) may come twice.
    assert duplicates <= len([f for m in members for f in m.failed]) + PARTITIONS


@pytest.mark.parametrize("client", CLIENTS)
def test_restarted_consumer_resumes_after_its_last_commit(group_broker, client):
    bootstrap = group_broker.bootstrap
    topic, group = names(client, "resume")
    create_topic(bootstrap, topic, 2)
    first_batch = produce(bootstrap, topic, "first", partitions=2)
    first = MemberProcess(client, bootstrap, topic, group, name="first")
    try:
        wait_until(lambda: len(first.committed) >= len(first_batch), 30, message="first batch committed")
        first.stop()
    finally:
        first.kill()
    second_batch = produce(bootstrap, topic, "second", partitions=2)
    second = MemberProcess(client, bootstrap, topic, group, name="second")
    try:
        wait_until(lambda: processed([second]) >= set(second_batch), 30, message="second batch processed")
        second.stop()
    finally:
        second.kill()
    assert processed([second]) == set(second_batch)  # nothing again, nothing skipped
    last = {p: max(o for q, o, _ in first.committed if q == p) for p in (0, 1)}
    starts = {p: min(o for q, o, _, _ in second.records if q == p) for p in (0, 1)}
    assert starts == {p: last[p] + 1 for p in (0, 1)}


def test_broker_restart_keeps_every_committed_offset(broker_factory):
    from kafka import KafkaAdminClient

    broker = broker_factory("--flush", "always")
    bootstrap = broker.bootstrap
    runs = {}
    for client in CLIENTS:
        topic, group = names(client, "restart")
        create_topic(bootstrap, topic, 3)
        runs[client] = (topic, group, produce(bootstrap, topic, "old", partitions=3))
    members = {client: MemberProcess(client, bootstrap, topic, group, name=client)
               for client, (topic, group, _) in runs.items()}
    try:
        for client, member in members.items():
            wait_until(lambda m=member, n=len(runs[client][2]): len(m.committed) >= n, 30,
                       message=f"{client} committed everything")
            member.stop()
    finally:
        for member in members.values():
            member.kill()
    broker.restart(clean=False)  # SIGKILL: with --flush always every acknowledged commit is on disk
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for client, (topic, group, produced) in runs.items():
            offsets = admin.list_group_offsets([group])[group]
            assert {tp.partition: om.offset for tp, om in offsets.items()} == {p: 10 for p in range(3)}, client
            assert {g["group_id"]: g.get("group_state") for g in admin.list_groups()}[group] == "Empty"
    finally:
        admin.close()
    resumed = {}
    try:
        for client, (topic, group, _) in runs.items():
            runs[client] = (topic, group, produce(bootstrap, topic, "new", partitions=3))
            resumed[client] = MemberProcess(client, bootstrap, topic, group, name=f"{client}-again")
        for client, member in resumed.items():
            new = set(runs[client][2])
            wait_until(lambda m=member, n=new: processed([m]) >= n, 30, message=f"{client} resumed")
            member.stop()
    finally:
        for member in resumed.values():
            member.kill()
    for client, member in resumed.items():
        assert processed([member]) == set(runs[client][2]), client


@pytest.mark.parametrize("client", CLIENTS)
def test_static_member_restart_keeps_its_partitions_without_a_rebalance(group_broker, client):
    bootstrap = group_broker.bootstrap
    topic, group = names(client, "static")
    create_topic(bootstrap, topic, PARTITIONS)
    a = MemberProcess(client, bootstrap, topic, group, name="a", instance="instance-a")
    b = MemberProcess(client, bootstrap, topic, group, name="b", instance="instance-b")
    members = [a, b]
    try:
        wait_split([a, b])
        before_a, seen_by_b = a.parts, len(b.assignments)
        a.kill()  # well within the session timeout, its successor takes over its instance id
        again = MemberProcess(client, bootstrap, topic, group, name="a-again", instance="instance-a")
        members.append(again)
        wait_split([again, b], timeout=5)  # long before the 6 s session timeout
        assert again.parts == before_a
        assert len(b.assignments) == seen_by_b  # b never saw a rebalance
        view = admin_view(client, bootstrap, group)
        assert view["state"].lower() == "stable" and len(view["assignments"]) == 2
    finally:
        for m in members:
            m.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_simple_consumer_commits_without_joining(group_broker, client):
    """assign() + commit with a group id but no membership (generation -1), as Kafka accepts."""
    bootstrap = group_broker.bootstrap
    topic, group = names(client, "simple")
    create_topic(bootstrap, topic, 2)
    if client == "confluent-kafka":
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
            consumer.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 9)], asynchronous=False)
            got = {tp.partition: tp.offset for tp in consumer.committed(
                [TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)}
        finally:
            consumer.close()
    elif client == "kafka-python":
        from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
            consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(7, "", -1),
                             TopicPartition(topic, 1): OffsetAndMetadata(9, "", -1)})
            got = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
        finally:
            consumer.close()
    else:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def run():
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await consumer.start()
            try:
                consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
                await consumer.commit({TopicPartition(topic, 0): 7, TopicPartition(topic, 1): 9})
                return {p: await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
            finally:
                await consumer.stop()

        got = asyncio.run(run())
    assert got == {0: 7, 1: 9}
    view = admin_view(client, bootstrap, group)
    assert view["listed"] and view["state"].lower() == "empty" and view["assignments"] == []
