"""Soak: a long mixed run against one ``logbroker serve`` (issue 20).

Is the broker still well after ``--minutes`` (30) of steady mixed load? A
real broker process is started on a free loopback port in a temporary
directory, then, all at once, each in its own process (the clients of a
2-core machine must not starve the broker; their CPU is reported):

* **keyed**: an idempotent confluent-kafka producer (``enable.idempotence``,
  acks=all, linger 5 ms) writes 100-byte records under 1,000 keys to an
  8-partition topic at the offered rate; each value carries its key's
  sequence number and the wall-clock time it was produced;
* **latency**: a consumer assigned to every partition of that topic reads
  it as it is written: end-to-end latency = time consumed - time in the
  record, kept as a log-bucket histogram per second;
* **group**: three confluent-kafka consumers in one classic group on that
  topic; every ``churn`` seconds the oldest leaves and a new one joins (a
  rebalance each time); auto-commit;
* **txn**: a transactional confluent-kafka producer (init, begin, produce,
  commit) into a 4-partition topic, every 7th transaction aborted;
* **share**: a producer into a 2-partition topic and two share-group
  consumers (logbroker's ``QueueConsumer``) that acknowledge most records,
  reject every 20th into the group's dead-letter topic
  (``errors.deadletterqueue.topic.name``, ``share.delivery.count.limit`` 3)
  and release a few once (redelivered); one of them is replaced every
  ``churn`` x 1.5 seconds (closing releases what it holds);
* **retention**: keyless records into a topic with small ``segment.bytes``
  and short ``retention.ms``, so retention deletes segments all along
  (the broker's ``log.retention.check.interval.ms`` is lowered for this);
* **compact**: keyed records (500 keys, a few tombstones) into a topic with
  ``cleanup.policy=compact`` and small segments, so the log cleaner rewrites
  segments all along (``log.cleaner.backoff.ms`` lowered);
* **idle**: 1,000 plain sockets that each completed an ApiVersions request
  and then stay idle. They connect from 127.0.0.2-127.0.0.5 (250 each), so
  the broker's default ``max.connections.per.ip`` (1000) holds, and each
  sends another ApiVersions every 60 s (spread out), so the broker's default
  ``connections.max.idle.ms`` (10 minutes) does not close them: both broker
  defaults are kept.

**Offered load.** Unless ``--rate`` is given, a capacity probe first runs the
keyed producer alone as fast as it goes for ``--probe-seconds`` (5): the
records/s acknowledged are the produce capacity (on this machine the
client, not the broker, is what limits it: the broker's CPU share during
the probe is reported too). The keyed rate is half of it, capped by
``--max-rate`` (5,000 records/s: every keyed record is kept and read back
at the end, and Python clients sharing 2 cores must stay modest; the mix
costs the broker far more CPU per record than the producer alone: at
2,500 keyed records/s, 2,550 offered in all, it used 45% of a core); the
other workloads' rates follow from it (txn 1/10, retention 1/10, compact
1/20, share 1/40 at most 1,000/s). The JSON says which rate was used, why,
and the total offered.

**Sampling.** Every ``--sample-seconds`` (5): the broker's RSS and open
descriptors (``/proc/PID/status``, ``/proc/PID/fd``), its CPU, the clients'
CPU, records/s acknowledged, consumed and end-to-end latency (p50/p99 of the
interval). Windows of ``--window-minutes`` (5) give the flatness figures.

**At the end** the producers stop and flush, the consumers drain, and:

* every record the keyed producer saw acknowledged is read by a fresh
  consumer from the beginning exactly once, in order per key (so per
  partition), no duplicates, no gaps;
* read_committed sees every record of every committed transaction once and
  none of an aborted one;
* every share-group record produced was acknowledged or is in the
  dead-letter topic (every rejected one is), and the group's lag is 0;
* the compacted topic holds the latest value per key (deleted keys gone)
  and fewer records than were written; retention moved every partition's
  log start up;
* the group's committed offsets reached the end of every partition;
* broker memory flat: window mean RSS, windows after the first, within 10%
  (max/min); descriptors flat: window means after the first within
  max(20, 2%); p99 stable: every window's p99 (after the first) at most
  max(2 x the median window p99, median + 20 ms); no worker errors.

Prints one JSON object; writes it (``soak.json``) and a plot (``soak.png``:
memory, descriptors, throughput and latency over time; needs matplotlib,
the ``plots`` extra) to ``--out`` (default: a new temporary directory).
Exit code 1 if a criterion failed.

    python benchmarks/soak.py                          # 30 minutes, 5-minute windows
    python benchmarks/soak.py --minutes 10 --window-minutes 2 --out /tmp/soak
    python benchmarks/soak.py --minutes 1 --window-minutes 0.25 --rate 2000 --idle 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import REPO_ROOT, LogbrokerProcess, create_topics  # noqa: E402

_t0 = time.monotonic()

KEYED, TXN, SHARE, DLQ = "soak-keyed", "soak-txn", "soak-share", "soak-share-dlq"
RETENTION, COMPACT, PROBE = "soak-retention", "soak-compact", "soak-probe"
GROUP, SHARE_GROUP = "soak-group", "soak-share-group"
KEYED_PARTITIONS = 8
N_KEYS = 1000
N_COMPACT_KEYS = 500
VALUE_SIZE = 100
KEYED_HEAD = struct.Struct(">Hqd")  # key index, key sequence, time.time() at produce
TXN_HEAD = struct.Struct(">qi")  # transaction number, index in it
SHARE_HEAD = struct.Struct(">q")  # record id
COMPACT_HEAD = struct.Struct(">qd")  # version, time
LAT_BUCKETS_PER_DECADE = 50  # histogram resolution: 10^(1/50) = 4.7% per bucket
IDLE_SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
IDLE_PING_S = 60.0


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:7.1f}s] soak: {msg}", file=sys.stderr, flush=True)


def emit(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def lat_bucket(ms: float) -> int:
    return int(math.floor(math.log10(max(ms, 0.001)) * LAT_BUCKETS_PER_DECADE))


def bucket_ms(b: int) -> float:
    """The upper edge of bucket ``b`` in ms."""
    return 10 ** ((b + 1) / LAT_BUCKETS_PER_DECADE)


def percentiles(hist: dict[int, int], qs=(0.5, 0.99)) -> list[float | None]:
    total = sum(hist.values())
    if not total:
        return [None for _ in qs]
    out = []
    for q in qs:
        want, seen = q * total, 0
        for b in sorted(hist):
            seen += hist[b]
            if seen >= want:
                out.append(round(bucket_ms(b), 3))
                break
    return out


def stop_requested() -> threading.Event:
    """An event set when the parent closes (or writes a line to) our stdin."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    return stop


class Pacer:
    """How many records are due at ``rate``/s since start: ``due()`` - sent."""

    def __init__(self, rate: float) -> None:
        self.rate, self.start = rate, time.monotonic()

    def due(self) -> int:
        return int((time.monotonic() - self.start) * self.rate)


