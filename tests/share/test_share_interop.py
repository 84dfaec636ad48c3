"""confluent-kafka's ShareConsumer (librdkafka's KIP-932 preview) against a real
``logbroker serve``. Each consumer runs in its own process (``share_member.py``,
explicit acknowledgements, ``commit_sync`` after every poll); the broker's
record lock is 2 s so abandoned records come back quickly."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from share_support import (
    LOCK_MS, ShareMemberProcess, consume_all, create_topic, produce, set_group_configs, wait_until,
)


def start(bootstrap, group, topic, *args) -> ShareMemberProcess:
    member = ShareMemberProcess(bootstrap, group, topic, *args)
    assert member.ready.wait(20), "share consumer did not start"
    return member


def test_a_share_consumer_consumes_and_acknowledges(share_broker, names):
    topic, group = names("one")
    create_topic(share_broker.bootstrap, topic, 2)
    set_group_configs(share_broker.bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    values = [f"v{i}" for i in range(300)]
    produce(share_broker.bootstrap, topic, values, partitions=2, batch=25)
    member = start(share_broker.bootstrap, group, topic)
    try:
        wait_until(lambda: len(member.acked) >= 300, 30, what="all records acknowledged")
        assert sorted(member.values()) == sorted(values)
        assert {g[2] for g in member.got} == {1}
        assert all(kind == "accept" for _, _, kind in member.acked)
    finally:
        member.stop()


def test_two_share_consumers_process_every_record_exactly_once(share_broker, names):
    topic, group = names("two")
    create_topic(share_broker.bootstrap, topic, 3)
    set_group_configs(share_broker.bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    values = [f"v{i}" for i in range(1500)]
    members = [start(share_broker.bootstrap, group, topic, "--max-records", "30", "--sleep", "0.01")
               for _ in range(2)]
    try:
        time.sleep(0.5)  # both subscribed and fetching before the records arrive
        produce(share_broker.bootstrap, topic, values, partitions=3, batch=10)
        wait_until(lambda: sum(len(m.acked) for m in members) >= 1500, 60, what="all records acknowledged")
        time.sleep(0.5)  # nothing more may arrive
        processed = Counter(v for m in members for v in m.values())
        assert set(processed) == set(values)
        assert max(processed.values()) == 1, [v for v, n in processed.items() if n > 1][:10]
        assert all(m.got for m in members), "both consumers should have taken part"
    finally:
        for m in members:
            m.stop()


def test_records_of_a_killed_consumer_reach_the_other_after_the_lock(share_broker, names):
    topic, group = names("kill")
    create_topic(share_broker.bootstrap, topic, 2)
    # The killed member keeps its partitions until its session times out (Kafka's
    # SimpleAssignor gives the late member only the partition its id hashes to).
    set_group_configs(share_broker.bootstrap, group, **{
        "share.auto.offset.reset": "earliest", "share.session.timeout.ms": "3000",
        "share.heartbeat.interval.ms": "500",
    })
    values = [f"v{i}" for i in range(100)]
    produce(share_broker.bootstrap, topic, values, partitions=2)
    holder = start(share_broker.bootstrap, group, topic, "--hold")
    wait_until(lambda: any("holding" in e for e in holder.events), 30, what="the first consumer to hold records")
    acquired_at = time.monotonic()
    held = set(holder.values())
    assert held and {g[2] for g in holder.got} == {1}
    other = start(share_broker.bootstrap, group, topic)
    try:
        holder.kill()
        time.sleep(0.3)
        if time.monotonic() - acquired_at < LOCK_MS / 1000 * 0.8:  # (a slow machine may be past it already)
            assert not held & set(other.values()), "held records came back before the lock expired"
        wait_until(lambda: held <= set(other.values()), 30, what="the held records to reach the other consumer")
        assert time.monotonic() - acquired_at >= LOCK_MS / 1000 * 0.9
        counts = {g[3]: g[2] for g in other.got}
        assert {counts[v] for v in held} == {2}
        wait_until(lambda: len(other.acked) >= len(values), 30, what="everything acknowledged")
        assert sorted(set(other.values())) == sorted(values)
    finally:
        other.stop()


def test_rejected_and_exhausted_records_go_to_the_dead_letter_topic(share_broker, names):
    topic, group = names("dlq")
    dlq = f"dlq.{topic}"
    create_topic(share_broker.bootstrap, topic, 1)
    set_group_configs(share_broker.bootstrap, group, **{
        "share.auto.offset.reset": "earliest", "errors.deadletterqueue.topic.name": dlq,
    })
    produce(share_broker.bootstrap, topic, [f"v{i}" for i in range(10)])
    member = start(share_broker.bootstrap, group, topic, "--reject", "v2,v7", "--release", "v5")
    try:
        records = wait_until(
            lambda: (found := consume_all(share_broker.bootstrap, dlq, 3, 2)) and len(found) >= 3 and found,
            30, what="three dead letters",
        )
        by_value = {r.value().decode(): dict(r.headers()) for r in records}
        assert set(by_value) == {"v2", "v5", "v7"}
        for value, offset in (("v2", 2), ("v7", 7)):
            headers = by_value[value]
            assert headers["__dlq.errors.reason"] == b"REJECTED"
            assert headers["__dlq.errors.topic"] == topic.encode()
            assert headers["__dlq.errors.partition"] == b"0"
            assert headers["__dlq.errors.offset"] == str(offset).encode()
            assert headers["__dlq.errors.delivery.count"] == b"1"
            assert headers["__dlq.errors.group.id"] == group.encode()
        assert by_value["v5"]["__dlq.errors.reason"] == b"DELIVERY_COUNT_EXCEEDED"
        assert by_value["v5"]["__dlq.errors.delivery.count"] == b"5"
        # the consumer saw v5 five times (its report may trail the dead letter a little)
        deliveries = wait_until(lambda: (d := [g[2] for g in list(member.got) if g[3] == "v5"]) and len(d) >= 5 and d,
                                10, what="five deliveries of v5")
        time.sleep(0.3)
        assert sorted(g[2] for g in member.got if g[3] == "v5") == sorted(deliveries) == [1, 2, 3, 4, 5]
    finally:
        member.stop()


@pytest.mark.parametrize("clean", [True, False], ids=["graceful", "sigkill"])
def test_a_broker_restart_redelivers_nothing_acknowledged_and_loses_nothing(broker_factory, tmp_path, names, clean):
    config = tmp_path / "broker.toml"
    config.write_text(f"group_share_record_lock_duration_ms = {LOCK_MS}\n")
    broker = broker_factory("--config", str(config))
    topic, group = names("restart")
    create_topic(broker.bootstrap, topic, 2)
    set_group_configs(broker.bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    values = [f"v{i}" for i in range(2000)]
    produce(broker.bootstrap, topic, values, partitions=2, batch=20)
    member = start(broker.bootstrap, group, topic, "--max-records", "50", "--sleep", "0.02")
    try:
        wait_until(lambda: len(member.acked) >= 400, 30, what="some records acknowledged")
        broker.restart(clean=clean)
        acked_before = {(p, o) for p, o, _ in list(member.acked)}
        got_before = len(member.got)
        assert len(acked_before) < len(values) - 200, "the restart should come mid-way"
        wait_until(lambda: {v for v in member.values()} >= set(values) and
                   len({(p, o) for p, o, _ in member.acked}) >= len(values), 60, what="everything acknowledged")
        after = {(g[0], g[1]) for g in member.got[got_before:]}
        assert not after & acked_before, "acknowledged records were delivered again"
        assert set(member.values()) == set(values)
    finally:
        member.stop()
