"""``logbroker status`` against an in-process broker, and DescribeLogDirs as
kafka-python's admin client asks for it."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from logbroker import embedded
from logbroker.cli.main import main
from logbroker.cli.status import human_bytes
from logbroker.client import SyncAdmin, SyncConsumer, SyncProducer


@pytest.fixture(scope="module")
def busy_broker():
    """A broker with two topics, 25 records and a group that committed 4 of 15."""
    with embedded(num_partitions=1) as broker:
        broker.create_topic("orders", 3)
        broker.create_topic("audit", 1)
        with SyncProducer(broker.bootstrap_servers) as producer:
            for i in range(15):
                producer.send("orders", b"order-%d" % i, partition=i % 3).result(10)
            for i in range(10):
                producer.send("audit", b"a" * 200).result(10)
        with SyncConsumer(broker.bootstrap_servers, group_id="billing", auto_offset_reset="earliest",
                          enable_auto_commit=False) as consumer:
            consumer.subscribe(["orders"])
            deadline = time.monotonic() + 20
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.getmany(timeout=0.5)
            consumer.commit({("orders", 0): 4, ("orders", 1): 0, ("orders", 2): 5}, timeout=10)
        yield broker


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, ["status", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_text_status_shows_topics_sizes_groups_and_lag(busy_broker):
    with SyncAdmin(busy_broker.bootstrap_servers) as admin:
        [logdir] = admin.describe_log_dirs()
    orders = sum(size for tp, size in logdir.sizes.items() if tp.topic == "orders")
    audit = logdir.sizes[("audit", 0)]
    out = _run("-b", busy_broker.bootstrap_servers)
    assert len(out.splitlines()) < 25  # one screen
    assert f"Log dir {logdir.path}: " in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["orders"][1:3] == ["3", "15"] and " ".join(rows["orders"][3:]) == human_bytes(orders)
    assert rows["audit"][1:3] == ["1", "10"] and " ".join(rows["audit"][3:]) == human_bytes(audit)
    assert "__consumer_offsets" not in rows  # internal topics only with --internal
    # committed 4, 0, 5 of 5 records each: lag 1 + 5 + 0
    assert rows["billing"] == ["billing", "classic", "Empty", "0", "6"]

    per_partition = _run("-b", busy_broker.bootstrap_servers, "--partitions", "--internal")
    lines = [line.split() for line in per_partition.splitlines()]
    assert ["orders", "1", "0", "5"] in [line[:4] for line in lines]
    assert any(line and line[0] == "__consumer_offsets" for line in lines)


def test_json_status_has_every_partition(busy_broker):
    status = json.loads(_run("-b", busy_broker.bootstrap_servers, "--json"))
    topics = {t["name"]: t for t in status["topics"]}
    assert [p["log_end"] for p in topics["orders"]["partitions"]] == [5, 5, 5]
    assert [p["log_start"] for p in topics["orders"]["partitions"]] == [0, 0, 0]
    assert topics["audit"]["records"] == 10 and topics["audit"]["size"] > 10 * 200
    assert topics["__consumer_offsets"]["internal"] is True
    [logdir] = status["log_dirs"]
    assert logdir["size"] == sum(t["size"] for t in status["topics"])
    assert logdir["usable_bytes"] > 0 and logdir["total_bytes"] >= logdir["usable_bytes"]
    assert status["brokers"][0]["port"] == busy_broker.port
    [group] = status["groups"]
    assert group == {"group": "billing", "type": "classic", "state": "Empty", "members": 0, "lag": 6}


def test_status_of_an_unreachable_broker_fails_cleanly():
    started = time.monotonic()
    result = CliRunner().invoke(main, ["status", "-b", "127.0.0.1:1", "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "127.0.0.1:1" in result.output
    assert time.monotonic() - started < 10


def test_kafka_python_describe_log_dirs(busy_broker):
    kafka_admin = pytest.importorskip("kafka.admin")
    with SyncAdmin(busy_broker.bootstrap_servers) as admin:
        [ours] = admin.describe_log_dirs()
    client = kafka_admin.KafkaAdminClient(bootstrap_servers=busy_broker.bootstrap_servers)
    try:
        [answer] = client.describe_log_dirs()
        [only_audit] = client.describe_log_dirs({"audit": [0]})
    finally:
        client.close()
    assert answer["broker"] == 0
    [logdir] = answer["log_dirs"]
    assert logdir["error_code"] == 0 and logdir["log_dir"] == ours.path
    sizes = {(t["name"], p["partition_index"]): p["partition_size"] for t in logdir["topics"] for p in t["partitions"]}
    assert sizes == {(tp.topic, tp.partition): size for tp, size in ours.sizes.items()}
    assert {(t["name"], p["partition_index"]) for d in only_audit["log_dirs"] for t in d["topics"]
            for p in t["partitions"]} == {("audit", 0)}


def test_human_bytes():
    assert [human_bytes(n) for n in (-1, 0, 1023, 1536, 5 * 1024**3)] == ["?", "0 B", "1023 B", "1.5 KiB", "5.0 GiB"]


def test_status_lists_share_groups():
    import trio

    from logbroker.client import Producer
    from logbroker.client.queue import QueueConsumer

    async def consume_some(bootstrap: str) -> None:
        with trio.fail_after(20):
            async with QueueConsumer(bootstrap, "jobs", group_id="workers") as queue:
                async with Producer(bootstrap) as producer:
                    got = []
                    while not got:  # the group starts at the log end: produce until it sees records
                        await (await producer.send("jobs", b"job", partition=0))
                        with trio.move_on_after(0.5):
                            got.append(await queue.get())
                    await got[0].ack()

    with embedded() as broker:
        broker.create_topic("jobs", 1)
        trio.run(consume_some, broker.bootstrap_servers)
        status = json.loads(_run("-b", broker.bootstrap_servers, "--format", "json"))
        text = _run("-b", broker.bootstrap_servers)
    [group] = status["groups"]
    assert (group["group"], group["type"]) == ("workers", "share")
    assert group["lag"] is None or group["lag"] >= 0
    assert any(line.split()[:2] == ["workers", "share"] for line in text.splitlines())


def test_status_shows_a_consumer_protocol_group_with_its_members():
    """A KIP-848 group is described by ConsumerGroupDescribe: its state and
    members, not the "Dead, 0 members" DescribeGroups gives for it."""
    with embedded() as broker:
        broker.create_topic("clicks", 2)
        with SyncProducer(broker.bootstrap_servers) as producer:
            for i in range(6):
                producer.send("clicks", b"c%d" % i, partition=i % 2).result(10)
        with SyncConsumer(broker.bootstrap_servers, group_id="counters", group_protocol="consumer",
                          auto_offset_reset="earliest", enable_auto_commit=False) as consumer:
            consumer.subscribe(["clicks"])
            deadline = time.monotonic() + 20
            while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
                consumer.getmany(timeout=0.2)
            consumer.commit({("clicks", 0): 3, ("clicks", 1): 1}, timeout=10)
            status = json.loads(_run("-b", broker.bootstrap_servers, "--json"))
            text = _run("-b", broker.bootstrap_servers)
    [group] = status["groups"]
    assert group == {"group": "counters", "type": "consumer", "state": "Stable", "members": 1, "lag": 2}
    assert ["counters", "consumer", "Stable", "1", "2"] in [line.split() for line in text.splitlines()]