# -- workers (each its own process; JSON lines on stdout) ---------------------------------


def worker_keyed(a: dict) -> None:
    """Idempotent keyed producer at ``rate`` (0 = as fast as it goes, for ``seconds``)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": a["bootstrap"], "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "client.id": "soak-keyed"})
    stop = stop_requested() if not a.get("seconds") else threading.Event()
    next_seq = [0] * N_KEYS
    acked = [0] * N_KEYS
    last_offset: dict[int, int] = {}
    failed: list = []
    bad: list = []
    counts = {"produced": 0, "acked": 0, "failed": 0}
    pad = b"x" * (VALUE_SIZE - KEYED_HEAD.size)
    unpack = KEYED_HEAD.unpack_from

    def on_delivery(err, msg) -> None:
        k, seq, _ = unpack(msg.value())
        if err is not None:
            counts["failed"] += 1
            if len(failed) < 100:
                failed.append([k, seq, str(err)])
            return
        counts["acked"] += 1
        if seq != acked[k]:
            bad.append(f"key {k}: acknowledged seq {seq}, expected {acked[k]}")
        acked[k] = seq + 1
        part, off = msg.partition(), msg.offset()
        if last_offset.get(part, -1) >= off:
            bad.append(f"partition {part}: offset {off} acknowledged after {last_offset[part]}")
        last_offset[part] = off

    rate, seconds = a["rate"], a.get("seconds")
    pacer = Pacer(rate or 1)
    rnd = random.Random(1)
    topic = a["topic"]
    started = time.monotonic()
    next_stat = started + 1
    while not stop.is_set():
        now = time.monotonic()
        if seconds and now - started >= seconds:
            break
        todo = 2000 if not rate else min(5000, pacer.due() - counts["produced"])
        for _ in range(max(0, todo)):
            k = rnd.randrange(N_KEYS)
            value = KEYED_HEAD.pack(k, next_seq[k], time.time()) + pad
            try:
                p.produce(topic, value, key=b"k%04d" % k, on_delivery=on_delivery)
            except BufferError:
                p.poll(0.005)
                break
            next_seq[k] += 1
            counts["produced"] += 1
        p.poll(0 if not rate else 0.005)
        if now >= next_stat:
            next_stat += 1
            emit(e="stat", t=time.time(), **counts)
    left = p.flush(60)
    emit(e="stat", t=time.time(), **counts)
    emit(e="final", produced=counts["produced"], acked_total=counts["acked"], failed_total=counts["failed"],
         acked=acked, next_seq=next_seq, failed=failed, unflushed=left, order_errors=bad[:20],
         seconds=time.monotonic() - started)


def worker_latency(a: dict) -> None:
    """Reads the keyed topic as it is written (assigned, no group); latency histograms per second."""
    from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": "soak-latency", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, "client.id": "soak-latency"})
    c.assign([TopicPartition(a["topic"], p, OFFSET_END) for p in range(a["partitions"])])
    stop = stop_requested()
    emit(e="ready")
    hist: dict[int, int] = defaultdict(int)
    n = total = 0
    errors = []
    unpack = KEYED_HEAD.unpack_from
    next_stat = time.monotonic() + 1
    log10 = math.log10
    idle_since = None
    while True:
        # consume(n, timeout) waits for n records or the timeout: wait for one, then take what is there.
        first = c.poll(0.2)
        msgs = ([first] + c.consume(1000, 0)) if first is not None else []
        now = time.time()
        for m in msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF and len(errors) < 20:
                    errors.append(str(m.error()))
                continue
            lat = (now - unpack(m.value())[2]) * 1000.0
            hist[int(log10(lat if lat > 0.001 else 0.001) * LAT_BUCKETS_PER_DECADE)] += 1
            n += 1
        if time.monotonic() >= next_stat:
            next_stat += 1
            total += n
            emit(e="stat", t=now, consumed=n, total=total, hist=hist, errors=len(errors))
            hist, n = defaultdict(int), 0
        if stop.is_set():
            idle_since = idle_since or time.monotonic()
            if msgs:
                idle_since = time.monotonic()
            if time.monotonic() - idle_since > 2:
                break
    total += n
    c.close()
    emit(e="final", total=total, errors=errors)


def worker_group(a: dict) -> None:
    """``members`` consumers in one group; every ``churn`` s the oldest leaves and a new one joins."""
    from confluent_kafka import Consumer, KafkaError

    stop = stop_requested()
    lock = threading.Lock()
    counts = {"consumed": 0, "joins": 0, "leaves": 0, "assigns": 0, "revokes": 0}
    errors: list[str] = []
    draining = threading.Event()
    last_data = [time.monotonic()]

    def member(idx: int, leave: threading.Event) -> None:
        c = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": a["group"], "auto.offset.reset": "earliest",
                      "enable.auto.commit": True, "auto.commit.interval.ms": 1000, "client.id": f"soak-group-{idx}",
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 200})

        def on_assign(consumer, parts) -> None:
            with lock:
                counts["assigns"] += 1
                last_data[0] = time.monotonic()

        def on_revoke(consumer, parts) -> None:
            with lock:
                counts["revokes"] += 1

        c.subscribe([a["topic"]], on_assign=on_assign, on_revoke=on_revoke)
        with lock:
            counts["joins"] += 1
        while not leave.is_set():
            msgs = c.consume(500, 0.3)
            good = 0
            for m in msgs:
                err = m.error()
                if err is None:
                    good += 1
                elif err.code() != KafkaError._PARTITION_EOF:
                    with lock:
                        if len(errors) < 20:
                            errors.append(f"member {idx}: {err}")
            if good:
                with lock:
                    counts["consumed"] += good
                    last_data[0] = time.monotonic()
        try:
            c.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - nothing to commit is fine ("no offset")
            if "NO_OFFSET" not in str(exc) and "_NO_OFFSET" not in repr(exc):
                with lock:
                    errors.append(f"member {idx} final commit: {exc}")
        c.close()
        with lock:
            counts["leaves"] += 1

    members: list[tuple[threading.Thread, threading.Event]] = []
    idx = 0

    def start_member() -> None:
        nonlocal idx
        leave = threading.Event()
        t = threading.Thread(target=member, args=(idx, leave), daemon=True)
        idx += 1
        t.start()
        members.append((t, leave))

    for _ in range(a["members"]):
        start_member()
    emit(e="ready")
    next_churn = time.monotonic() + a["churn"]
    next_stat = time.monotonic() + 1
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        if not stop.is_set() and now >= next_churn:
            next_churn = now + a["churn"]
            t, leave = members.pop(0)
            leave.set()
            start_member()
            t.join(30)
        if now >= next_stat:
            next_stat = now + 1
            with lock:
                emit(e="stat", t=time.time(), members=len(members), errors=len(errors), **counts)
        if stop.is_set():
            draining.set()
            with lock:
                quiet = now - last_data[0]
            if quiet > 4 or now - next_churn > 120:
                break
    for t, leave in members:
        leave.set()
    for t, _ in members:
        t.join(30)
    with lock:
        emit(e="final", errors=errors, **counts)


def worker_txn(a: dict) -> None:
    """Transactions of ``size`` records at ``rate`` records/s; every 7th aborted."""
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": a["bootstrap"], "transactional.id": "soak-txn", "linger.ms": 5,
                  "client.id": "soak-txn", "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    stop = stop_requested()
    committed: list[int] = []
    aborted: list[int] = []
    errors: list[str] = []
    pad = b"t" * (VALUE_SIZE - TXN_HEAD.size)
    size, rate = a["size"], a["rate"]
    pacer = Pacer(rate)
    txn = 0
    sent = 0
    next_stat = time.monotonic() + 1
    commit_ms: list[float] = []
    while not stop.is_set():
        if pacer.due() < sent + size:
            time.sleep(0.01)
        else:
            abort = txn % 7 == 6
            try:
                p.begin_transaction()
                for i in range(size):
                    while True:
                        try:
                            p.produce(a["topic"], TXN_HEAD.pack(txn, i) + pad)
                            break
                        except BufferError:
                            p.poll(0.01)
                t1 = time.perf_counter()
                if abort:
                    p.abort_transaction(30)
                    aborted.append(txn)
                else:
                    p.commit_transaction(30)
                    committed.append(txn)
                    commit_ms.append((time.perf_counter() - t1) * 1000)
            except KafkaException as exc:
                err = exc.args[0]
                errors.append(f"txn {txn}: {err}")
                if err.txn_requires_abort():
                    p.abort_transaction(30)
                    aborted.append(txn)
                else:
                    # The outcome is unknown: say so; the check then allows either.
                    emit(e="final", committed=committed, aborted=aborted, unknown=[txn], errors=errors)
                    return
            txn += 1
            sent += size
        if time.monotonic() >= next_stat:
            next_stat += 1
            emit(e="stat", t=time.time(), acked=len(committed) * size, committed=len(committed),
                 aborted=len(aborted), errors=len(errors))
    emit(e="stat", t=time.time(), acked=len(committed) * size, committed=len(committed), aborted=len(aborted),
         errors=len(errors))
    commit_ms.sort()
    emit(e="final", committed=committed, aborted=aborted, unknown=[], errors=errors, size=size,
         commit_ms_p50=commit_ms[len(commit_ms) // 2] if commit_ms else None)


def worker_misc(a: dict) -> None:
    """Keyless records into the retention topic, keyed ones (some tombstones) into the compacted one."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": a["bootstrap"], "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "client.id": "soak-misc"})
    stop = stop_requested()
    latest: dict[int, int | None] = {}  # compact key -> last acknowledged version (None: tombstone)
    counts = {"retention_acked": 0, "compact_acked": 0, "compact_tombstones": 0, "failed": 0}
    errors: list[str] = []

    def on_retention(err, msg) -> None:
        if err is None:
            counts["retention_acked"] += 1
        else:
            counts["failed"] += 1
            if len(errors) < 20:
                errors.append(f"retention: {err}")

    def on_compact(err, msg) -> None:
        if err is not None:
            counts["failed"] += 1
            if len(errors) < 20:
                errors.append(f"compact: {err}")
            return
        counts["compact_acked"] += 1
        k = int(msg.key()[1:])
        value = msg.value()
        latest[k] = None if value is None else COMPACT_HEAD.unpack_from(value)[0]

    ret_pacer, cmp_pacer = Pacer(a["retention_rate"]), Pacer(a["compact_rate"])
    ret_sent = cmp_sent = 0
    version = 0
    rnd = random.Random(2)
    ret_value = b"r" * 200
    cmp_pad = b"c" * (VALUE_SIZE - COMPACT_HEAD.size)
    next_stat = time.monotonic() + 1
    while not stop.is_set():
        try:
            for _ in range(max(0, min(2000, ret_pacer.due() - ret_sent))):
                p.produce(a["retention_topic"], ret_value, on_delivery=on_retention)
                ret_sent += 1
            for _ in range(max(0, min(2000, cmp_pacer.due() - cmp_sent))):
                k = rnd.randrange(N_COMPACT_KEYS)
                version += 1
                tombstone = version % 997 == 0
                value = None if tombstone else COMPACT_HEAD.pack(version, time.time()) + cmp_pad
                p.produce(a["compact_topic"], value, key=b"c%03d" % k, on_delivery=on_compact)
                cmp_sent += 1
                counts["compact_tombstones"] += tombstone
        except BufferError:
            pass
        p.poll(0.01)
        if time.monotonic() >= next_stat:
            next_stat += 1
            emit(e="stat", t=time.time(), **counts)
    left = p.flush(60)
    emit(e="stat", t=time.time(), **counts)
    emit(e="final", latest={str(k): v for k, v in latest.items()}, unflushed=left, errors=errors,
         retention_sent=ret_sent, compact_sent=cmp_sent, **counts)


