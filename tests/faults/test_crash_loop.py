"""SIGKILL loop: the broker is killed at random moments while idempotent producers
send with acks=all and a consumer group commits synchronously.

After every restart the whole log is read back (librdkafka, ``check.crcs=true``)
and compared with what the clients were told:

* every acknowledged record is present exactly once, at the offset it was
  acknowledged with (offsets are dense from 0; no value appears twice);
* every record a consumer was given is still there, at the same offset;
* every committed offset is intact: OffsetFetch >= the last commit that
  succeeded for that partition.

``--flush always`` promises this even across a power loss; ``--flush
interval`` only across a process crash (data written with pwritev is in the
page cache), which is what SIGKILL is, so the same assertions hold. For
interval mode the test also checks that nothing below the on-disk recovery
point is lost, and reports how many acknowledged records were above it at
the moment of each kill: what a power loss at that instant could have lost.

The number of kills is 12 per mode by default; ``LOGBROKER_FAULT_ITERATIONS=50``
runs the issue's 50. ``LOGBROKER_FAULT_SEED`` replays a run's timing.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time

import pytest

from fault_support import (
    ITERATIONS,
    committed_offsets,
    create_topic,
    read_checkpoint,
    read_log,
    summary,
    unique_topic,
)

KILLS = ITERATIONS or 12
PARTITIONS = 3
SEGMENT_BYTES = 128 * 1024  # many segment rolls during the loop
GROUP = "crash-loop-group"
RATE_PAUSE = 0.0125  # each producer sends 10 records per pause: at most ~800 records/s
QUIET = {"log_level": 0}  # librdkafka's connection-refused chatter while the broker is down


class Ledger:
    """What the clients were told, shared by the worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.failed: list[tuple[bytes, str]] = []  # (value, error) of deliveries that failed
        self.consumed: list[tuple[int, int, bytes]] = []
        self.commits: dict[int, int] = {}  # partition -> highest offset a successful commit stored
        self.commit_count = 0
        self.commit_failures = 0
        self.client_errors: list[str] = []  # errors that must never happen (CRC, corrupt, fatal)
        self.sent = 0

    def ack(self, partition: int, offset: int, value: bytes) -> None:
        with self.lock:
            self.acked.append((partition, offset, value))

    def snapshot(self):
        with self.lock:
            return list(self.acked), list(self.consumed), dict(self.commits)


_SERIOUS = {"_BAD_MSG", "CORRUPT_MESSAGE", "INVALID_RECORD", "_INCONSISTENT", "OUT_OF_ORDER_SEQUENCE_NUMBER",
            "UNKNOWN_PRODUCER_ID", "INVALID_PRODUCER_EPOCH", "_FATAL", "KAFKA_STORAGE_ERROR"}


class ConfluentProducerWorker(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, name: str, ledger: Ledger, compression: str = "none") -> None:
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.topic, self.ledger, self.compression = bootstrap, topic, ledger, compression
        self.halt = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Producer

        ledger = self.ledger

        def on_error(err):
            if err.fatal() or err.name() in _SERIOUS:
                ledger.client_errors.append(f"{self.name}: {err!r}")

        p = Producer({
            "bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 300000, "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 250, "socket.timeout.ms": 5000,
            "compression.type": self.compression, "error_cb": on_error, **QUIET,
        })

        def delivered(err, msg):
            if err is None:
                ledger.ack(msg.partition(), msg.offset(), msg.value())
            else:
                with ledger.lock:
                    ledger.failed.append((msg.value(), repr(err)))
                if err.fatal() or err.name() in _SERIOUS:
                    ledger.client_errors.append(f"{self.name}: delivery {err!r}")

        seq = 0
        while not self.halt.is_set():
            for _ in range(10):
                value = f"{self.name}:{seq}".encode()
                p.produce(self.topic, value=value, key=value, partition=seq % PARTITIONS, on_delivery=delivered)
                seq += 1
            ledger.sent += 10
            p.poll(0)
            time.sleep(RATE_PAUSE)
            while len(p) > 2000 and not self.halt.is_set():
                p.poll(0.05)
        left = p.flush(120)
        if left:
            ledger.client_errors.append(f"{self.name}: {left} records never delivered")


