"""``share.isolation.level``: a share group reading committed records gets the
records of committed transactions only, and waits at the last stable offset;
one reading uncommitted records gets every data record. confluent-kafka's
transactional producer and ShareConsumer against a real ``logbroker serve``."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from share_support import ShareMemberProcess, create_topic, set_group_configs, wait_until


def _transactional_log(bootstrap: str, topic: str) -> Producer:
    """committed c1 c2, aborted a1 a2, committed c3, then o1 in a transaction left
    open (returned, so the caller can finish it), then n1 outside any transaction."""
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-tx"})
    txn.init_transactions(20)
    for values, commit in ((["c1", "c2"], True), (["a1", "a2"], False), (["c3"], True)):
        txn.begin_transaction()
        for value in values:
            txn.produce(topic, value.encode(), partition=0)
        txn.flush(20)  # in the log before the transaction ends (an abort would drop what is unsent)
        (txn.commit_transaction if commit else txn.abort_transaction)(20)
    txn.begin_transaction()
    txn.produce(topic, b"o1", partition=0)
    txn.flush(20)
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce(topic, b"n1", partition=0)
    plain.flush(20)
    return txn


@pytest.mark.parametrize("level, before, after", [
    ("read_committed", ["c1", "c2", "c3"], ["c1", "c2", "c3", "o1", "n1"]),
    ("read_uncommitted", ["c1", "c2", "a1", "a2", "c3", "o1", "n1"], ["c1", "c2", "a1", "a2", "c3", "o1", "n1"]),
])
def test_share_groups_honour_the_isolation_level(share_broker, names, level, before, after):
    topic, group = names(level)
    create_topic(share_broker.bootstrap, topic, 1)
    set_group_configs(share_broker.bootstrap, group, **{"share.auto.offset.reset": "earliest",
                                                        "share.isolation.level": level})
    txn = _transactional_log(share_broker.bootstrap, topic)
    member = ShareMemberProcess(share_broker.bootstrap, group, topic)
    try:
        assert member.ready.wait(20), "share consumer did not start"
        wait_until(lambda: len(member.acked) >= len(before), 30, what=f"{before} acknowledged")
        time.sleep(1.0)  # nothing beyond the last stable offset may arrive meanwhile
        assert member.values() == before
        txn.commit_transaction(20)  # the open transaction commits: o1 and n1 become stable
        wait_until(lambda: len(member.acked) >= len(after), 30, what=f"{after} acknowledged")
        time.sleep(0.3)
        assert member.values() == after
    finally:
        member.stop()
