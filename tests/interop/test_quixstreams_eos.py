"""quixstreams (a Python stream processing library on librdkafka) in
exactly-once mode against ``logbroker serve``.

The application counts records per key (state in RocksDB, backed by a
changelog topic) and writes ``{"seq", "n"}`` for every input record. It runs
as a subprocess with ``processing_guarantee="exactly-once"``: quixstreams then
produces the output, the changelog and the consumer offsets in one Kafka
transaction per checkpoint. While an idempotent producer feeds the input, the
application is SIGKILLed mid-run and started again (same state directory). Read
with read_committed, the output must be exactly what one uninterrupted run
would produce: for each key the counts 1..N, once each, in input order.

quixstreams creates its changelog topics compacted; logbroker takes
transactional batches there (its cleaner keeps them and their markers whole),
and ``test_transactional_produce_to_a_compacted_topic`` checks that alone.

quixstreams 3.28 requires confluent-kafka<2.13, and confluent-kafka 2.12 has
no ``ShareConsumer`` (the queue tests need it), so quixstreams cannot share the
test environment: unless it is importable here, the application runs from a
virtual environment of its own, made once in ``.test-venvs/quixstreams`` at
the repository root (about 20 s; reused by later runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from interop_support import create_topic, unique_topic, wait_until

import confluent_kafka as ck

QUIXSTREAMS = "quixstreams==3.28.1"
VENV = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    ".test-venvs", "quixstreams")


@pytest.fixture(scope="module")
def quix_python() -> str:
    """An interpreter that imports quixstreams: this one, or a venv made for it."""
    if importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(os.path.join(VENV, "ready")):
        subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True, timeout=120)
        install = subprocess.run([python, "-m", "pip", "install", "-q", QUIXSTREAMS],
                                 capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, f"cannot install {QUIXSTREAMS} into {VENV}:\n{install.stderr[-2000:]}"
        open(os.path.join(VENV, "ready"), "w").close()
    return python

KEYS = 5
RECORDS = 1500
PARTITIONS = 2

APP = '''
import sys

from quixstreams import Application

bootstrap, source, sink, group, state_dir = sys.argv[1:6]
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  processing_guarantee="exactly-once", state_dir=state_dir, commit_interval=0.3,
                  loglevel="WARNING",
                  # the killed member's session must end soon: its partitions wait for it
                  consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                  # each run has a new transactional id, so the killed run's open transaction
                  # holds the last stable offset until the broker aborts it at its timeout
                  producer_extra_config={"transaction.timeout.ms": 5000})
sdf = app.dataframe(app.topic(source, key_deserializer="str", value_deserializer="json"))


def count(value, state):
    n = state.get("n", 0) + 1
    state.set("n", n)
    return {"seq": value["seq"], "n": n}


sdf = sdf.apply(count, stateful=True)
sdf.to_topic(app.topic(sink, key_serializer="str", value_serializer="json"))
app.run()
'''


class Feeder(threading.Thread):
    """Writes RECORDS keyed records (``{"seq": i}``, key ``k{i % KEYS}``) at about 100/s."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="feeder")
        self.bootstrap, self.topic = bootstrap, topic
        self.left = -1

    def run(self) -> None:
        p = ck.Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for i in range(RECORDS):
            p.produce(self.topic, key=f"k{i % KEYS}", value=json.dumps({"seq": i}))
            if i % 20 == 19:
                p.poll(0)
                time.sleep(0.1)
        self.left = p.flush(30)


def read_output(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[tuple[str, dict]]:
    """Every (key, value) of ``topic`` up to its end offsets under ``isolation``, CRC-checked."""
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique_topic("reader"), "enable.auto.commit": False,
        "isolation.level": isolation, "check.crcs": True, "enable.partition.eof": True,
        "fetch.wait.max.ms": 20, "log_level": 0,
    })
    try:
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(PARTITIONS)])
        out, at_end = [], set()
        deadline = time.monotonic() + 20
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.1):
                if msg.error():
                    if msg.error().code() == ck.KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise AssertionError(f"consumer error: {msg.error()!r}")
                out.append((msg.key().decode(), json.loads(msg.value())))
        assert len(at_end) == PARTITIONS, f"{topic}: the end was not reached"
        return out
    finally:
        consumer.close()


def start_app(python, script, bootstrap, source, sink, group, state_dir, log):
    return subprocess.Popen([python, str(script), bootstrap, source, sink, group, str(state_dir)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_stateful_count_is_exactly_once_across_a_sigkill(module_broker, tmp_path, quix_python):
    bootstrap = module_broker.bootstrap
    source, sink, group = unique_topic("qx-in"), unique_topic("qx-out"), unique_topic("qx-g")
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    script = tmp_path / "count_app.py"
    script.write_text(APP)
    state_dir, log_path = tmp_path / "state", tmp_path / "app.log"
    feeder = Feeder(bootstrap, source)
    feeder.start()
    with open(log_path, "ab") as log:
        app = start_app(quix_python, script, bootstrap, source, sink, group, state_dir, log)
        try:
            # Kill once some output is committed and more is in flight.
            wait_until(lambda: app.poll() is not None or len(read_output(bootstrap, sink)) >= RECORDS // 4,
                       40, interval=0.2, what="a quarter of the output")
            assert app.poll() is None, log_path.read_text()[-3000:]
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            killed_at = len(read_output(bootstrap, sink, "read_uncommitted"))
            app = start_app(quix_python, script, bootstrap, source, sink, group, state_dir, log)
            feeder.join(60)
            assert feeder.left == 0, "the feeder could not deliver"
            try:
                wait_until(lambda: app.poll() is not None or len(read_output(bootstrap, sink)) >= RECORDS, 40,
                           interval=0.3, what="the whole output")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {len(read_output(bootstrap, sink))} committed, "
                                     f"{len(read_output(bootstrap, sink, 'read_uncommitted'))} in the log; "
                                     f"application log:\n{log_path.read_text()[-3000:]}") from None
            assert app.poll() is None, log_path.read_text()[-3000:]
            time.sleep(1.0)  # anything extra would be committed by now
        finally:
            if app.poll() is None:
                app.send_signal(signal.SIGTERM)
                try:
                    app.wait(15)
                except subprocess.TimeoutExpired:
                    app.kill()
                    app.wait()
    got = read_output(bootstrap, sink)
    by_key: dict[str, list[dict]] = {}
    for key, value in got:
        by_key.setdefault(key, []).append(value)
    expected = {f"k{k}": [{"seq": i, "n": j + 1} for j, i in enumerate(range(k, RECORDS, KEYS))]
                for k in range(KEYS)}
    assert len(got) == RECORDS, f"{len(got)} output records for {RECORDS} inputs (killed with {killed_at} written)"
    assert by_key == expected
    uncommitted = read_output(bootstrap, sink, "read_uncommitted")
    assert len(uncommitted) >= len(got)  # what the killed run left uncommitted is in the log, hidden


def test_transactional_produce_to_a_compacted_topic(module_broker):
    """quixstreams' changelogs are compacted: transactional batches go in (the
    cleaner keeps them and their markers whole)."""
    bootstrap = module_broker.bootstrap
    topic = unique_topic("qx-compacted")
    create_topic(bootstrap, topic, 1, {"cleanup.policy": "compact"})
    producer = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": f"qx-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"v")
    producer.commit_transaction(20)
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("reader"),
                            "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
    msg, deadline = None, time.monotonic() + 10
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
    consumer.close()
    assert msg is not None and not msg.error() and (msg.key(), msg.value()) == (b"k", b"v")