def worker_share(a: dict) -> None:
    """A producer and ``members`` QueueConsumers; ack most, reject id % 20 == 7, release id % 31 == 5 once."""
    import trio
    from confluent_kafka import Producer

    from logbroker.client import QueueConsumer

    produced: set[int] = set()
    produce_errors: list[str] = []
    stop = stop_requested()
    producer_done = threading.Event()

    def produce_loop() -> None:
        p = Producer({"bootstrap.servers": a["bootstrap"], "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "client.id": "soak-share-producer"})

        def on_delivery(err, msg) -> None:
            if err is None:
                produced.add(SHARE_HEAD.unpack_from(msg.value())[0])
            elif len(produce_errors) < 20:
                produce_errors.append(str(err))

        pacer, sent = Pacer(a["rate"]), 0
        pad = b"s" * (VALUE_SIZE - SHARE_HEAD.size)
        while not stop.is_set():
            for _ in range(max(0, min(1000, pacer.due() - sent))):
                p.produce(a["topic"], SHARE_HEAD.pack(sent) + pad, on_delivery=on_delivery)
                sent += 1
            p.poll(0.02)
        p.flush(60)
        producer_done.set()

    acked: set[int] = set()
    rejected: set[int] = set()
    released: set[int] = set()
    counts = {"deliveries": 0, "redeliveries": 0, "members_started": 0, "members_closed": 0}
    errors: list[str] = []

    async def member(idx: int, leave: trio.Event) -> None:
        counts["members_started"] += 1
        try:
            async with QueueConsumer(a["bootstrap"], [a["topic"]], group_id=a["group"], max_wait_ms=200,
                                     client_id=f"soak-share-{idx}") as q:
                while not leave.is_set():
                    msg = None
                    with trio.move_on_after(0.3):
                        msg = await q.get()
                    if msg is None:
                        continue
                    rid = SHARE_HEAD.unpack_from(msg.value)[0]
                    counts["deliveries"] += 1
                    if msg.delivery_count > 1:
                        counts["redeliveries"] += 1
                    if rid % 20 == 7:
                        rejected.add(rid)
                        await msg.reject()
                    elif rid % 31 == 5 and rid not in released:
                        released.add(rid)
                        await msg.release()
                    else:
                        acked.add(rid)
                        await msg.ack()
        except Exception as exc:  # noqa: BLE001 - reported, the check fails on it
            errors.append(f"member {idx}: {exc!r}")
        counts["members_closed"] += 1

    async def main() -> None:
        threading.Thread(target=produce_loop, daemon=True).start()
        async with trio.open_nursery() as nursery:
            leaves = []
            for i in range(a["members"]):
                ev = trio.Event()
                leaves.append(ev)
                nursery.start_soon(member, i, ev)
            idx = a["members"]
            emit(e="ready")
            next_churn = trio.current_time() + a["churn"]
            drain_deadline = None
            while True:
                await trio.sleep(1)
                emit(e="stat", t=time.time(), produced=len(produced), acked=len(acked), rejected=len(rejected),
                     errors=len(errors) + len(produce_errors), **counts)
                if not stop.is_set() and trio.current_time() >= next_churn:
                    next_churn = trio.current_time() + a["churn"]
                    leaves.pop(0).set()
                    ev = trio.Event()
                    leaves.append(ev)
                    nursery.start_soon(member, idx, ev)
                    idx += 1
                if producer_done.is_set():
                    drain_deadline = drain_deadline or trio.current_time() + 60
                    if produced <= acked | rejected or trio.current_time() > drain_deadline:
                        break
            await trio.sleep(1)  # let the last acknowledgements travel with a fetch
            for ev in leaves:
                ev.set()

    trio.run(main)
    emit(e="final", produced=len(produced), acked=len(acked), rejected=sorted(rejected),
         unanswered=sorted(produced - acked - rejected), released=len(released), errors=errors + produce_errors,
         **counts)


def worker_idle(a: dict) -> None:
    """``n`` sockets that did one ApiVersions and stay idle; another one every ``ping`` s each."""
    import selectors
    import socket

    host, port, n, ping = a["host"], a["port"], a["n"], a["ping"]

    def request(corr: int) -> bytes:
        client = b"soak-idle"
        body = struct.pack(">hhih", 18, 0, corr, len(client)) + client
        return struct.pack(">i", len(body)) + body

    def read_answer(s: socket.socket, corr: int) -> None:
        def exactly(k: int) -> bytes:
            buf = b""
            while len(buf) < k:
                chunk = s.recv(k - len(buf))
                if not chunk:
                    raise ConnectionError("closed by the broker")
                buf += chunk
            return buf
        size = struct.unpack(">i", exactly(4))[0]
        body = exactly(size)
        got_corr, error = struct.unpack_from(">ih", body)
        if got_corr != corr or error != 0:
            raise ConnectionError(f"ApiVersions answered correlation {got_corr} error {error}")

    socks: list[socket.socket | None] = []
    errors: list[str] = []
    for i in range(n):
        s = socket.socket()
        s.bind((IDLE_SOURCES[i % len(IDLE_SOURCES)], 0))
        s.settimeout(30)
        try:
            s.connect((host, port))
            s.sendall(request(i))
            read_answer(s, i)
        except OSError as exc:
            errors.append(f"socket {i}: {exc}")
            s.close()
            socks.append(None)
            continue
        s.setblocking(False)
        socks.append(s)
    opened = sum(s is not None for s in socks)
    emit(e="ready", open=opened, errors=errors[:5])
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        if s is not None:
            sel.register(s, selectors.EVENT_READ, i)
    stop = stop_requested()
    pings = closed = 0
    corr = n
    rnd = random.Random(3)
    # Each socket pings at its own phase within every ``ping`` seconds.
    phase = [rnd.uniform(0, ping) for _ in range(n)]
    order = sorted(range(n), key=lambda i: phase[i])
    start = time.monotonic()
    cursor, rounds = 0, 0
    next_stat = start + 1
    while not stop.is_set():
        for key, _ in sel.select(0.2):  # nothing should arrive on an idle socket: a close
            i = key.data
            sel.unregister(socks[i])
            socks[i].close()
            socks[i] = None
            closed += 1
            if len(errors) < 20:
                errors.append(f"socket {i}: readable while idle (closed by the broker?)")
        now = time.monotonic() - start
        while cursor < n and rounds * ping + phase[order[cursor]] <= now:
            i = order[cursor]
            cursor += 1
            s = socks[i]
            if s is None:
                continue
            sel.unregister(s)
            s.setblocking(True)
            s.settimeout(30)
            corr += 1
            try:
                s.sendall(request(corr))
                read_answer(s, corr)
                pings += 1
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, i)
            except OSError as exc:
                s.close()
                socks[i] = None
                closed += 1
                if len(errors) < 20:
                    errors.append(f"socket {i} ping: {exc}")
        if cursor >= n:
            cursor, rounds = 0, rounds + 1
        if time.monotonic() >= next_stat:
            next_stat += 1
            emit(e="stat", t=time.time(), open=sum(s is not None for s in socks), pings=pings, closed=closed)
    emit(e="final", opened=opened, open=sum(s is not None for s in socks), pings=pings, closed=closed,
         errors=errors)
    for s in socks:
        if s is not None:
            s.close()


WORKERS = {"keyed": worker_keyed, "latency": worker_latency, "group": worker_group, "txn": worker_txn,
           "misc": worker_misc, "share": worker_share, "idle": worker_idle}


# -- parent ------------------------------------------------------------------------------


class Worker:
    """A worker subprocess; its JSON events are kept (stats: the latest one, and a callback)."""

    def __init__(self, kind: str, args: dict, on_stat=None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_worker", kind, json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.on_stat = on_stat
        self.last: dict = {}
        self.final: dict | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self.noise: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                if len(self.noise) < 50:
                    self.noise.append(line.rstrip())
                continue
            kind = event.get("e")
            if kind == "ready":
                self.last.update(event)
                self.ready.set()
            elif kind == "stat":
                self.last = event
                if self.on_stat is not None:
                    self.on_stat(self.kind, event)
            elif kind == "final":
                self.final = event
        self.done.set()

    def cpu_seconds(self) -> float:
        return proc_cpu(self.proc.pid) or 0.0

    def stop(self, timeout: float = 180.0) -> dict | None:
        """Ask it to finish (close stdin) and wait for its final report."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.done.wait(10)
        return self.final

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and its parts RssAnon (heap: what a leak grows) and RssFile (mapped segment pages)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "RssAnon", "RssFile"):
                    out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def segment_files(data_dir: str, topic: str) -> int:
    n = 0
    try:
        for d in os.listdir(data_dir):
            if d.rpartition("-")[0] == topic:
                n += sum(f.endswith(".log") for f in os.listdir(os.path.join(data_dir, d)))
    except OSError:
        pass
    return n


def set_group_configs(bootstrap: str, group: str, configs: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(30)


def create_topic(bootstrap: str, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=configs or {})], operation_timeout=30)
    fut[name].result(60)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(name, timeout=10)
        if name in md.topics and md.topics[name].error is None and len(md.topics[name].partitions) == partitions:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} not visible")
        time.sleep(0.2)


def watermarks(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-watermarks"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(partitions)]
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, partitions: int, handle, *, isolation: str = "read_uncommitted",
             timeout: float = 600.0) -> int:
    """Every record of ``topic`` from its start to today's end (per partition), in offset order per
    partition, given to ``handle(partition, offset, key, value)`` by a fresh consumer; returns the count."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    ends = {p: hi for p, (lo, hi) in enumerate(watermarks(bootstrap, topic, partitions))}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"soak-verify-{topic}", "enable.auto.commit": False,
                  "isolation.level": isolation, "enable.partition.eof": True, "fetch.max.bytes": 52428800,
                  "client.id": "soak-verify"})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    pending = {p for p, end in ends.items() if end > 0}
    n = 0
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {topic}: partitions {sorted(pending)} not read to the end in {timeout}s")
            for m in c.consume(10000, 1.0):
                err = m.error()
                p = m.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[p]:
                            pending.discard(p)
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                off = m.offset()
                if off >= ends[p]:
                    pending.discard(p)
                    continue
                handle(p, off, m.key(), m.value())
                n += 1
                if off + 1 >= ends[p]:
                    pending.discard(p)
    finally:
        c.close()
    return n


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)]
    finally:
        c.close()