class KafkaPythonProducerWorker(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, name: str, ledger: Ledger) -> None:
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.topic, self.ledger = bootstrap, topic, ledger
        self.halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        ledger = self.ledger
        p = KafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
            compression_type="gzip", delivery_timeout_ms=300000, request_timeout_ms=5000,
            retry_backoff_ms=50, reconnect_backoff_ms=20, reconnect_backoff_max_ms=250, max_block_ms=300000,
        )

        def callbacks(value: bytes):
            def ok(md):
                ledger.ack(md.partition, md.offset, value)

            def fail(exc):
                with ledger.lock:
                    ledger.failed.append((value, repr(exc)))
                ledger.client_errors.append(f"{self.name}: delivery {exc!r}")
            return ok, fail

        seq = 0
        while not self.halt.is_set():
            for _ in range(10):
                value = f"{self.name}:{seq}".encode()
                ok, fail = callbacks(value)
                future = p.send(self.topic, value=value, key=value, partition=seq % PARTITIONS)
                future.add_callback(ok).add_errback(fail)
                seq += 1
            ledger.sent += 10
            time.sleep(RATE_PAUSE)
        p.flush(120)
        p.close(30)


class ConsumerWorker(threading.Thread):
    """A group member that commits synchronously after each poll."""

    def __init__(self, bootstrap: str, topic: str, name: str, ledger: Ledger) -> None:
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.topic, self.ledger = bootstrap, topic, ledger
        self.halt = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        ledger = self.ledger

        def on_error(err):
            if err.fatal() or err.name() in _SERIOUS:
                ledger.client_errors.append(f"{self.name}: {err!r}")

        c = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "check.crcs": True, "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 250, "socket.timeout.ms": 5000,
            "error_cb": on_error, **QUIET,
        })
        c.subscribe([self.topic])
        try:
            while not self.halt.is_set():
                got = False
                for msg in c.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.name() in _SERIOUS:
                            ledger.client_errors.append(f"{self.name}: consume {err!r}")
                        continue
                    got = True
                    with ledger.lock:
                        ledger.consumed.append((msg.partition(), msg.offset(), msg.value()))
                if not got:
                    continue
                try:
                    stored = c.commit(asynchronous=False)
                except KafkaException:
                    ledger.commit_failures += 1  # the broker is down or the group is rebalancing
                    continue
                with ledger.lock:
                    ledger.commit_count += 1
                    for tp in stored or ():
                        if tp.error is None and tp.offset >= 0:
                            ledger.commits[tp.partition] = max(ledger.commits.get(tp.partition, -1), tp.offset)
        finally:
            c.close()


