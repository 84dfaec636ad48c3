"""``logbroker transactions list|describe|describe-producers|abort``, ``consume --isolation``
and ``dump`` of control batches, against ``logbroker serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from logbroker.cli.main import main
from logbroker.client import SyncAdmin, SyncProducer

from client_support import create_topic

ck = pytest.importorskip("confluent_kafka")


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_list_and_describe_an_open_transaction(lb, topic):
    trio.run(create_topic, lb.bootstrap, topic, 2)
    b = ("--bootstrap", lb.bootstrap)
    tid = f"tx-{topic}"
    with SyncProducer(lb.bootstrap, transactional_id=tid, linger_ms=0) as producer:
        producer.begin_transaction(timeout=20)
        producer.send(topic, b"a", partition=1).result(timeout=10)
        listed = run("transactions", "list", *b).output
        line = next(line for line in listed.splitlines() if line.startswith(tid))
        assert line.split()[1:] == ["0", str(producer.statistics().producer_id), "Ongoing"]
        assert "TransactionalId" in listed and "TransactionState" in listed
        only = json.loads(run("transactions", "list", "--state", "Ongoing", "--pattern", f"^{tid}$",
                              "--format", "json", *b).output)
        assert only == [{"transactional_id": tid, "coordinator": 0,
                         "producer_id": producer.statistics().producer_id, "state": "Ongoing"}]
        described = json.loads(run("transactions", "describe", tid, "--format", "json", *b).output)
        assert described["state"] == "Ongoing" and described["partitions"] == [[topic, 1]]
        assert described["timeout_ms"] == 60_000 and described["duration_ms"] >= 0
        text = run("transactions", "describe", tid, *b).output
        assert "Ongoing" in text and f"{topic}-1" in text
        producers = run("transactions", "describe-producers", "-t", topic, "-p", "1", *b).output
        assert str(producer.statistics().producer_id) in producers
        producer.commit_transaction(timeout=20)
    described = json.loads(run("transactions", "describe", tid, "--format", "json", *b).output)
    assert described["state"] == "CompleteCommit" and described["partitions"] == []
    missing = run("transactions", "describe", f"nobody-{topic}", *b, ok=False)
    assert missing.exit_code == 1 and "TRANSACTIONAL_ID_NOT_FOUND" in missing.output


def test_abort_a_hanging_transaction_then_consume_by_isolation_and_dump_markers(lb, topic):
    trio.run(create_topic, lb.bootstrap, topic, 1)
    b = ("--bootstrap", lb.bootstrap)
    with SyncProducer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
        producer.begin_transaction(timeout=20)
        producer.send(topic, b"committed", partition=0)
        producer.commit_transaction(timeout=20)  # offsets 0 and the marker at 1
    hanging = ck.Producer({"bootstrap.servers": lb.bootstrap, "transactional.id": f"ck-{topic}",
                           "transaction.timeout.ms": 600_000})
    hanging.init_transactions(20)
    hanging.begin_transaction()
    hanging.produce(topic, value=b"hanging", partition=0)
    hanging.flush(10)  # offset 2, never ended
    try:
        committed_only = run("consume", topic, "--from-beginning", "--exit-at-end", "--isolation",
                             "read_committed", *b).output
        assert committed_only.split() == ["committed"]  # stops at the last stable offset, 2
        everything = run("consume", topic, "--from-beginning", "--exit-at-end", "--isolation",
                         "read_uncommitted", *b).output
        assert everything.split() == ["committed", "hanging"]  # never a marker

        usage = run("transactions", "abort", "-t", topic, "-p", "0", "--producer-id", "5", *b, ok=False)
        assert usage.exit_code == 2
        wrong = run("transactions", "abort", "-t", topic, "-p", "0", "--start-offset", "1", *b, ok=False)
        assert wrong.exit_code == 1 and "no open transaction" in wrong.output
        assert "aborted" in run("transactions", "abort", "-t", topic, "-p", "0", "--start-offset", "2", *b).output
        committed_only = run("consume", topic, "--from-beginning", "--exit-at-end", "--isolation",
                             "read_committed", *b).output
        assert committed_only.split() == ["committed"]  # the hanging records are aborted now
        with SyncAdmin(lb.bootstrap) as admin:
            ends = admin.list_offsets({(topic, 0): "latest"}, timeout=10)
        assert [a.offset for a in ends.values()] == [4]  # LSO = high watermark: the abort marker is at 3
    finally:
        del hanging

    dumped = run("dump", str(Path(lb.data_dir) / f"{topic}-0")).output
    markers = [line for line in dumped.splitlines() if "endTxnMarker" in line]
    assert len(markers) == 2, dumped
    assert "endTxnMarker: COMMIT" in markers[0] and "offset: 1 " in markers[0]
    assert "endTxnMarker: ABORT" in markers[1] and "offset: 3 " in markers[1]
    assert all("coordinatorEpoch:" in m and "producerEpoch:" in m for m in markers)
    assert "[transactional, control]" in dumped
    assert "firstOffset: 2 lastOffset: 3" in dumped  # the .txnindex entry of the abort
