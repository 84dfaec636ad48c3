"""Share-group progress against a real broker: waiting share fetches wake when
locks expire, and ``groups describe`` / ``Admin.share_group_progress`` /
Kafka's DescribeShareGroupOffsets show where a queue stands."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import trio

from logbroker.client import Admin, Producer
from logbroker.client.queue import QueueConsumer
from share_support import LOCK_MS, ShareMemberProcess, create_topic, produce, set_group_configs, wait_until


async def test_a_waiting_share_fetch_wakes_when_a_lock_expires(share_broker, names):
    """The held records reach a consumer in a long poll (30 s max wait) as soon
    as their lock expires, not when its poll ends."""
    topic, group = names("wake")
    bootstrap = share_broker.bootstrap
    create_topic(bootstrap, topic, 1)
    set_group_configs(bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    produce(bootstrap, topic, [f"v{i}" for i in range(5)])
    holder = ShareMemberProcess(bootstrap, group, topic, "--hold")
    try:
        await trio.to_thread.run_sync(
            lambda: wait_until(lambda: any("holding" in e for e in holder.events), 30, what="records held"))
        acquired_at = time.monotonic()
        held = set(holder.values())
        assert held == {f"v{i}" for i in range(5)}
        with trio.fail_after(20):
            async with QueueConsumer(bootstrap, topic, group_id=group, max_wait_ms=30_000) as queue:
                got = []
                while len(got) < len(held):
                    msg = await queue.get()
                    got.append(msg)
                    await msg.ack()
        waited = time.monotonic() - acquired_at
        assert {m.value.decode() for m in got} == held
        assert {m.delivery_count for m in got} == {2}
        assert LOCK_MS / 1000 * 0.9 <= waited < LOCK_MS / 1000 + 6, waited
    finally:
        holder.kill()


async def test_groups_describe_counts_in_flight_acknowledged_and_archived(share_broker, names):
    topic, group = names("progress")
    bootstrap = share_broker.bootstrap
    async with Admin(bootstrap) as admin:
        await admin.create_topic(topic, 1)
    set_group_configs(bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    async with Producer(bootstrap) as producer:
        for i in range(12):
            producer.send_nowait(topic, b"v%d" % i, partition=0)
    with trio.fail_after(30):
        async with QueueConsumer(bootstrap, topic, group_id=group) as queue:
            msgs = [await queue.get() for _ in range(12)]
            held, acked, rejected = msgs[:3], msgs[3:8], msgs[8:10]
            for m in acked:
                await m.ack()
            for m in rejected:
                await m.reject()

            async with Admin(bootstrap) as admin:
                async def settled():
                    for _ in range(50):
                        [p] = await admin.share_group_progress(group)
                        # Settled: the acks and rejects applied, and the
                        # consumer's own prefetch answered (nothing available).
                        if p.acknowledged == 5 and p.archived == 2 and p.available == 0:
                            return p
                        await trio.sleep(0.1)
                    return p
                progress = await settled()
            assert (progress.topic, progress.partition, progress.start_offset, progress.log_end) == (topic, 0, 0, 12)
            assert (progress.acknowledged, progress.archived) == (5, 2)
            # v0-v2 held, v10-v11 acquired in the same fetch and not answered: 5 in flight.
            assert progress.in_flight == 5 and progress.lag == 5 and progress.available == 0

            out = await trio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-m", "logbroker", "groups", "describe", group, "--bootstrap", bootstrap,
                 "--format", "json"], capture_output=True, text=True, timeout=60))
            assert out.returncode == 0, out.stderr
            described = json.loads(out.stdout)
            assert described["type"] == "share" and len(described["members"]) == 1
            [row] = described["partitions"]
            assert {k: row[k] for k in ("start_offset", "log_end", "lag", "in_flight", "acknowledged", "archived")} \
                == {"start_offset": 0, "log_end": 12, "lag": 5, "in_flight": 5, "acknowledged": 5, "archived": 2}
            text = await trio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-m", "logbroker", "groups", "describe", group, "--bootstrap", bootstrap],
                capture_output=True, text=True, timeout=60))
            assert "IN-FLIGHT" in text.stdout and "ARCHIVED" in text.stdout
            for m in held + msgs[10:]:
                await m.ack()
    async with Admin(bootstrap) as admin:
        for _ in range(50):
            [p] = await admin.share_group_progress(group)
            if p.start_offset == 12:
                break
            await trio.sleep(0.1)
    assert (p.start_offset, p.lag, p.in_flight) == (12, 0, 0)


def test_kafka_describe_share_group_offsets_answers(share_broker, names):
    """DescribeShareGroupOffsets as Kafka's admin tools send it (v1: with lag)."""
    topic, group = names("offsets")
    bootstrap = share_broker.bootstrap
    create_topic(bootstrap, topic, 2)
    set_group_configs(bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    produce(bootstrap, topic, [f"v{i}" for i in range(20)], partitions=2)
    member = ShareMemberProcess(bootstrap, group, topic)
    try:
        wait_until(lambda: len(member.acked) >= 20, 30, what="everything acknowledged")
    finally:
        member.stop()

    async def main():
        async with Admin(bootstrap) as admin:
            return await admin.share_group_progress(group)

    progress = trio.run(main)
    assert sorted((p.partition, p.start_offset, p.lag, p.in_flight) for p in progress) == [(0, 10, 0, 0), (1, 10, 0, 0)]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logbroker", *args], capture_output=True, text=True, timeout=60)


def test_groups_config_sets_earliest_and_a_dead_letter_topic_for_the_cli_queue(share_broker, names):
    topic, group = names("config")
    dlq = f"dead-{topic}"
    bootstrap = share_broker.bootstrap
    out = _cli("groups", "config", group, "--bootstrap", bootstrap, "--format", "json",
               "--set", "share.auto.offset.reset=earliest", "--set", f"errors.deadletterqueue.topic.name={dlq}")
    assert out.returncode == 0, out.stderr
    configs = json.loads(out.stdout)["configs"]
    assert configs["share.auto.offset.reset"] == "earliest"
    assert configs["errors.deadletterqueue.topic.name"] == dlq
    bad = _cli("groups", "config", group, "--bootstrap", bootstrap, "--set", "share.auto.offset.reset=sometimes")
    assert bad.returncode != 0 and "sometimes" in (bad.stderr + bad.stdout)

    produce(bootstrap, topic, ["a", "b", "c"])  # before any member: earliest makes them count
    out = _cli("queue", "consume", topic, "--group", group, "--bootstrap", bootstrap, "--reject", "-n", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["a", "b", "c"]
    dead = _cli("consume", dlq, "--bootstrap", bootstrap, "--from-beginning", "--exit-at-end", "--format", "json")
    assert dead.returncode == 0, dead.stderr
    records = [json.loads(line) for line in dead.stdout.splitlines()]
    assert [r["value"] for r in records] == ["a", "b", "c"]
    assert [dict(r["headers"])["__dlq.errors.reason"] for r in records] == ["REJECTED"] * 3
    assert [dict(r["headers"])["__dlq.errors.offset"] for r in records] == ["0", "1", "2"]

    out = _cli("groups", "config", group, "--bootstrap", bootstrap, "--format", "json",
               "--delete", "errors.deadletterqueue.topic.name")
    assert json.loads(out.stdout)["configs"]["errors.deadletterqueue.topic.name"] in ("", None)


def test_cli_queue_consume_leaves_the_group_on_sigterm(share_broker, names):
    """Even started with SIGINT ignored (``cmd &`` in a script), SIGTERM closes the
    consumer cleanly: it exits 0 and leaves the group at once."""
    import signal

    topic, group = names("sigterm")
    bootstrap = share_broker.bootstrap
    create_topic(bootstrap, topic, 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logbroker", "queue", "consume", topic, "--group", group, "--bootstrap", bootstrap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        def members():
            out = _cli("groups", "describe", group, "--bootstrap", bootstrap, "--format", "json")
            return json.loads(out.stdout)["members"] if out.returncode == 0 else None

        wait_until(lambda: members(), 30, what="the queue consumer to join")
        produce(bootstrap, topic, ["one"])
        line = proc.stdout.readline()
        assert line.strip() == "one"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert members() == []
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_with_flush_always_acknowledgements_survive_a_sigkill(broker_factory):
    """flush=always: a ShareFetch or ShareAcknowledge is answered only after its
    acknowledgements are fsynced (in a worker thread), so a SIGKILL right after
    loses none of them."""
    broker = broker_factory("--flush", "always")
    async with Admin(broker.bootstrap) as admin:
        await admin.create_topic("jobs", 1)
        await admin.alter_group_configs("g", {"share.auto.offset.reset": "earliest"})
    async with Producer(broker.bootstrap) as producer:
        for i in range(20):
            producer.send_nowait("jobs", b"job-%d" % i, partition=0)
    with trio.fail_after(30):
        async with QueueConsumer(broker.bootstrap, "jobs", group_id="g") as queue:
            for _ in range(20):
                await (await queue.get()).ack()
        # Closing sent the last acknowledgements and had them answered.
    broker.kill()
    broker.start()
    async with Admin(broker.bootstrap) as admin:
        [p] = await admin.share_group_progress("g")
    assert (p.start_offset, p.lag) == (20, 0)
    with trio.move_on_after(2):
        async with QueueConsumer(broker.bootstrap, "jobs", group_id="g") as queue:
            msg = await queue.get()
            raise AssertionError(f"an acknowledged record came back: {msg}")


def test_reset_offsets_of_a_share_group_replays_or_skips(share_broker, names):
    """``groups reset-offsets`` on an empty share group moves its start offsets
    (AlterShareGroupOffsets): --to-earliest delivers everything again,
    --to-latest skips the backlog; refused while a member is in the group."""
    topic, group = names("reset")
    bootstrap = share_broker.bootstrap
    create_topic(bootstrap, topic, 1)
    assert _cli("groups", "config", group, "--bootstrap", bootstrap,
                "--set", "share.auto.offset.reset=earliest").returncode == 0
    produce(bootstrap, topic, ["a", "b", "c"])
    first = _cli("queue", "consume", topic, "--group", group, "--bootstrap", bootstrap, "-n", "3")
    assert first.stdout.split() == ["a", "b", "c"]

    out = _cli("groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--bootstrap", bootstrap,
               "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["partitions"] == [
        {"topic": topic, "partition": 0, "old": 3, "new": 0}]
    again = _cli("queue", "consume", topic, "--group", group, "--bootstrap", bootstrap, "-n", "3")
    assert again.stdout.split() == ["a", "b", "c"]

    produce(bootstrap, topic, ["d", "e"])
    out = _cli("groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--bootstrap", bootstrap)
    assert out.returncode == 0, out.stderr
    produce(bootstrap, topic, ["f"])
    skipped = _cli("queue", "consume", topic, "--group", group, "--bootstrap", bootstrap, "-n", "1")
    assert skipped.stdout.split() == ["f"]

    member = ShareMemberProcess(bootstrap, group, topic)
    try:
        wait_until(lambda: json.loads(_cli("groups", "describe", group, "--bootstrap", bootstrap,
                                           "--format", "json").stdout)["members"], 30, what="a member")
        busy = _cli("groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--bootstrap", bootstrap)
        assert busy.returncode != 0 and "active members" in busy.stderr + busy.stdout
    finally:
        member.stop()


async def test_admin_alter_share_group_offsets_errors(share_broker, names):
    from logbroker.errors import KafkaError

    topic, group = names("alter")
    async with Admin(share_broker.bootstrap) as admin:
        await admin.create_topic(topic, 1)
        try:
            await admin.alter_share_group_offsets(group, {(topic, 0): 0})
        except KafkaError as exc:
            assert exc.code == 69  # GROUP_ID_NOT_FOUND: no such share group yet
        else:
            raise AssertionError("a group that does not exist was altered")
        await admin.alter_group_configs(group, {"share.auto.offset.reset": "earliest"})
        try:
            await admin.alter_share_group_offsets(group, {(topic, 0): 5})
        except KafkaError as exc:
            assert exc.code == 1  # OFFSET_OUT_OF_RANGE: the log is empty
        else:
            raise AssertionError("an offset past the log end was accepted")
        await admin.alter_share_group_offsets(group, {(topic, 0): 0})
        [p] = await admin.share_group_progress(group)
        assert (p.topic, p.start_offset) == (topic, 0)


async def test_groups_delete_removes_an_empty_share_group_for_good(broker_factory):
    broker = broker_factory()
    async with Admin(broker.bootstrap) as admin:
        await admin.create_topic("jobs", 1)
        await admin.alter_group_configs("q", {"share.auto.offset.reset": "earliest"})
    async with Producer(broker.bootstrap) as producer:
        await (await producer.send("jobs", b"one", partition=0))
    with trio.fail_after(20):
        async with QueueConsumer(broker.bootstrap, "jobs", group_id="q") as queue:
            await (await queue.get()).ack()
            async with Admin(broker.bootstrap) as admin:
                # A share group with a member is not deleted.
                assert (await admin.delete_groups(["q"]))["q"].code == 68  # NON_EMPTY_GROUP
    async with Admin(broker.bootstrap) as admin:
        assert (await admin.delete_groups(["q"])) == {"q": None}
        assert "q" not in [g.group_id for g in await admin.list_groups()]
    broker.kill()
    broker.start()
    async with Admin(broker.bootstrap) as admin:
        assert "q" not in [g.group_id for g in await admin.list_groups()]
        assert (await admin.describe_group_configs("q"))["share.auto.offset.reset"] == "latest"