def verify(bootstrap: str, topic: str, ledger: Ledger, context: str) -> dict:
    """Read the whole log back and compare it with the ledger; returns numbers."""
    acked, consumed, commits = ledger.snapshot()
    log = read_log(bootstrap, topic, PARTITIONS)
    problems: list[str] = []
    by_offset: dict[int, dict[int, bytes]] = {}
    counts: collections.Counter = collections.Counter()
    for p, records in log.items():
        offsets = [o for o, _, _ in records]
        if offsets != list(range(len(offsets))):
            gaps = sorted(set(range(offsets[-1] + 1)) - set(offsets))[:10] if offsets else []
            problems.append(f"partition {p}: offsets not dense from 0 (missing {gaps})")
        by_offset[p] = {o: v for o, _, v in records}
        counts.update(v for _, _, v in records)
    lost = [(p, o, v) for p, o, v in acked if by_offset[p].get(o) != v]
    if lost:
        problems.append(f"{len(lost)} acknowledged records missing or changed, e.g. "
                        + ", ".join(f"{p}@{o}={v!r} (log has {by_offset[p].get(o)!r})" for p, o, v in lost[:5]))
    dups = [v for v, n in counts.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} values appear more than once, e.g. {dups[:5]}")
    vanished = [(p, o, v) for p, o, v in consumed if by_offset[p].get(o) != v]
    if vanished:
        problems.append(f"{len(vanished)} consumed records are no longer in the log, e.g. {vanished[:5]}")
    fetched = committed_offsets(bootstrap, GROUP, topic, PARTITIONS)
    for p, offset in commits.items():
        if fetched.get(p, -1) < offset:
            problems.append(f"partition {p}: committed offset {fetched.get(p)} < last acknowledged commit {offset}")
    assert not problems, f"{context}: " + "; ".join(problems)
    return {"acked": len(acked), "log_records": sum(len(r) for r in log.values()), "commits": commits,
            "fetched": fetched, "ends": {p: len(r) for p, r in log.items()}}


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_sigkill_loop_keeps_every_acknowledged_record_and_commit(fault_broker, flush):
    seed = int(os.environ.get("LOGBROKER_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    extra = ("--flush-interval-ms", "200") if flush == "interval" else ()
    broker = fault_broker("--flush", flush, *extra)
    topic = unique_topic("crash")
    create_topic(broker.bootstrap, topic, PARTITIONS, {"segment.bytes": str(SEGMENT_BYTES)})
    ledger = Ledger()
    workers = [
        ConfluentProducerWorker(broker.bootstrap, topic, "ck-a", ledger),
        ConfluentProducerWorker(broker.bootstrap, topic, "ck-b", ledger, compression="lz4"),
        KafkaPythonProducerWorker(broker.bootstrap, topic, "kp-c", ledger),
        ConsumerWorker(broker.bootstrap, topic, "member-1", ledger),
        ConsumerWorker(broker.bootstrap, topic, "member-2", ledger),
    ]
    for w in workers:
        w.start()
    started = time.monotonic()
    exposed: list[int] = []  # interval mode: acked records above the on-disk recovery point at each kill
    recovery_lines: list[str] = []
    try:
        time.sleep(1.0)
        for i in range(KILLS):
            time.sleep(rng.uniform(0.0, 1.5))
            broker.kill()
            context = f"seed {seed}, flush={flush}, after kill {i + 1}/{KILLS}"
            rp_path = os.path.join(broker.data_dir, "recovery-point-offset-checkpoint")
            rp = read_checkpoint(rp_path) if os.path.exists(rp_path) else {}
            acked_at_kill = ledger.snapshot()[0]
            exposed.append(sum(1 for p, o, _ in acked_at_kill if o >= rp.get((topic, p), 0)))
            broker.start()
            recovery_lines += [line for line in broker.log_lines if "recovery:" in line or "truncated" in line]
            ends = verify(broker.bootstrap, topic, ledger, context)["ends"]
            for p in range(PARTITIONS):
                assert ends[p] >= rp.get((topic, p), 0), f"{context}: partition {p} lost data below its recovery point"
        loop_seconds = time.monotonic() - started
        for w in workers:
            w.halt.set()
        for w in workers:
            w.join(180)
            assert not w.is_alive(), f"{w.name} did not stop"
        final = verify(broker.bootstrap, topic, ledger, f"seed {seed}, flush={flush}, at the end")
        broker.restart(clean=True)
        verify(broker.bootstrap, topic, ledger, f"seed {seed}, flush={flush}, after a clean restart")
    finally:
        for w in workers:
            w.halt.set()
    assert not ledger.client_errors, f"seed {seed}: clients reported {ledger.client_errors[:10]}"
    assert not ledger.failed, f"seed {seed}: {len(ledger.failed)} deliveries failed, e.g. {ledger.failed[:5]}"
    assert ledger.commit_count > 0 and ledger.consumed, "the consumer group never committed"
    summary(
        "crash_loop", flush=flush, seed=seed, kills=KILLS, seconds=round(time.monotonic() - started, 1),
        loop_seconds=round(loop_seconds, 1), acked=final["acked"], log_records=final["log_records"],
        consumed=len(ledger.consumed),
        commits=ledger.commit_count, commit_failures=ledger.commit_failures, lost=0,
        recoveries_logged=len(recovery_lines),
        # interval mode: acknowledged records above the on-disk recovery point at the kill,
        # i.e. what a power loss (not a process crash) at that moment could have lost
        **({"exposed_to_power_loss_max": max(exposed, default=0),
            "exposed_to_power_loss_mean": round(sum(exposed) / max(len(exposed), 1), 1)}
           if flush == "interval" else {}),
    )
