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
import os
import subprocess
import sys
import time
import uuid

import pytest

from interop_support import create_topic, unique_topic
from stream_eos_support import check_count_app_across_a_sigkill

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


def test_stateful_count_is_exactly_once_across_a_sigkill(module_broker, tmp_path, quix_python):
    check_count_app_across_a_sigkill(module_broker.bootstrap, tmp_path, quix_python, APP, "qx")


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
