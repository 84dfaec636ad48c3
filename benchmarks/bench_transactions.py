"""Transactions: what does exactly-once cost a confluent-kafka producer and
consumer against ``logbroker serve``?

One broker (its defaults: ``--flush interval``, on disk), 6-partition topics,
100-byte records, keyless (librdkafka's default partitioner), every producer
with ``acks=all``, idempotence, ``linger.ms`` 5 and ``batch.size`` 1000000.
In the same run, ``--repeat`` times (3; the median run is reported), each
workload on a fresh topic:

* produce ``--records`` (1,000,000) records non-transactionally (the
  idempotent producer: the baseline), then transactionally with 100 and
  with 1,000 records per transaction (``begin_transaction``, the records,
  ``commit_transaction``); records/s from the first ``produce()`` until the
  last commit (or ``flush()``) returned, the ratio transactional /
  idempotent, and the broker's CPU seconds (user + system) during each run;
* commit latency: ``--latency-txns`` (1,000) transactions of 100 records,
  each flushed (every record acknowledged) before ``commit_transaction()``
  is timed, so the figure is EndTxn with its control markers: p50, p99, max;
* consume each transactional topic back with ``isolation.level``
  read_committed and read_uncommitted (``assign()`` of all 6 partitions from
  offset 0 until every record arrived; the topic holds commit markers, which
  neither hands to the application) and the ratio committed / uncommitted.

Targets: transactional at 1,000 records per transaction >= 0.8 of the
idempotent rate; commit p50 < 5 ms and p99 < 20 ms; read_committed >= 0.9 of
read_uncommitted (on both topics). Every workload runs in its own
subprocess (this file, ``_worker ...``). Prints one JSON object on stdout
(figures, ratios, ``targets`` with ``met`` for each); progress on stderr.
``--quick`` runs 20,000 records, 50 latency transactions, once.

    python benchmarks/bench_transactions.py [--quick] [--records N] [--repeat N] [--latency-txns N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess, TansuProcess, create_topics, find_tansu  # noqa: E402

PARTITIONS = 6
VALUE_SIZE = 100
PER_TXN = (100, 1000)
PRODUCER_CONFIG = {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "batch.size": 1_000_000}
CONSUMER_CONFIG = {"fetch.queue.backoff.ms": 10}
LATENCY_RECORDS = 100  # per timed transaction
TARGETS = {"txn_1000_vs_idempotent": 0.8, "commit_p50_ms": 5.0, "commit_p99_ms": 20.0,
           "read_committed_vs_uncommitted": 0.9}
STALL_SECONDS = 30.0

_t0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _value() -> bytes:
    pattern = b"logbroker-transactions-benchmark-0123456789abcdefghijklmnopqrstuvwxyz|"
    return (pattern * 2)[:VALUE_SIZE]


def _percentile(sorted_values: list, q: float):
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))  # nearest rank
    return sorted_values[int(rank) - 1]


def _ms(sorted_seconds: list) -> dict:
    return {"p50": round(_percentile(sorted_seconds, 0.5) * 1000, 2),
            "p99": round(_percentile(sorted_seconds, 0.99) * 1000, 2),
            "max": round(sorted_seconds[-1] * 1000, 2), "count": len(sorted_seconds)}


# --------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line on stdout.
# --------------------------------------------------------------------------


def _producer(a: dict, transactional: bool, failed: list):
    from confluent_kafka import Producer

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    config = {"bootstrap.servers": a["bootstrap"], **PRODUCER_CONFIG,
              "delivery.report.only.error": True, "on_delivery": on_delivery}
    if transactional:
        config["transactional.id"] = f"bench-txn-{uuid.uuid4().hex[:8]}"
    producer = Producer(config)
    producer.list_topics(a["topic"], timeout=30)  # metadata before the clock starts
    if transactional:
        producer.init_transactions(30)
    return producer


def _produce_n(producer, topic: str, value: bytes, n: int) -> None:
    produce, poll = producer.produce, producer.poll
    for i in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.001)
        if not i & 0x3FFF:
            poll(0)


def worker_produce(a: dict) -> dict:
    """Idempotent (``per_txn`` 0) or transactional produce of ``records`` records."""
    failed: list[str] = []
    per_txn = a["per_txn"]
    producer = _producer(a, per_txn > 0, failed)
    topic, value, n = a["topic"], _value(), a["records"]
    commits: list[float] = []
    start = time.perf_counter()
    if per_txn:
        done = 0
        while done < n:
            k = min(per_txn, n - done)
            producer.begin_transaction()
            _produce_n(producer, topic, value, k)
            t = time.perf_counter()
            producer.commit_transaction(a["timeout"])
            commits.append(time.perf_counter() - t)
            done += k
        left = 0
    else:
        _produce_n(producer, topic, value, n)
        left = producer.flush(a["timeout"])
    seconds = time.perf_counter() - start
    if left or failed:
        raise RuntimeError(f"{left} undelivered, {len(failed)} failed: {sorted(set(failed))[:5]}")
    out = {"records": n, "seconds": seconds, "transactions": len(commits)}
    if commits:  # commit_transaction() here includes sending what linger.ms still held
        out["commit_call_ms"] = _ms(sorted(commits))
    return out


def worker_latency(a: dict) -> dict:
    """``txns`` transactions of LATENCY_RECORDS records; each flushed, then the commit timed."""
    failed: list[str] = []
    producer = _producer(a, True, failed)
    topic, value = a["topic"], _value()
    commits: list[float] = []
    for _ in range(a["txns"]):
        producer.begin_transaction()
        _produce_n(producer, topic, value, LATENCY_RECORDS)
        if producer.flush(a["timeout"]):
            raise RuntimeError("records not acknowledged before the commit")
        t = time.perf_counter()
        producer.commit_transaction(a["timeout"])
        commits.append(time.perf_counter() - t)
    if failed:
        raise RuntimeError(f"{len(failed)} deliveries failed: {sorted(set(failed))[:5]}")
    return {"commit_ms": _ms(sorted(commits))}


def worker_consume(a: dict) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": a["bootstrap"], "group.id": f"bench-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
        "isolation.level": a["isolation"], **CONSUMER_CONFIG,
    })
    try:
        topic, expected = a["topic"], a["records"]
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(PARTITIONS)]
        count, errors, size_ok = 0, [], True
        consume = consumer.consume
        start = last_data = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        while count < expected:
            batch = consume(min(10_000, expected - count), 1.0)
            now = time.perf_counter()
            if not batch:
                if now - last_data > STALL_SECONDS:
                    raise RuntimeError(f"stalled: {count}/{expected} records, nothing for {STALL_SECONDS} s")
                continue
            last_data = now
            for msg in batch:
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    count -= 1
            count += len(batch)
            size_ok = size_ok and len(batch[-1]) == VALUE_SIZE
        seconds = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"consumer errors: {errors[:5]}")
        return {"records": count, "seconds": seconds, "value_size_ok": size_ok,
                "log_end_offsets": sum(high for _, high in marks)}
    finally:
        consumer.close()


WORKERS = {"produce": worker_produce, "latency": worker_latency, "consume": worker_consume}


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------

_children: list[subprocess.Popen] = []


def _run(kind: str, args: dict) -> dict:
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_worker", kind, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)
    _children.append(proc)
    try:
        out, _ = proc.communicate(timeout=args["timeout"] + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        out = ""
    finally:
        _children.remove(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        err.seek(0)
        tail = "\n".join(err.read().strip().splitlines()[-8:])
        raise RuntimeError(f"{kind} worker exited with {proc.returncode}: {tail}")
    return json.loads(lines[-1])


def _rate(result: dict) -> dict:
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    out["records_per_s"] = round(result["records"] / result["seconds"])
    return out


def _median(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["records_per_s"])
    out = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        out["all_records_per_s"] = [r["records_per_s"] for r in runs]
    return out


def _tansu_peer(base: dict) -> dict | None:
    """The same idempotent and 1,000-per-transaction produce against Tansu (a
    Kafka broker in Rust, in memory), once each: how much of a transaction's
    cost is the client's round trips rather than the broker."""
    binary = find_tansu()
    if binary is None:
        return None
    out: dict = {}
    with TansuProcess(binary) as peer:
        progress(f"tansu on {peer.bootstrap}")
        for key, per_txn in (("idempotent", 0), ("txn_1000", 1000)):
            topic = f"bench-tansu-{key.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
            create_topics(peer.bootstrap, [topic], PARTITIONS)
            out[key] = _rate(_run("produce", {**base, "bootstrap": peer.bootstrap, "topic": topic,
                                              "per_txn": per_txn}))
            progress(f"  tansu {key}: {out[key]['records_per_s']:,} records/s")
    out["txn_1000_vs_idempotent"] = round(out["txn_1000"]["records_per_s"] / out["idempotent"]["records_per_s"], 2)
    return out


