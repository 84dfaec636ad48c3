"""faust-streaming (a Python stream processing library on aiokafka) in
exactly-once mode against ``logbroker serve``.

The application counts records per key in a faust Table (kept in memory and
rebuilt from its changelog topic, which faust creates compacted) and writes
``{"seq", "n"}`` for every input record. It runs as a subprocess with
``processing_guarantee="exactly_once"``: faust then gives each input
partition its own transactional producer (transactional id
``<app>-<topic group>-<partition>``, so a restarted worker fences the killed
one) and commits the changelog and the consumer offsets in its transactions.
While an idempotent producer feeds the input, the worker is SIGKILLed mid-run
and started again. Read with read_committed, the output should be exactly
what one uninterrupted run would produce: for each key the counts 1..N, once
each, in input order.

faust 0.15.3 does not keep that promise, whatever the broker (the batches in
the log show why), so the test is an expected failure, kept to measure a
later faust against logbroker:

* a ``topic.send()`` to a topic the application does not consume goes out
  through its plain producer, outside the transaction (faust's
  ``TransactionManager.send`` finds no topic group for it): after a SIGKILL
  the output repeats what the killed worker wrote since its last commit;
* the consumer offsets can be committed in a transaction before the
  changelog records of the same input records are sent, which then land in
  the next transaction; when that one is aborted (the restarted worker fences
  it) those inputs are neither counted nor processed again, and later counts
  come out short.

faust pins ``click<8.4``, older than logbroker's, so it is not a test
dependency: the test runs when faust is importable, or with
``LOGBROKER_FAUST_PYTHON`` naming an interpreter that has it (the worker is
a subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from interop_support import create_topic, unique_topic, wait_until

ck = pytest.importorskip("confluent_kafka")
PYTHON = os.environ.get("LOGBROKER_FAUST_PYTHON") or sys.executable
if subprocess.run([PYTHON, "-c", "import faust"], capture_output=True, timeout=60).returncode:
    pytest.skip(f"faust-streaming is not importable by {PYTHON}", allow_module_level=True)

KEYS = 5
RECORDS = 1500
PARTITIONS = 2

APP = '''
import sys

import faust

bootstrap, source, sink, app_id, data_dir = sys.argv[1:6]
app = faust.App(app_id, broker=f"kafka://{bootstrap}", processing_guarantee="exactly_once", datadir=data_dir,
                store="memory://", topic_partitions=2, topic_replication_factor=1, web_enabled=False,
                broker_commit_every=50, broker_commit_interval=0.3,
                # the killed member's session must end soon: its partitions wait for it
                broker_session_timeout=6, broker_heartbeat_interval=0.5)
source_topic = app.topic(source, key_type=str, value_type=bytes, value_serializer="raw")
sink_topic = app.topic(sink, key_type=str, value_type=bytes, value_serializer="raw")
counts = app.Table("counts", default=int, partitions=2)


@app.agent(source_topic)
async def count(stream):
    async for key, value in stream.items():
        counts[key] += 1
        seq = __import__("json").loads(value)["seq"]
        await sink_topic.send(key=key, value=b'{"seq": %d, "n": %d}' % (seq, counts[key]))


sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app.main()
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


def start_app(script, bootstrap, source, sink, group, state_dir, log):
    return subprocess.Popen([PYTHON, str(script), bootstrap, source, sink, group, str(state_dir)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.mark.xfail(strict=False, reason="faust 0.15.3's exactly_once sends output outside its transactions and "
                                         "can commit offsets ahead of the changelog (see the module docstring)")
def test_stateful_count_is_exactly_once_across_a_sigkill(module_broker, tmp_path):
    bootstrap = module_broker.bootstrap
    source, sink, group = unique_topic("fa-in"), unique_topic("fa-out"), unique_topic("fa-app")
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    script = tmp_path / "count_app.py"
    script.write_text(APP)
    state_dir, log_path = tmp_path / "state", tmp_path / "app.log"
    feeder = Feeder(bootstrap, source)
    feeder.start()
    with open(log_path, "ab") as log:
        app = start_app(script, bootstrap, source, sink, group, state_dir, log)
        try:
            # Kill once some output is committed and more is in flight.
            wait_until(lambda: app.poll() is not None or len(read_output(bootstrap, sink)) >= RECORDS // 4,
                       40, interval=0.2, what="a quarter of the output")
            assert app.poll() is None, log_path.read_text()[-3000:]
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            killed_at = len(read_output(bootstrap, sink, "read_uncommitted"))
            app = start_app(script, bootstrap, source, sink, group, state_dir, log)
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
