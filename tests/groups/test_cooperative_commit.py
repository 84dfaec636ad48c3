"""An OffsetCommit that races a classic (cooperative) rebalance gets Kafka's
answer: ILLEGAL_GENERATION for the generation the group just left, and
REBALANCE_IN_PROGRESS only for a member of the new generation while the
group waits for the leader's SyncGroup (Kafka's ClassicGroup.validateOffsetCommit
checks the member and the generation before the state).

librdkafka's 0113-cooperative_rebalance ``v_commit_during_rebalance`` hit
this: a consumer commits while its own JoinGroup waits for the other
members. The broker answers a connection's requests in order, so the commit
(of the old generation) is handled right after the join completes, with the
group in CompletingRebalance; logbroker used to answer REBALANCE_IN_PROGRESS
there, which librdkafka reports as a failed commit, where Kafka answers
ILLEGAL_GENERATION.
"""

from __future__ import annotations

import collections
import time

import pytest
from brokerproc import unique_topic, wait_until
from group_support import done, join_req

from logbroker.broker.groups import CommitRequest, GroupOutcome as E, GroupState, OffsetValue

confluent_kafka = pytest.importorskip("confluent_kafka")


def test_commit_checks_member_and_generation_before_the_state(coord):
    first = coord.join_group(join_req(client="a"), 0)
    coord.fire_deadlines(1000)
    a = done(first)
    done(coord.sync_group("g", a.generation, a.member_id, {a.member_id: b""}, 1000))
    gen = a.generation

    def commit(generation, member, now):
        req = CommitRequest("g", generation, member, {("t", 0): OffsetValue(5)}, api_version=8)
        return coord.commit_offsets(req, now).errors[("t", 0)]

    b_wait = coord.join_group(join_req(client="b"), 2000)  # a new member: PreparingRebalance
    assert commit(gen, a.member_id, 2001) is E.NONE  # still accepted while preparing
    done(coord.join_group(join_req(member=a.member_id), 2002))
    assert done(b_wait).generation == gen + 1
    assert coord.group("g").state is GroupState.COMPLETING_REBALANCE
    assert commit(gen, a.member_id, 2003) is E.ILLEGAL_GENERATION  # was REBALANCE_IN_PROGRESS
    assert commit(gen + 1, "stranger", 2003) is E.UNKNOWN_MEMBER_ID
    assert commit(gen + 1, a.member_id, 2003) is E.REBALANCE_IN_PROGRESS
    assert commit(-1, "", 2003) is E.UNKNOWN_MEMBER_ID


def test_cooperative_consumer_commit_during_a_rebalance(broker):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    bs = broker.bootstrap
    topic = unique_topic("coop-commit")
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bs})
    for i in range(60):
        producer.produce(topic, value=b"x", partition=i % 6)
    assert producer.flush(10) == 0

    def consumer(name, heartbeat_ms):
        c = Consumer({
            "bootstrap.servers": bs, "group.id": topic, "client.id": name, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
            "heartbeat.interval.ms": heartbeat_ms, "session.timeout.ms": 10_000,
        })
        c.subscribe([topic])
        return c

    # c1 notices a rebalance within 100 ms; the others only at their next heartbeat,
    # so c1's JoinGroup waits for them while c1 keeps committing.
    c1, c2 = consumer("c1", 100), consumer("c2", 1000)
    consumers = [c1, c2]
    try:
        def split():
            for c in consumers:
                c.poll(0.05)
            return all(c.assignment() for c in consumers)

        wait_until(split, 20, what="two members with partitions")
        consumers.append(consumer("c3", 1000))
        results: collections.Counter = collections.Counter()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for c in consumers:
                c.poll(0.02)
            owned = c1.assignment()
            if owned:
                try:
                    c1.commit(offsets=[TopicPartition(topic, tp.partition, 1) for tp in owned], asynchronous=False)
                    results["ok"] += 1
                except KafkaException as exc:
                    results[exc.args[0].name()] += 1
            if results["ILLEGAL_GENERATION"] and all(c.assignment() for c in consumers):
                break
        assert results["REBALANCE_IN_PROGRESS"] == 0, results
        assert results["ILLEGAL_GENERATION"] >= 1, f"no commit raced the rebalance: {results}"
        assert results["ok"] >= 1
    finally:
        for c in consumers:
            c.close()