def run(opts) -> dict:
    produce_keys = ["idempotent", *(f"txn_{k}" for k in PER_TXN)]
    consume_keys = [f"{iso}_txn_{k}" for k in PER_TXN for iso in ("read_committed", "read_uncommitted")]
    runs: dict[str, list] = {key: [] for key in produce_keys + consume_keys}
    base = {"records": opts.records, "timeout": opts.timeout}
    with LogbrokerProcess() as broker:
        progress(f"logbroker serve on {broker.bootstrap}")
        bootstrap = broker.bootstrap
        for i in range(opts.repeat):
            topics = {key: f"bench-{key.replace('_', '-')}-{uuid.uuid4().hex[:6]}" for key in produce_keys}
            create_topics(bootstrap, list(topics.values()), PARTITIONS)
            for key in produce_keys:
                per_txn = 0 if key == "idempotent" else int(key.split("_")[1])
                progress(f"produce {opts.records:,} records, {key} (run {i + 1}/{opts.repeat})")
                cpu = broker.cpu_seconds()
                r = _rate(_run("produce", {**base, "bootstrap": bootstrap, "topic": topics[key], "per_txn": per_txn}))
                if cpu is not None:  # the worker's start-up (metadata, InitProducerId) included
                    r["broker_cpu_s"] = round(broker.cpu_seconds() - cpu, 3)
                progress(f"  {r['records_per_s']:,} records/s, broker CPU {r.get('broker_cpu_s')} s")
                runs[key].append(r)
            for k in PER_TXN:
                for iso in ("read_committed", "read_uncommitted"):
                    progress(f"consume txn_{k} with {iso} (run {i + 1}/{opts.repeat})")
                    r = _rate(_run("consume", {**base, "bootstrap": bootstrap, "topic": topics[f"txn_{k}"],
                                               "isolation": iso}))
                    progress(f"  {r['records_per_s']:,} records/s")
                    runs[f"{iso}_txn_{k}"].append(r)
        topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [topic], PARTITIONS)
        progress(f"commit latency: {opts.latency_txns:,} transactions of {LATENCY_RECORDS} records")
        latency = _run("latency", {**base, "bootstrap": bootstrap, "topic": topic, "txns": opts.latency_txns})
        progress(f"  p50 {latency['commit_ms']['p50']} ms, p99 {latency['commit_ms']['p99']} ms")
        trouble = broker.trouble()
    peer = None if opts.no_tansu else _tansu_peer(base)
    produce = {key: _median(runs[key]) for key in produce_keys}
    consume = {key: _median(runs[key]) for key in consume_keys}
    idem = produce["idempotent"]["records_per_s"]
    ratios = {f"txn_{k}_vs_idempotent": round(produce[f"txn_{k}"]["records_per_s"] / idem, 2) for k in PER_TXN}
    for k in PER_TXN:
        ratios[f"read_committed_vs_uncommitted_txn_{k}"] = round(
            consume[f"read_committed_txn_{k}"]["records_per_s"] / consume[f"read_uncommitted_txn_{k}"]["records_per_s"], 2)
    commit = latency["commit_ms"]
    rc_worst = min(ratios[f"read_committed_vs_uncommitted_txn_{k}"] for k in PER_TXN)
    targets = {
        "txn_1000_vs_idempotent_at_least_0.8": {"value": ratios["txn_1000_vs_idempotent"],
                                                "met": ratios["txn_1000_vs_idempotent"] >= TARGETS["txn_1000_vs_idempotent"]},
        "commit_p50_below_5ms": {"value": commit["p50"], "met": commit["p50"] < TARGETS["commit_p50_ms"]},
        "commit_p99_below_20ms": {"value": commit["p99"], "met": commit["p99"] < TARGETS["commit_p99_ms"]},
        "read_committed_vs_uncommitted_at_least_0.9": {
            "value": rc_worst, "met": rc_worst >= TARGETS["read_committed_vs_uncommitted"]},
    }
    import confluent_kafka

    return {
        "benchmark": "bench_transactions",
        "records": opts.records, "value_bytes": VALUE_SIZE, "partitions": PARTITIONS, "repeat": opts.repeat,
        "per_transaction": list(PER_TXN), "latency_transactions": opts.latency_txns,
        "latency_records_per_transaction": LATENCY_RECORDS, "broker_flush": "interval",
        "producer_settings": PRODUCER_CONFIG,
        "client": {"confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0]},
        "produce": produce, "consume": consume, "commit_ms": commit, "ratios": ratios, "targets": targets,
        "tansu": peer,
        "txn_1000_vs_tansu": (round(produce["txn_1000"]["records_per_s"] / peer["txn_1000"]["records_per_s"], 2)
                              if peer else None),
        "meets_targets": all(t["met"] for t in targets.values()),
        "broker_log_trouble": trouble,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        print(json.dumps(WORKERS[argv[1]](json.loads(argv[2]))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records, 50 latency transactions, one run")
    parser.add_argument("--records", type=int, default=0, help="records per produce run [default: 1,000,000]")
    parser.add_argument("--repeat", type=int, default=0, help="runs per figure, median reported [default: 3]")
    parser.add_argument("--latency-txns", type=int, default=0, help="timed commits [default: 1,000]")
    parser.add_argument("--timeout", type=float, default=300.0, help="per workload, seconds")
    parser.add_argument("--no-tansu", action="store_true", help="skip the same-run produce against Tansu")
    opts = parser.parse_args(argv)
    opts.records = opts.records or (20_000 if opts.quick else 1_000_000)
    opts.repeat = opts.repeat or (1 if opts.quick else 3)
    opts.latency_txns = opts.latency_txns or (50 if opts.quick else 1_000)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = run(opts)
    finally:
        for proc in list(_children):
            proc.kill()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