# -- verification ------------------------------------------------------------------------


def verify_keyed(bootstrap: str, final: dict) -> dict:
    acked = final["acked"]
    produced = final["next_seq"]
    nxt = [0] * N_KEYS
    part_of: dict[int, int] = {}
    problems: list[str] = []
    dups = gaps = beyond = wrong_key = moved = 0
    unpack = KEYED_HEAD.unpack_from

    def handle(p, off, key, value) -> None:
        nonlocal dups, gaps, beyond, wrong_key, moved
        k, seq, _ = unpack(value)
        if key != b"k%04d" % k:
            wrong_key += 1
        if part_of.setdefault(k, p) != p:
            moved += 1
        want = nxt[k]
        if seq == want:
            nxt[k] = seq + 1
        elif seq < want:
            dups += 1
            if len(problems) < 10:
                problems.append(f"duplicate: key {k} seq {seq} at {p}@{off} (expected {want})")
        else:
            gaps += 1
            if len(problems) < 10:
                problems.append(f"gap: key {k} seq {seq} at {p}@{off} (expected {want})")
            nxt[k] = seq + 1

    t = time.monotonic()
    n = read_all(bootstrap, KEYED, KEYED_PARTITIONS, handle)
    missing = sum(max(0, acked[k] - nxt[k]) for k in range(N_KEYS))
    # Records beyond the acknowledged ones may exist only if their delivery was reported failed.
    beyond = sum(max(0, nxt[k] - acked[k]) for k in range(N_KEYS))
    unacked_allowed = sum(produced[k] - acked[k] for k in range(N_KEYS))
    ok = (dups == 0 and gaps == 0 and missing == 0 and wrong_key == 0 and moved == 0
          and beyond <= unacked_allowed and not final["order_errors"])
    return {"ok": ok, "acknowledged": sum(acked), "read": n, "duplicates": dups, "gaps": gaps,
            "missing": missing, "unacknowledged_but_present": beyond, "wrong_key": wrong_key,
            "key_in_two_partitions": moved, "ack_order_errors": final["order_errors"][:5],
            "delivery_failures": final["failed_total"], "problems": problems,
            "read_seconds": round(time.monotonic() - t, 1)}


