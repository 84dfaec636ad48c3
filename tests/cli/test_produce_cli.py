"""``logbroker produce`` as users run it, against a real ``logbroker serve``: streaming
from a pipe that stays open, Ctrl-C, the summary, limits read from the topic, a copy
of a topic through ``consume --format json | produce --format json``, and the
messages for a missing topic or partition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from brokerproc import BrokerProcess, unique_topic, wait_until
from logbroker.cli.main import main
from logbroker.client import NewTopic, SyncAdmin, SyncConsumer, SyncProducer, TopicPartition

CLI = [sys.executable, "-m", "logbroker"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    """One broker for the tests of this module that do not stop it."""
    proc = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    yield proc
    proc.kill()


def create(bootstrap: str, name: str, partitions: int = 1, **configs: str) -> str:
    with SyncAdmin(bootstrap) as admin:
        errors = admin.create_topics([NewTopic(name, partitions, -1, configs)], timeout=20)
    assert errors[name] is None, errors
    return name


def records(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list:
    """Every record of ``topic`` once ``expect`` of them arrived (AssertionError if they do not)."""
    with SyncAdmin(bootstrap) as admin:
        count = len(admin.describe_topics([topic], timeout=10)[0].partitions)
    got: list = []
    with SyncConsumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(count)])
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            got.extend(consumer.getmany(timeout=0.2))
        got.extend(consumer.getmany(timeout=0.2))  # nothing more than expected
    assert len(got) == expect, f"{len(got)} records of {expect}"
    return sorted(got, key=lambda r: (r.partition, r.offset))


def produce(bootstrap: str, topic: str, data: bytes, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "produce", topic, "-b", bootstrap, *args], input=data, capture_output=True,
                          timeout=timeout, env=ENV)


def spawn(bootstrap: str, topic: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "produce", topic, "-b", bootstrap, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """Wait for the command; its status, stdout and stderr (stdin, if still open, is left open)."""
    proc.stdin = None  # communicate() must neither flush a closed stdin nor close an open one
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_a_line_is_sent_while_stdin_stays_open(lb):
    """``tail -f app.log | logbroker produce logs``: each line goes out as it is written."""
    topic = create(lb.bootstrap, unique_topic("stream"))
    proc = spawn(lb.bootstrap, topic)
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        records(lb.bootstrap, topic, 1, timeout=30)  # the command is up
        proc.stdin.write(b"second\n")
        proc.stdin.flush()
        written = time.monotonic()
        assert [r.value for r in records(lb.bootstrap, topic, 2, timeout=2)] == [b"first", b"second"]
        assert time.monotonic() - written < 2.5 and proc.poll() is None  # stdin is still open
        proc.stdin.close()
        rc, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert f"produced 2 records to {topic} (partitions 0: 2)" in err


def test_sigint_sends_the_lines_read_and_prints_the_summary(lb):
    """The lines read sit in a 10 s linger when Ctrl-C comes: they are sent at once."""
    topic = unique_topic("sigint")  # auto-created by the command: seen once it is running
    proc = spawn(lb.bootstrap, topic, "--linger-ms", "10000")
    try:
        with SyncAdmin(lb.bootstrap) as admin:
            wait_until(lambda: topic in admin.list_topics(timeout=5), timeout=30, what="the command to start")
        proc.stdin.write(b"".join(b"line %d\n" % i for i in range(5)))
        proc.stdin.flush()
        time.sleep(1.0)  # read at once, then held by the linger
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, err
    assert time.monotonic() - signalled < 8  # not the linger's 10 s
    assert f"produced 5 records to {topic} (partitions 0: 5)" in err and "stopped by SIGINT" in err
    assert [r.value for r in records(lb.bootstrap, topic, 5)] == [b"line %d" % i for i in range(5)]


def test_the_summary_counts_each_partition_exactly(lb):
    topic = create(lb.bootstrap, unique_topic("eof"), partitions=3)
    data = b"".join(b"k%d:v%d\n" % (i % 7, i) for i in range(300))
    done = produce(lb.bootstrap, topic, data, "-K", ":")
    assert done.returncode == 0, done.stderr
    got = records(lb.bootstrap, topic, 300)
    per_partition: dict[int, int] = {}
    for r in got:
        per_partition[r.partition] = per_partition.get(r.partition, 0) + 1
    where = ", ".join(f"{p}: {n}" for p, n in sorted(per_partition.items()))
    assert f"produced 300 records to {topic} (partitions {where}) in " in done.stderr.decode()

    as_json = produce(lb.bootstrap, topic, b"one\ntwo\nthree", "--format", "json", "-p", "2")  # no final newline
    summary = json.loads(as_json.stdout)
    assert (summary["records"], summary["failed"], summary["partitions"]) == (0, 3, {})  # not JSON lines
    assert summary["failures"][0]["lines"] == [1, 2, 3] and as_json.returncode == 1
    plain = produce(lb.bootstrap, topic, b'"one"\r\n"two"\r\n"three"', "--format", "json", "-p", "2")
    summary = json.loads(plain.stdout)
    assert (summary["records"], summary["failed"], summary["partitions"]) == (3, 0, {"2": 3}), plain.stderr
    assert [r.value for r in records(lb.bootstrap, topic, 303) if r.partition == 2][-3:] == [b"one", b"two", b"three"]


def test_consume_json_piped_into_produce_json_copies_a_topic(lb):
    source = create(lb.bootstrap, unique_topic("copy-a"), partitions=3)
    target = create(lb.bootstrap, unique_topic("copy-b"), partitions=3)
    sent = [
        (0, b"\xff\x00binary", b"\x80key", [("bin", b"\xfe\xff"), ("none", None), ("text", b"v")], 1_700_000_000_000),
        (1, "ünïcode".encode(), None, [], 1_700_000_000_001),
        (2, None, b"tombstone", [], 1_700_000_000_002),
        (1, b'{"a": 1}', b"k", [("h", b"")], 1_700_000_000_003),
        (0, b"", b"", [], 1_700_000_000_004),
    ]
    with SyncProducer(lb.bootstrap) as producer:
        for partition, value, key, headers, ts in sent:
            producer.send(source, value, key, partition=partition, headers=headers, timestamp_ms=ts)
        producer.flush()
    consume = subprocess.Popen([*CLI, "consume", source, "-b", lb.bootstrap, "--from-beginning", "-e",
                                "--format", "json"], stdout=subprocess.PIPE, env=ENV)
    copy = subprocess.run([*CLI, "produce", target, "-b", lb.bootstrap, "--format", "json"], stdin=consume.stdout,
                          capture_output=True, timeout=60, env=ENV)
    consume.stdout.close()
    assert consume.wait(30) == 0
    assert copy.returncode == 0, copy.stderr
    assert json.loads(copy.stdout)["partitions"] == {"0": 2, "1": 2, "2": 1}

    def shape(rs):
        return [(r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in rs]

    assert shape(records(lb.bootstrap, target, 5)) == shape(records(lb.bootstrap, source, 5))


def test_text_lines_in_hex_and_base64(lb):
    topic = create(lb.bootstrap, unique_topic("enc"))
    result = CliRunner().invoke(main, ["produce", topic, "-b", lb.bootstrap, "-K", ":", "--key-encoding", "hex",
                                       "--value-encoding", "base64"], input="ff00:AAEC\nzz:AAEC\n")
    assert result.exit_code == 1
    assert "line 2: not sent: the key is not hex" in result.output
    (record,) = records(lb.bootstrap, topic, 1)
    assert (record.key, record.value) == (b"\xff\x00", b"\x00\x01\x02")


def test_a_topic_that_takes_big_records_gets_a_2mb_line(lb):
    topic = create(lb.bootstrap, unique_topic("big"), **{"max.message.bytes": "5000000"})
    big = b"x" * 2_000_000
    done = produce(lb.bootstrap, topic, b"before\n" + big + b"\nafter\n")
    assert done.returncode == 0, done.stderr
    assert [r.value for r in records(lb.bootstrap, topic, 3)] == [b"before", big, b"after"]


def test_a_line_over_the_limit_is_reported_and_the_rest_are_sent(lb):
    topic = create(lb.bootstrap, unique_topic("limit"), partitions=2, **{"max.message.bytes": "5000"})
    lines = ["a", "b", "c", "x" * 6000, "d", "y" * 7000, "e"]
    text = produce(lb.bootstrap, topic, "".join(f"{line}\n" for line in lines).encode())
    stderr = text.stderr.decode()
    assert text.returncode == 1
    assert "line 4: not sent: 6000 bytes" in stderr and "line 6: not sent: 7000 bytes" in stderr
    assert f"max.message.bytes of {topic}: 5000" in stderr and "logbroker topics alter" in stderr
    assert "), 2 failed in " in stderr and "2 lines not sent (4, 6)" in stderr and "Traceback" not in stderr
    assert sorted(r.value for r in records(lb.bootstrap, topic, 5)) == [b"a", b"b", b"c", b"d", b"e"]

    as_json = produce(lb.bootstrap, topic, "".join(json.dumps(line) + "\n" for line in lines).encode(),
                      "--format", "json")
    summary = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and (summary["records"], summary["failed"]) == (5, 2)
    assert sum(summary["partitions"].values()) == 5
    (failure,) = summary["failures"]
    assert (failure["partition"], failure["count"], failure["lines"]) == (None, 2, [4, 6])
    assert len(records(lb.bootstrap, topic, 10)) == 10


def test_batches_fit_a_small_segment(lb):
    topic = create(lb.bootstrap, unique_topic("seg"), **{"segment.bytes": "20000"})
    done = produce(lb.bootstrap, topic, b"".join(b"%06d\n" % i for i in range(20_000)))
    assert done.returncode == 0, done.stderr
    assert f"produced 20000 records to {topic} (partitions 0: 20000)" in done.stderr.decode()


def test_a_missing_topic_or_partition_is_one_message(broker_factory, tmp_path):
    config = tmp_path / "broker.toml"
    config.write_text("auto_create_topics_enable = false\n")
    broker = broker_factory("--config", str(config))
    create(broker.bootstrap, "orders", partitions=6)
    missing = produce(broker.bootstrap, "ordrs", b"x\n", "--timeout", "1")
    assert missing.returncode == 1
    assert "topic 'ordrs' does not exist; similar: orders" in missing.stderr.decode()
    no_partition = produce(broker.bootstrap, "orders", b"x\n", "-p", "9")
    assert no_partition.returncode == 1
    assert "partition 9 of orders does not exist (it has 6: 0-5)" in no_partition.stderr.decode()
    for done in (missing, no_partition):
        assert "Traceback" not in done.stderr.decode()


def test_records_acknowledged_before_the_broker_died_count_as_sent(broker_factory):
    broker = broker_factory()
    topic = create(broker.bootstrap, unique_topic("died"))
    proc = spawn(broker.bootstrap, topic, "--timeout", "2")
    try:
        proc.stdin.write(b"".join(b"before %d\n" % i for i in range(10)))
        proc.stdin.flush()
        records(broker.bootstrap, topic, 10, timeout=30)
        broker.kill()
        proc.stdin.write(b"".join(b"after %d\n" % i for i in range(4)))
        proc.stdin.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, err
    assert f"produced 10 records to {topic} (partitions 0: 10), 4 failed in " in err
    assert "partition 0: 4 failed: not acknowledged before exit" in err and "stopped by SIGINT" in err
