"""What the exactly-once tests of Python stream processors share: a feeder of
keyed input, a read_committed reader of the output, and the kill-and-restart
check of a counting application (quixstreams, faust-streaming)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import confluent_kafka as ck

from interop_support import create_topic, unique_topic, wait_until

KEYS = 5
RECORDS = 1500
PARTITIONS = 2


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


def _start_app(python, script, bootstrap, source, sink, group, state_dir, log):
    return subprocess.Popen([python, str(script), bootstrap, source, sink, group, str(state_dir)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def check_count_app_across_a_sigkill(bootstrap: str, tmp_path, python: str, app: str, prefix: str) -> None:
    """Run the counting application ``app`` (a script taking bootstrap, source,
    sink, group and state directory) with ``python`` while RECORDS keyed records
    arrive; SIGKILL it once a quarter of the output is committed, start it again,
    and check that the committed output is exactly one uninterrupted run's:
    for each key the counts 1..N, once each, in input order."""
    source, sink, group = unique_topic(f"{prefix}-in"), unique_topic(f"{prefix}-out"), unique_topic(f"{prefix}-g")
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    script = tmp_path / "count_app.py"
    script.write_text(app)
    state_dir, log_path = tmp_path / "state", tmp_path / "app.log"
    feeder = Feeder(bootstrap, source)
    feeder.start()
    with open(log_path, "ab") as log:
        app = _start_app(python, script, bootstrap, source, sink, group, state_dir, log)
        try:
            # Kill once some output is committed and more is in flight.
            wait_until(lambda: app.poll() is not None or len(read_output(bootstrap, sink)) >= RECORDS // 4,
                       40, interval=0.2, what="a quarter of the output")
            assert app.poll() is None, log_path.read_text()[-3000:]
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            killed_at = len(read_output(bootstrap, sink, "read_uncommitted"))
            app = _start_app(python, script, bootstrap, source, sink, group, state_dir, log)
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