def verify_txn(bootstrap: str, final: dict) -> dict:
    committed, aborted, unknown = set(final["committed"]), set(final["aborted"]), set(final["unknown"])
    size = final.get("size") or 0
    seen: dict[int, set[int]] = defaultdict(set)
    dups = 0

    def handle(p, off, key, value) -> None:
        nonlocal dups
        txn, i = TXN_HEAD.unpack_from(value)
        if i in seen[txn]:
            dups += 1
        seen[txn].add(i)

    n = read_all(bootstrap, TXN, 4, handle, isolation="read_committed")
    aborted_seen = sorted(set(seen) & aborted)
    incomplete = sorted(t for t in committed if len(seen.get(t, ())) != size)
    stray = sorted(set(seen) - committed - aborted - unknown)
    ok = not aborted_seen and not incomplete and not stray and dups == 0
    return {"ok": ok, "committed_transactions": len(committed), "aborted_transactions": len(aborted),
            "records_per_transaction": size, "read_committed_records": n,
            "expected_records": len(committed) * size, "aborted_records_seen": len(aborted_seen),
            "committed_incomplete": incomplete[:10], "duplicates": dups, "unknown_outcome": sorted(unknown),
            "stray_transactions": stray[:10], "commit_ms_p50": final.get("commit_ms_p50"),
            "errors": final["errors"][:5]}


def verify_share(bootstrap: str, final: dict) -> dict:
    dlq: dict[int, str] = {}

    def handle(p, off, key, value) -> None:
        dlq[SHARE_HEAD.unpack_from(value)[0]] = "?"

    n_dlq = read_all(bootstrap, DLQ, 1, handle)
    rejected = set(final["rejected"])
    unanswered = set(final["unanswered"])
    rejected_missing = sorted(rejected - set(dlq))
    lost = sorted(unanswered - set(dlq))
    progress_rows = share_progress(bootstrap)
    lag = sum(max(0, r["lag"]) for r in progress_rows)
    ok = not rejected_missing and not lost and lag == 0 and not final["errors"]
    return {"ok": ok, "produced": final["produced"], "acknowledged": final["acked"],
            "rejected": len(rejected), "released_once": final["released"],
            "dead_letters": n_dlq, "rejected_not_in_dead_letter_topic": rejected_missing[:10],
            "unanswered": len(unanswered), "lost": lost[:10], "group_lag": lag, "progress": progress_rows,
            "deliveries": final["deliveries"], "redeliveries": final["redeliveries"],
            "members_started": final["members_started"], "errors": final["errors"][:5]}


def share_progress(bootstrap: str) -> list[dict]:
    import trio

    from logbroker.client import Admin

    async def ask():
        with trio.fail_after(60):
            async with Admin(bootstrap) as admin:
                return await admin.share_group_progress(SHARE_GROUP)

    rows = trio.run(ask)
    return [{"partition": r.partition, "start_offset": r.start_offset, "log_end": r.log_end, "lag": r.lag}
            for r in rows]


def verify_compact(bootstrap: str, final: dict, data_dir: str) -> dict:
    latest = {int(k): v for k, v in final["latest"].items()}
    found: dict[int, int | None] = {}

    def handle(p, off, key, value) -> None:
        k = int(key[1:])
        found[k] = None if value is None else COMPACT_HEAD.unpack_from(value)[0]

    n = read_all(bootstrap, COMPACT, 2, handle)
    wrong = sorted(k for k, v in latest.items() if found.get(k) != v)
    extra = sorted(set(found) - set(latest))
    written = final["compact_acked"]
    ok = not wrong and not extra and n < written
    return {"ok": ok, "keys": len(latest), "records_written": written, "records_left": n,
            "kept_fraction": round(n / written, 4) if written else None,
            "tombstoned_keys": sum(v is None for v in latest.values()),
            "keys_with_wrong_latest": wrong[:10], "unknown_keys": extra[:10],
            "segments_now": segment_files(data_dir, COMPACT)}


def verify_retention(bootstrap: str, final: dict, data_dir: str, seg_samples: list[int]) -> dict:
    marks = watermarks(bootstrap, RETENTION, 2)
    ok = all(lo > 0 for lo, hi in marks) and final["failed"] == 0
    return {"ok": ok, "records_written": final["retention_acked"], "log_start_offsets": [lo for lo, _ in marks],
            "log_end_offsets": [hi for _, hi in marks], "segments_min": min(seg_samples, default=None),
            "segments_max": max(seg_samples, default=None), "segments_now": segment_files(data_dir, RETENTION)}


# -- the run -----------------------------------------------------------------------------


def probe_capacity(bootstrap: str, seconds: float, cpu_of_broker) -> dict:
    create_topic(bootstrap, PROBE, KEYED_PARTITIONS)
    c0 = cpu_of_broker()
    w = Worker("keyed", {"bootstrap": bootstrap, "topic": PROBE, "rate": 0, "seconds": seconds})
    final = w.stop(seconds + 120)
    if final is None:
        raise RuntimeError(f"capacity probe failed: {w.noise[-5:]}")
    dt = final["seconds"]
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.delete_topics([PROBE], operation_timeout=30)[PROBE].result(60)
    return {"records_per_s": round(final["acked_total"] / dt), "seconds": round(dt, 1),
            "broker_cpu_share": round((cpu_of_broker() - c0) / dt, 3), "client_cpu_share": None}


def run(args) -> dict:
    duration = args.minutes * 60
    window = args.window_minutes * 60
    out_dir = args.out or tempfile.mkdtemp(prefix="soak-")
    os.makedirs(out_dir, exist_ok=True)
    retention_ms = int(min(60_000, max(10_000, duration * 1000 / 6)))
    check_ms = int(min(5000, max(1000, retention_ms / 5)))
    churn = min(60.0, max(8.0, duration / 8))
    work = tempfile.mkdtemp(prefix="soak-broker-")
    config = os.path.join(work, "broker.toml")
    with open(config, "w") as f:
        f.write(f"log_retention_check_interval_ms = {check_ms}\nlog_cleaner_backoff_ms = {check_ms}\n")
    broker = LogbrokerProcess(work, "--config", config)
    workers: dict[str, Worker] = {}
    result: dict = {"benchmark": "soak", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    try:
        broker.start()
        pid, bootstrap = broker.pid, broker.bootstrap
        progress(f"broker pid {pid} on {bootstrap}")
        cpu_of_broker = lambda: proc_cpu(pid) or 0.0  # noqa: E731
        if args.rate:
            rate, how = args.rate, "--rate"
            capacity = None
        else:
            progress(f"capacity probe: the keyed producer alone for {args.probe_seconds}s")
            capacity = probe_capacity(bootstrap, args.probe_seconds, cpu_of_broker)
            half = capacity["records_per_s"] // 2
            rate = min(half, args.max_rate)
            how = ("half the measured capacity" if rate == half else
                   f"half the measured capacity ({half}/s) capped by --max-rate")
            progress(f"capacity {capacity['records_per_s']} records/s -> keyed rate {rate}/s ({how})")
        rates = {"keyed": rate, "txn": max(20, rate // 10), "retention": max(20, rate // 10),
                 "compact": max(10, rate // 20), "share": max(10, min(1000, rate // 40))}
        txn_size = max(10, rates["txn"] // 10)
        seg_ret = int(min(1 << 20, max(16384, rates["retention"] / 2 * 230 * 3)))
        seg_cmp = int(min(1 << 20, max(16384, rates["compact"] / 2 * 150 * 3)))
        create_topic(bootstrap, KEYED, KEYED_PARTITIONS)
        create_topic(bootstrap, TXN, 4)
        create_topic(bootstrap, SHARE, 2)
        create_topic(bootstrap, DLQ, 1)
        create_topic(bootstrap, RETENTION, 2, {"segment.bytes": str(seg_ret), "retention.ms": str(retention_ms),
                                               "cleanup.policy": "delete"})
        create_topic(bootstrap, COMPACT, 2, {"segment.bytes": str(seg_cmp), "cleanup.policy": "compact",
                                             "min.cleanable.dirty.ratio": "0.1"})
        set_group_configs(bootstrap, SHARE_GROUP, {"share.auto.offset.reset": "earliest",
                                                   "errors.deadletterqueue.topic.name": DLQ,
                                                   "share.delivery.count.limit": "3"})
        result["load"] = {
            "rate_source": how, "capacity_probe": capacity, "records_per_s": rates,
            "offered_records_per_s": sum(rates.values()), "record_bytes": VALUE_SIZE,
            "transaction_records": txn_size, "group_members": 3, "group_churn_s": churn,
            "share_members": 2, "share_churn_s": churn * 1.5, "idle_connections": args.idle,
            "idle_keepalive": f"ApiVersions every {IDLE_PING_S:.0f}s per connection (broker default "
                              "connections.max.idle.ms 600000 kept); from 4 source addresses (default "
                              "max.connections.per.ip 1000 kept)",
            "retention_topic": {"segment.bytes": seg_ret, "retention.ms": retention_ms},
            "compacted_topic": {"segment.bytes": seg_cmp, "min.cleanable.dirty.ratio": 0.1, "keys": N_COMPACT_KEYS},
            "broker_settings": {"log.retention.check.interval.ms": check_ms, "log.cleaner.backoff.ms": check_ms},
        }

        # -- start everything
        lock = threading.Lock()
        lat_hist: dict[int, int] = defaultdict(int)
        consumed = [0]

        def on_stat(kind: str, event: dict) -> None:
            if kind == "latency":
                with lock:
                    for b, c in event["hist"].items():
                        lat_hist[int(b)] += c
                    consumed[0] += event["consumed"]

        if args.idle:
            workers["idle"] = Worker("idle", {"host": "127.0.0.1", "port": broker.port, "n": args.idle,
                                              "ping": IDLE_PING_S})
            if not workers["idle"].ready.wait(120):
                raise RuntimeError(f"idle connections not up: {workers['idle'].noise[-5:]}")
            progress(f"{workers['idle'].last.get('open')} idle connections open")
        workers["latency"] = Worker("latency", {"bootstrap": bootstrap, "topic": KEYED,
                                                "partitions": KEYED_PARTITIONS}, on_stat)
        workers["latency"].ready.wait(60)
        time.sleep(1)  # the latency consumer's assignment (at the end) takes effect before producing
        workers["group"] = Worker("group", {"bootstrap": bootstrap, "topic": KEYED, "group": GROUP, "members": 3,
                                            "churn": churn})
        workers["share"] = Worker("share", {"bootstrap": bootstrap, "topic": SHARE, "group": SHARE_GROUP,
                                            "members": 2, "churn": churn * 1.5, "rate": rates["share"]})
        workers["keyed"] = Worker("keyed", {"bootstrap": bootstrap, "topic": KEYED, "rate": rates["keyed"]})
        workers["txn"] = Worker("txn", {"bootstrap": bootstrap, "topic": TXN, "rate": rates["txn"],
                                        "size": txn_size})
        workers["misc"] = Worker("misc", {"bootstrap": bootstrap, "retention_topic": RETENTION,
                                          "compact_topic": COMPACT, "retention_rate": rates["retention"],
                                          "compact_rate": rates["compact"]})
        progress(f"soak for {duration:.0f}s, windows of {window:.0f}s, sample every {args.sample_seconds}s")

        # -- sample
        samples: list[dict] = []
        start = time.monotonic()
        prev_t, prev_cpu = start, cpu_of_broker()
        prev_client = sum(w.cpu_seconds() for w in workers.values())
        prev_acked = 0
        prev_consumed = 0
        seg_samples: list[int] = []
        while True:
            time.sleep(max(0.0, start + (len(samples) + 1) * args.sample_seconds - time.monotonic()))
            now = time.monotonic()
            cpu = cpu_of_broker()
            client = sum(w.cpu_seconds() for w in workers.values())
            acked = (workers["keyed"].last.get("acked", 0) + workers["txn"].last.get("acked", 0)
                     + workers["misc"].last.get("retention_acked", 0) + workers["misc"].last.get("compact_acked", 0)
                     + workers["share"].last.get("produced", 0))
            with lock:
                hist = dict(lat_hist)
                lat_hist.clear()
                cons = consumed[0]
            p50, p99 = percentiles(hist)
            dt = now - prev_t
            segs = segment_files(broker.data_dir, RETENTION)
            seg_samples.append(segs)
            mem = memory_kib(pid)
            sample = {"t": round(now - start, 2), "rss_mib": round(mem.get("VmRSS", 0) / 1024, 1),
                      "anon_mib": round(mem.get("RssAnon", 0) / 1024, 1),
                      "file_mib": round(mem.get("RssFile", 0) / 1024, 1),
                      "fds": open_fds(pid), "broker_cpu": round((cpu - prev_cpu) / dt, 3),
                      "client_cpu": round((client - prev_client) / dt, 3),
                      "produced_per_s": round((acked - prev_acked) / dt), "consumed_per_s": round((cons - prev_consumed) / dt),
                      "p50_ms": p50, "p99_ms": p99, "hist": hist, "retention_segments": segs,
                      "idle_open": workers["idle"].last.get("open") if "idle" in workers else 0}
            samples.append(sample)
            prev_t, prev_cpu, prev_client, prev_acked, prev_consumed = now, cpu, client, acked, cons
            if len(samples) % max(1, int(30 / args.sample_seconds)) == 0:
                progress(f"t={sample['t']:.0f}s rss={sample['rss_mib']}MiB (anon {sample['anon_mib']}) fds={sample['fds']} "
                         f"cpu={sample['broker_cpu']} clients={sample['client_cpu']} "
                         f"produced/s={sample['produced_per_s']} p50={p50} p99={p99}")
            dead = [k for k, w in workers.items() if w.proc.poll() is not None]
            if dead:
                progress(f"workers ended early: {dead}")
                break
            if now - start >= duration:
                break
        elapsed = time.monotonic() - start

        # -- stop: producers first, then the consumers drain
        progress("stopping producers")
        finals: dict[str, dict | None] = {}
        for kind in ("keyed", "txn", "misc"):
            workers[kind].proc.stdin.close()
        for kind in ("keyed", "txn", "misc"):
            finals[kind] = workers[kind].stop(180)
        progress("draining consumers")
        for kind in ("share", "latency", "group"):
            workers[kind].proc.stdin.close()
        for kind in ("share", "latency", "group"):
            finals[kind] = workers[kind].stop(240)
        if "idle" in workers:
            finals["idle"] = workers["idle"].stop(60)
        broker_mem_end, broker_fds_end = memory_kib(pid), open_fds(pid)
        missing = [k for k, v in finals.items() if v is None]
        if missing:
            raise RuntimeError(f"workers without a final report: {missing}: "
                               + "; ".join(f"{k}: {workers[k].noise[-3:]}" for k in missing))

        # -- verify
        progress("verifying")
        checks = {}
        checks["keyed_exactly_once_in_order"] = verify_keyed(bootstrap, finals["keyed"])
        checks["transactions_read_committed"] = verify_txn(bootstrap, finals["txn"])
        checks["share_none_lost"] = verify_share(bootstrap, finals["share"])
        checks["compaction_latest_per_key"] = verify_compact(bootstrap, finals["misc"], broker.data_dir)
        checks["retention_deleted_segments"] = verify_retention(bootstrap, finals["misc"], broker.data_dir,
                                                                seg_samples)
        ends = [hi for _, hi in watermarks(bootstrap, KEYED, KEYED_PARTITIONS)]
        committed = committed_offsets(bootstrap, GROUP, KEYED, KEYED_PARTITIONS)
        g = finals["group"]
        checks["group_caught_up"] = {"ok": committed == ends and not g["errors"], "committed": committed,
                                     "end_offsets": ends, "consumed": g["consumed"], "joins": g["joins"],
                                     "leaves": g["leaves"], "assignments": g["assigns"], "errors": g["errors"][:5]}
        idle = finals.get("idle") or {}
        checks["idle_connections_kept"] = {"ok": not args.idle or (idle.get("open") == args.idle
                                                                   and not idle.get("errors")),
                                           "opened": idle.get("opened", 0), "open_at_end": idle.get("open", 0),
                                           "keepalive_pings": idle.get("pings", 0), "errors": idle.get("errors", [])[:5]}
        lat = finals["latency"]
        checks["latency_consumer"] = {"ok": not lat["errors"], "consumed": lat["total"], "errors": lat["errors"][:5]}
        result["checks"] = checks
        result["flatness"] = flatness(samples, window, args.idle)
        trouble = [line for line in broker.trouble(50) if not _expected_trouble(line)]
        result["broker_log_trouble"] = trouble[:20]
        result["run"] = {
            "seconds": round(elapsed, 1), "window_s": window, "sample_s": args.sample_seconds,
            "broker_cpu_share": round(statistics.fmean(s["broker_cpu"] for s in samples), 3),
            "client_cpu_share": round(statistics.fmean(s["client_cpu"] for s in samples), 3),
            "produced_per_s_mean": round(statistics.fmean(s["produced_per_s"] for s in samples)),
            "keyed_acknowledged": finals["keyed"]["acked_total"],
            "broker_rss_mib_end": round(broker_mem_end.get("VmRSS", 0) / 1024, 1),
            "broker_anon_mib_end": round(broker_mem_end.get("RssAnon", 0) / 1024, 1), "broker_fds_end": broker_fds_end,
            "worker_noise": {k: w.noise[:5] for k, w in workers.items() if w.noise},
        }
        criteria = {name: c["ok"] for name, c in checks.items()}
        criteria.update({k: v["ok"] for k, v in result["flatness"].items()})
        criteria["no_broker_errors"] = not trouble
        result["criteria"] = criteria
        result["passed"] = all(criteria.values())
        result["samples"] = [{k: v for k, v in s.items() if k != "hist"} for s in samples]
        result["out"] = {"json": os.path.join(out_dir, "soak.json"), "png": None}
        png = os.path.join(out_dir, "soak.png")
        err = plot(samples, result, window, png)
        result["out"]["png"] = png if err is None else f"skipped: {err}"
        with open(result["out"]["json"], "w") as f:
            json.dump(result, f, indent=2)
        return result
    finally:
        for w in workers.values():
            w.kill()
        broker.cleanup()


def _expected_trouble(line: str) -> bool:
    # The broker logs each connection it closes (consumers leaving, the idle sockets at the end).
    return "closing connection" in line and "ERROR" not in line and "Traceback" not in line


def flatness(samples: list[dict], window: float, idle: int) -> dict:
    windows: list[list[dict]] = []
    for s in samples:
        i = int(s["t"] // window) if window > 0 else 0
        while len(windows) <= i:
            windows.append([])
        windows[i].append(s)
    # A last window shorter than half a window says little: fold it into the previous one.
    if len(windows) > 2 and windows[-1] and windows[-1][-1]["t"] - windows[-1][0]["t"] < window / 2:
        windows[-2].extend(windows.pop())
    rows = []
    for i, w in enumerate(windows):
        if not w:
            continue
        hist: dict[int, int] = defaultdict(int)
        for s in w:
            for b, c in s["hist"].items():
                hist[b] += c
        p50, p99 = percentiles(hist)
        rows.append({"window": i, "from_s": w[0]["t"], "to_s": w[-1]["t"],
                     "rss_mib_mean": round(statistics.fmean(s["rss_mib"] for s in w), 1),
                     "anon_mib_mean": round(statistics.fmean(s["anon_mib"] for s in w), 1),
                     "fds_mean": round(statistics.fmean(s["fds"] for s in w), 1), "fds_max": max(s["fds"] for s in w),
                     "produced_per_s": round(statistics.fmean(s["produced_per_s"] for s in w)),
                     "p50_ms": p50, "p99_ms": p99, "latency_samples": sum(hist.values())})
    after = rows[1:] or rows
    rss = [r["anon_mib_mean"] for r in after]
    total_rss = [r["rss_mib_mean"] for r in after]
    fds = [r["fds_mean"] for r in after]
    p99s = [r["p99_ms"] for r in after if r["p99_ms"] is not None]
    rss_spread = (max(rss) - min(rss)) / min(rss) if rss else None
    fd_spread = max(fds) - min(fds) if fds else None
    fd_allow = max(20.0, 0.02 * statistics.fmean(fds)) if fds else None
    med = statistics.median(p99s) if p99s else None
    p99_limit = max(2 * med, med + 20) if med is not None else None
    all_fds = [s["fds"] for s in samples]
    return {
        "windows": {"ok": len(rows) >= 2, "rows": rows},
        "memory_flat": {"ok": rss_spread is not None and rss_spread <= 0.10,
                        "measure": "RssAnon (the broker's own memory; RssFile is mapped segment pages, "
                                   "page cache that grows with the data read)",
                        "spread": round(rss_spread, 4) if rss_spread is not None else None, "limit": 0.10,
                        "anon_mib_window_means": rss, "rss_mib_window_means": total_rss},
        "descriptors_flat": {"ok": fd_spread is not None and fd_spread <= fd_allow,
                             "spread": fd_spread, "allowed": fd_allow, "fds_window_means": fds,
                             "max": max(all_fds), "min": min(all_fds), "idle_connections": idle},
        "p99_stable": {"ok": bool(p99s) and max(p99s) <= p99_limit, "p99_ms_windows": p99s,
                       "median_ms": med, "limit_ms": p99_limit},
    }


def plot(samples: list[dict], result: dict, window: float, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[plots]')"
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    load = result["load"]
    fig.suptitle(f"logbroker soak: {result['run']['seconds'] / 60:.1f} min, {load['offered_records_per_s']:,} "
                 f"records/s offered, {load['idle_connections']:,} idle connections "
                 f"({'passed' if result['passed'] else 'FAILED'})")
    axes[0].plot(t, [s["anon_mib"] for s in samples], color="tab:blue", label="anonymous (heap)")
    axes[0].plot(t, [s["rss_mib"] for s in samples], color="tab:cyan", label="RSS (with mapped segments)")
    axes[0].set_ylabel("broker memory (MiB)")
    axes[0].legend(loc="lower right")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [s["fds"] for s in samples], color="tab:orange")
    axes[1].set_ylabel("open descriptors")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(t, [s["produced_per_s"] for s in samples], label="produced (acknowledged)", color="tab:green")
    axes[2].plot(t, [s["consumed_per_s"] for s in samples], label="consumed (latency reader)", color="tab:gray",
                 alpha=0.7)
    axes[2].set_ylabel("records/s")
    axes[2].set_ylim(bottom=0)
    axes[2].legend(loc="lower right")
    axes[3].plot(t, [s["p50_ms"] for s in samples], label="p50", color="tab:purple")
    axes[3].plot(t, [s["p99_ms"] for s in samples], label="p99", color="tab:red")
    rows = result["flatness"]["windows"]["rows"]
    for r in rows:
        if r["p99_ms"] is not None:
            axes[3].hlines(r["p99_ms"], r["from_s"] / 60, r["to_s"] / 60, colors="black", linestyles="dashed")
    axes[3].set_yscale("log")
    axes[3].set_ylabel("end-to-end latency (ms)")
    axes[3].legend(loc="upper right", title="per sample; dashed: window p99")
    axes[3].set_xlabel("minutes")
    for ax in axes:
        ax.grid(alpha=0.3)
        k = 1
        while k * window < samples[-1]["t"]:
            ax.axvline(k * window / 60, color="black", alpha=0.15)
            k += 1
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        WORKERS[sys.argv[2]](json.loads(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=0, help="keyed records/s (default: half the probed capacity)")
    parser.add_argument("--max-rate", type=int, default=5_000, help="cap on the probed half capacity")
    parser.add_argument("--probe-seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections")
    parser.add_argument("--out", help="directory for soak.json and soak.png (default: a new temporary one)")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    progress(f"{'passed' if result['passed'] else 'FAILED'}: "
             + ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in result["criteria"].items()))
    progress(f"wrote {result['out']['json']} and {result['out']['png']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
